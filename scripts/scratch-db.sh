#!/usr/bin/env bash
# Builds a fresh scratch database from migrations/<dialect>/ and prints its URL.
# The query macros describe statements against it when compiling online (`just prepare`).
#
#   scripts/scratch-db.sh sqlite     -> sqlite:///…/target/scratch/sqlite.db
#   scripts/scratch-db.sh postgres   -> postgres://…/decentcom_scratch  (base: $PG_ADMIN_URL)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dialect=${1:?usage: scratch-db.sh sqlite|postgres}

case "$dialect" in
sqlite)
    mkdir -p "$root/target/scratch"
    db="$root/target/scratch/sqlite.db"
    rm -f "$db" "$db-wal" "$db-shm"
    python3 - "$db" "$root/migrations/sqlite" <<'PY'
import pathlib, sqlite3, sys
db, folder = sys.argv[1], pathlib.Path(sys.argv[2])
conn = sqlite3.connect(db)
for f in sorted(folder.glob("*.sql")):
    conn.executescript(f.read_text())
conn.commit()
PY
    echo "sqlite://$db"
    ;;
postgres)
    admin=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
    name=${SCRATCH_DB_NAME:-decentcom_scratch}
    if ! psql "$admin" -qtAc 'SELECT 1' >/dev/null 2>&1; then
        echo "scratch-db: cannot reach PostgreSQL at ${admin%%\?*} (set PG_ADMIN_URL, or start it:" >&2
        echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)" >&2
        exit 1
    fi
    psql "$admin" -qtA -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    url="${admin%/*}/$name"
    for f in "$root"/migrations/postgres/*.sql; do
        psql "$url" -qtA -v ON_ERROR_STOP=1 -f "$f" >/dev/null
    done
    echo "$url"
    ;;
*)
    echo "scratch-db: unknown dialect '$dialect' (sqlite or postgres)" >&2
    exit 2
    ;;
esac
