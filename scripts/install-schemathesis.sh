#!/usr/bin/env bash
# Installs schemathesis (property-based API tests from the OpenAPI document; PyPI) into a virtual
# environment under .tools/schemathesis when it is not there yet, and prints its executable.
# Pinned so that a run's examples (fixed seed) stay the same from one machine to the next.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=4.32.5
venv="$root/.tools/schemathesis"
bin="$venv/bin/schemathesis"
if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -q "$version"; then
    command -v python3 >/dev/null || { echo "install-schemathesis: python3 is missing (apt-get install python3 python3-venv)" >&2; exit 1; }
    echo "install-schemathesis: installing schemathesis $version into .tools/schemathesis (once, ~30 s)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" \
        || { echo "install-schemathesis: cannot create a virtual environment (apt-get install python3-venv)" >&2; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version" \
        || { echo "install-schemathesis: pip could not install schemathesis $version from PyPI" >&2; exit 1; }
fi
echo "$bin"
