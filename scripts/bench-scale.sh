#!/usr/bin/env bash
# `just bench-scale`: nginx in front of 1 and then 2 `decentcom serve` processes sharing one
# PostgreSQL database and one S3 bucket (s3s-fs), the deployment of README "Deploying at scale".
# wrk drives a mixed workload through nginx — 4 reads of the latest page (limit 50) for every
# message posted — and the script prints req/s and latency for each process count, and the
# ratio of the two, in one run. nginx and wrk are Debian packages, installed when missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
duration=${BENCH_SECONDS:-10}
clients=${BENCH_CLIENTS:-64}
pg_url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

install_debian() { # command package
    command -v "$1" >/dev/null 2>&1 && return
    echo "bench-scale: installing $2 (Debian package)" >&2
    (apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }) \
        || { echo "bench-scale: $1 is missing and could not be installed (apt-get install $2)" >&2; exit 1; }
}
install_debian wrk wrk
install_debian nginx nginx
PATH="$PATH:/usr/sbin"
s3s_fs=$(scripts/install-s3s-fs.sh | tail -n 1)

SQLX_OFFLINE=true cargo build --quiet --release -p decentcom --bin decentcom --example bench_login
bin=$root/target/release/decentcom
login=$root/target/release/examples/bench_login
work=$(mktemp -d)
pids=()
db="decentcom_bench_scale_$$"
cleanup() {
    [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # url
    for _ in $(seq 200); do curl -fs "$1" >/dev/null && return; sleep 0.1; done
    echo "bench-scale: $1 did not answer" >&2
    exit 1
}

# One database and one bucket for every process.
psql "$pg_url" -qc "CREATE DATABASE $db" >/dev/null
database_url="${pg_url%/*}/$db"
s3_port=$(free_port)
export AWS_ACCESS_KEY_ID=BENCHSCALEKEY AWS_SECRET_ACCESS_KEY=bench-scale-secret
mkdir -p "$work/s3/media"
"$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done

# Starts one server process and sets PORT. (Not called in a $(…) subshell, so that its pid
# reaches `pids` and the exit trap stops it.)
start_process() { # name
    local port dir
    port=$(free_port)
    dir="$work/$1"
    mkdir -p "$dir"
    (cd "$dir" && exec env DECENTCOM_NETWORK__BIND_ADDRESS="127.0.0.1:$port" \
        DECENTCOM_STORAGE__BACKEND=postgres DECENTCOM_STORAGE__DATABASE_URL="$database_url" \
        DECENTCOM_STORAGE__MAX_CONNECTIONS=16 DECENTCOM_LIMITS__MESSAGES_PER_MINUTE=0 \
        DECENTCOM_STORAGE__MEDIA__PROVIDER=s3 DECENTCOM_STORAGE__MEDIA__BUCKET=media \
        DECENTCOM_STORAGE__MEDIA__ENDPOINT="http://127.0.0.1:$s3_port" DECENTCOM_STORAGE__MEDIA__ALLOW_HTTP=true \
        RUST_LOG=warn "$bin" serve >"$dir/server.log" 2>&1) &
    pids+=($!)
    wait_for "http://127.0.0.1:$port/health"
    PORT=$port
}

nginx_port=$(free_port)
mkdir -p "$work/nginx"
# (Re)starts nginx balancing over the given process ports, with the proxy settings of
# deploy/nginx.conf (plain HTTP on loopback instead of TLS).
start_nginx() { # port...
    [ -f "$work/nginx/nginx.pid" ] && { kill "$(cat "$work/nginx/nginx.pid")"; sleep 0.5; }
    {
        echo "worker_processes 1; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log warn;"
        echo "events { worker_connections 4096; }"
        echo "http {"
        echo "  access_log off;"
        for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $work/nginx/$t;"; done
        echo "  upstream decentcom { least_conn;"
        for port in "$@"; do echo "    server 127.0.0.1:$port max_fails=3 fail_timeout=10s;"; done
        echo "    keepalive 64; }"
        echo "  map \$http_upgrade \$connection_upgrade { default upgrade; '' ''; }"
        echo "  server { listen 127.0.0.1:$nginx_port; client_max_body_size 0; proxy_request_buffering off;"
        echo "    location / { proxy_pass http://decentcom; proxy_http_version 1.1;"
        echo "      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$connection_upgrade;"
        echo "      proxy_set_header Host \$host; proxy_read_timeout 1h; } }"
        echo "}"
    } >"$work/nginx/nginx.conf"
    nginx -c "$work/nginx/nginx.conf" -p "$work/nginx"
    wait_for "http://127.0.0.1:$nginx_port/health"
}

# The mixed workload: every fifth request posts a message, the others read the latest page.
cat >"$work/mixed.lua" <<'LUA'
local token = os.getenv("BENCH_TOKEN")
local path = os.getenv("BENCH_PATH")
local n = 0
request = function()
    n = n + 1
    if n % 5 == 0 then
        return wrk.format("POST", path, {["Authorization"] = "Bearer " .. token,
            ["Content-Type"] = "application/json"}, '{"content":"hello from the mixed workload"}')
    end
    return wrk.format("GET", path .. "?limit=50", {["Authorization"] = "Bearer " .. token})
end
LUA

# Prints "req/s p50 p99 errors" from wrk --latency output.
wrk_figures() {
    awk '/Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {errors+=$NF}
         /Socket errors/ {for (i = 3; i <= NF; i++) {gsub(",", "", $i); if ($i ~ /^[0-9]+$/) errors+=$i}}
         END {print rps, p50, p99, errors+0}'
}

start_process a
first=$PORT
start_nginx "$first"
read -r token channel < <("$login" "http://127.0.0.1:$nginx_port")
export BENCH_TOKEN=$token BENCH_PATH="/api/v1/channels/$channel/messages"
# Some history to read.
wrk -t1 -c4 -d2s -s "$work/mixed.lua" "http://127.0.0.1:$nginx_port" >/dev/null

declare -A rate
rows=()
measure() { # processes
    local rps p50 p99 errors
    read -r rps p50 p99 errors < <(wrk -t2 -c"$clients" -d"${duration}s" --latency -s "$work/mixed.lua" \
        "http://127.0.0.1:$nginx_port" | wrk_figures)
    rate[$1]=$rps
    rows+=("| $1 | $rps | $p50 | $p99 | $errors |")
}
measure 1
start_process b
second=$PORT
start_nginx "$first" "$second"
measure 2

echo
echo "bench-scale: nginx -> N decentcom processes (release) -> one PostgreSQL + one s3s-fs bucket;"
echo "wrk, ${clients} connections, ${duration}s per row, 4 GET latest-50 : 1 POST message; $(nproc) cores in all"
echo "| processes | req/s | p50 | p99 | errors |"
echo "|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo "2 processes / 1 process: $(python3 -c "print(f'{${rate[2]} / ${rate[1]}:.2f}')")x"
