#!/usr/bin/env bash
# Vendors Swagger UI (npm package swagger-ui-dist) into server/assets/swagger-ui/: the files the
# page at /api/v1/docs serves, compiled into the binary so that the page needs no network.
# Run by hand to move to another version: `scripts/vendor-swagger-ui.sh 5.36.0`, then set
# SWAGGER_UI_VERSION in server/src/http/docs.rs to the same version.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: vendor-swagger-ui.sh VERSION}
command -v npm >/dev/null || { echo "vendor-swagger-ui: npm is missing" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf "swagger-ui-dist-$version.tgz")
dest="$root/server/assets/swagger-ui"
rm -rf "$dest"
mkdir -p "$dest"
# The bundle (with its dependencies), its stylesheet, and the licences that come with them, byte
# for byte as published (source maps are left out: only developer tools ask for them).
for f in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css LICENSE NOTICE package.json; do
    cp "$work/package/$f" "$dest/$f"
done
echo "vendor-swagger-ui: swagger-ui-dist $version in ${dest#"$root"/}" >&2
