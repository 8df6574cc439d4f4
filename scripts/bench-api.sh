#!/usr/bin/env bash
# `just bench-api`: the REST API under load on SQLite and on PostgreSQL in one run.
#
# For each backend a fresh `decentcom serve` (release build) gets POST message and GET latest page
# (limit 50) at 1, 16 and 64 concurrent connections from wrk (Debian package; installed when
# missing). In the same run pgbench drives the same INSERT the server issues straight into
# PostgreSQL, so the server's write rate is shown as a fraction of what PostgreSQL itself sustains
# here. Targets (issue #4): server POST rate >= 50% of pgbench's, p99 < 50 ms at 64 clients.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${BENCH_SECONDS:-10}
pg_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

if ! command -v wrk >/dev/null 2>&1; then
    echo "bench-api: installing wrk (Debian package)" >&2
    (apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }) \
        || { echo "bench-api: wrk is missing and could not be installed (apt-get install wrk)" >&2; exit 1; }
fi
command -v pgbench >/dev/null || { echo "bench-api: pgbench is missing (apt-get install postgresql-contrib)" >&2; exit 1; }

SQLX_OFFLINE=true cargo build --quiet --release -p decentcom --bin decentcom --example bench_login
bin=target/release/decentcom
login=target/release/examples/bench_login
work=$(mktemp -d)
server_pid=""
scratch_dbs=()
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    for db in "${scratch_dbs[@]}"; do psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Creates a scratch database and sets SCRATCH_URL. Not called in a $(…) subshell, so the name
# reaches `scratch_dbs` and the exit trap drops it.
scratch_db() {
    local name="decentcom_bench_$1_$$"
    psql "$pg_url" -qc "CREATE DATABASE $name" >/dev/null
    scratch_dbs+=("$name")
    SCRATCH_URL="${pg_url%/*}/$name"
}

# wrk script for POST message: a JSON body with the bearer token.
cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.body = '{"content":"hello from the load generator"}'
LUA
cat >"$work/get.lua" <<'LUA'
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
LUA

# Prints "req/s p50 p99" from wrk --latency output.
wrk_figures() {
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
}

rows=()
declare -A post_rate
run_backend() {
    local backend=$1
    local port; port=$(free_port)
    local dir="$work/$backend"; mkdir -p "$dir"
    # One user posts as fast as wrk can: the messages bucket stays on (every POST pays for its
    # check) but is too large to empty, so the figures include what the rate limits cost.
    local env=(DECENTCOM_NETWORK__BIND_ADDRESS="127.0.0.1:$port" DECENTCOM_STORAGE__MAX_CONNECTIONS=16 RUST_LOG=warn
        DECENTCOM_LIMITS__MESSAGES_PER_MINUTE=1000000000 DECENTCOM_LIMITS__MESSAGES_BURST=1000000000)
    if [ "$backend" = postgres ]; then
        scratch_db api
        env+=(DECENTCOM_STORAGE__BACKEND=postgres DECENTCOM_STORAGE__DATABASE_URL="$SCRATCH_URL")
    fi
    (cd "$dir" && exec env "${env[@]}" "$root/$bin" serve >"$dir/server.log" 2>&1) &
    server_pid=$!
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
    read -r token channel < <("$login" "http://127.0.0.1:$port")
    export BENCH_TOKEN=$token
    local base="http://127.0.0.1:$port/api/v1/channels/$channel/messages"
    for c in 1 16 64; do
        local threads=$(( c < 2 ? 1 : 2 ))
        read -r rps p50 p99 < <(wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$work/post.lua" "$base" | wrk_figures)
        rows+=("| $backend | POST message | $c | $rps | $p50 | $p99 |")
        post_rate[$backend,$c]=$rps
        read -r rps p50 p99 < <(wrk -t"$threads" -c"$c" -d"${duration}s" --latency -s "$work/get.lua" "$base?limit=50" | wrk_figures)
        rows+=("| $backend | GET latest 50 | $c | $rps | $p50 | $p99 |")
    done
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
}

run_backend sqlite
run_backend postgres

# pgbench: the server's message INSERT, straight into a migrated scratch database.
scratch_db pgbench
ref_url=$SCRATCH_URL
for f in migrations/postgres/*.sql; do psql "$ref_url" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null; done
psql "$ref_url" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
INSERT INTO users (pubkey, created_at) VALUES (decode(repeat('01', 32), 'hex'), now());
INSERT INTO channels (kind, name, created_at, updated_at) VALUES ('text', 'bench', now(), now());
SQL
cat >"$work/insert.sql" <<'SQL'
INSERT INTO messages (channel_id, author_id, thread_id, content, search_text, created_at)
VALUES (1, 1, NULL, 'hello from the load generator', 'hello from the load generator', now()) RETURNING id;
SQL
declare -A pg_rate
for c in 1 16 64; do
    threads=$(( c < 2 ? 1 : 2 ))
    pg_rate[$c]=$(pgbench -n -c "$c" -j "$threads" -T "$duration" -f "$work/insert.sql" "$ref_url" 2>/dev/null \
        | awk '/^tps/ {print $3}')
done

echo
echo "bench-api: ${duration}s per cell, wrk on 127.0.0.1, release build, 2 cores"
echo "| backend | request | clients | req/s | p50 | p99 |"
echo "|---|---|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "| clients | pgbench INSERT tps | server POST (postgres) req/s | ratio |"
echo "|---:|---:|---:|---:|"
for c in 1 16 64; do
    ratio=$(python3 -c "print(f'{${post_rate[postgres,$c]} / ${pg_rate[$c]}:.2f}')")
    echo "| $c | ${pg_rate[$c]} | ${post_rate[postgres,$c]} | $ratio |"
done
echo "targets: server POST >= 0.5 x pgbench, p99 < 50 ms at 64 clients"
