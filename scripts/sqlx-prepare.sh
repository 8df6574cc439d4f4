#!/usr/bin/env bash
# Regenerates .sqlx/ (the offline query metadata) for BOTH dialects, or with --check verifies
# that the committed .sqlx/ is exactly what the current code and migrations produce.
#
# A crate has one DATABASE_URL, so each dialect is compiled on its own (cargo features `sqlite`
# / `postgres`) against a scratch database built from its migrations folder, with the macros
# writing their metadata to a per-dialect directory; the two sets are then merged. Metadata is
# keyed by a hash of the SQL text only: a statement text used by both dialects would collide,
# which is reported as an error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-write}
out="$root/target/sqlx-prepare"
rm -rf "$out"
mkdir -p "$out/sqlite" "$out/postgres" "$out/merged"

# One scratch PostgreSQL database per checkout, so two worktrees can prepare at the same time.
scratch_name="decentcom_sqlx_prepare_$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
for dialect in sqlite postgres; do
    url=$(SCRATCH_DB_NAME="$scratch_name" scripts/scratch-db.sh "$dialect")
    # Touch the crate so every query macro is expanded again against the scratch database.
    touch server/src/lib.rs
    echo "sqlx-prepare: describing $dialect statements" >&2
    SQLX_OFFLINE=false DATABASE_URL="$url" SQLX_OFFLINE_DIR="$out/$dialect" \
        cargo check --quiet --no-default-features --features "$dialect" --lib
done
touch server/src/lib.rs

collisions=$(comm -12 <(ls "$out/sqlite") <(ls "$out/postgres"))
if [ -n "$collisions" ]; then
    echo "sqlx-prepare: these statements have the same text in both dialects (make them distinct," >&2
    echo "e.g. a leading /* sqlite */ or /* pg */ comment):" >&2
    for f in $collisions; do
        python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["query"])' "$out/sqlite/$f"
    done >&2
    exit 1
fi
cp "$out"/sqlite/*.json "$out"/postgres/*.json "$out/merged/" 2>/dev/null || true
count=$(ls "$out/merged" | wc -l)

if [ "$mode" = "--check" ]; then
    if ! diff -r -q .sqlx "$out/merged" >"$out/diff.txt" 2>&1; then
        echo "sqlx-prepare: .sqlx/ is stale — run \`just prepare\` and commit the result:" >&2
        sed -e "s#$out/merged#(fresh)#" "$out/diff.txt" >&2
        exit 1
    fi
    echo "sqlx-prepare: .sqlx/ is up to date ($count statements, both dialects)"
else
    rm -rf .sqlx
    cp -r "$out/merged" .sqlx
    echo "sqlx-prepare: wrote $count statements to .sqlx/ ($(ls "$out/sqlite" | wc -l) sqlite, $(ls "$out/postgres" | wc -l) postgres)"
fi
