#!/usr/bin/env bash
# Installs s3s-fs (a real S3-compatible server that verifies SigV4 signatures) into .tools/s3s
# when it is not there yet; the S3 tests start it on a free loopback port.
# Pinned: 0.15 and later need a newer rustc than these machines have.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.tools/s3s/bin/s3s-fs"
if [ ! -x "$bin" ]; then
    echo "install-s3s-fs: installing s3s-fs 0.14.1 into .tools/s3s (once, ~2 min)" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$root/.tools/s3s" --quiet
fi
echo "$bin"
