# decentcom tasks. On a fresh machine run them through `scripts/just <recipe>`, which installs
# `just` into .tools/ first.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Builds use the committed offline query metadata (.sqlx/); no database is needed to compile.
export SQLX_OFFLINE := "true"

# PostgreSQL used by the PostgreSQL suites: $DATABASE_URL, else the local server.
pg_url := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")

default:
    @just --list

# Run the server on the embedded default (SQLite file + local media directory).
run *ARGS:
    cargo run --release -p decentcom -- serve {{ARGS}}

# Every test suite: unit tests, the storage conformance suite on SQLite and PostgreSQL,
# schema parity, the HTTP integration tests, and the API reference against the code.
test: require-pg require-s3s require-chromium
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo test --workspace

# The SQLite half: unit tests and the conformance suite on SQLite.
test-sqlite:
    cargo test -p decentcom --lib
    cargo test -p decentcom --test conformance -- sqlite::

# The PostgreSQL suites, against $DATABASE_URL or the local server (each test in a fresh database).
test-pg: require-pg
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo test -p decentcom --test conformance -- postgres::
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo test -p decentcom --test schema_parity

# Fails, naming what is missing, when no PostgreSQL answers (never skips the suites).
require-pg:
    @scripts/require-pg.sh "{{pg_url}}"

# Installs s3s-fs (the S3-compatible server of the S3 media tests) into .tools/s3s when missing;
# fails when it cannot (the S3 tests never skip).
require-s3s:
    @scripts/install-s3s-fs.sh > /dev/null

# Installs Debian's chromium with apt-get when missing (the browser that checks the page at
# /api/v1/docs); fails when it cannot (that test never skips).
require-chromium:
    @scripts/install-chromium.sh > /dev/null

# Regenerate docs/api/routes.md from the OpenAPI document (`just test` fails while they differ).
docs:
    DECENTCOM_UPDATE_DOCS=1 cargo test -p decentcom --test docs routes::

# Regenerate .sqlx/ for both dialects from scratch databases built from migrations/.
prepare: require-pg
    PG_ADMIN_URL="{{pg_url}}" scripts/sqlx-prepare.sh

# Formatting, lints, and offline metadata freshness (both dialects).
check: require-pg
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    PG_ADMIN_URL="{{pg_url}}" scripts/sqlx-prepare.sh --check

# Storage benchmark on both backends: insert throughput, latest-page and search latency at 1M messages.
bench-storage *ARGS: require-pg
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo run --release -p decentcom --example bench_storage -- {{ARGS}}

# REST API under load on both backends (wrk), with pgbench driving the same INSERT as the reference.
bench-api: require-pg
    DATABASE_URL="{{pg_url}}" scripts/bench-api.sh

# S3 media benchmark against s3s-fs: upload MiB/s through the server vs a direct put, server RSS
# during a 1 GiB upload, 302 latency. Runs target/release/decentcom as a child process.
bench-media *ARGS: require-s3s
    cargo build --release -p decentcom --bin decentcom
    cargo run --release -p decentcom --example bench_media -- {{ARGS}}

# Scale-out: nginx in front of 1 and then 2 server processes (one PostgreSQL, one s3s-fs bucket),
# a mixed read/post workload from wrk; prints req/s and p99 for each and their ratio.
bench-scale: require-pg require-s3s
    DATABASE_URL="{{pg_url}}" scripts/bench-scale.sh

# Event bus: two processes posting at increasing rates through each provider (PostgreSQL, NATS
# JetStream at $NATS_URL); prints delivery p50/p99 per rate, the highest rate sustained with p99 <
# 250 ms, and the figures at 1,000 posts/s.
bench-bus *ARGS: require-pg
    cargo build --release -p decentcom --bin decentcom
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo run --release -p decentcom --example bench_bus -- {{ARGS}}

# decentcom migrate against pgloader: generates a synthetic community (1M messages, 10k users) as a
# SQLite file, times `decentcom migrate` SQLite → PostgreSQL (verification included) and pgloader
# loading the same file into PostgreSQL in alternating pairs (--runs N, 3 by default), then
# PostgreSQL → SQLite once; prints rows/s, each pair's ratio and their median (target ≥ 1.5×
# pgloader). Installs pgloader with apt when missing.
bench-migrate *ARGS: require-pg
    command -v pgloader >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgloader)
    cargo build --release -p decentcom --bin decentcom
    DECENTCOM_TEST_PG_URL="{{pg_url}}" cargo run --release -p decentcom --example bench_migrate -- {{ARGS}}
