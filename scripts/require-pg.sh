#!/usr/bin/env bash
# Exits non-zero with a message naming what is missing when PostgreSQL cannot be reached.
set -uo pipefail
url=${1:-postgres://postgres@127.0.0.1:5432/postgres}
shown=$(printf '%s' "$url" | sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#')
if ! command -v psql >/dev/null 2>&1; then
    echo "require-pg: psql (the PostgreSQL client) is not installed: apt-get install postgresql-client" >&2
    exit 1
fi
if ! psql "$url" -qtAc 'SELECT 1' >/dev/null 2>&1; then
    echo "require-pg: no PostgreSQL answers at $shown." >&2
    echo "  The PostgreSQL suites need one: set DATABASE_URL to a server where this user may create" >&2
    echo "  databases, or start the local one:" >&2
    echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
    exit 1
fi
