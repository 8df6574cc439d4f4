#!/usr/bin/env bash
# Installs Debian's chromium (the headless browser that checks the API viewer at /api/v1/docs)
# with apt-get when it is missing, and prints its executable. Browser builds downloaded by other
# tools are not used: only the distribution's package is reachable from every machine we run on.
set -euo pipefail
bin=$(command -v chromium || true)
if [ -z "$bin" ]; then
    command -v apt-get >/dev/null \
        || { echo "install-chromium: chromium is missing and there is no apt-get to install it (install Debian's chromium package)" >&2; exit 1; }
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null \
            || { echo "install-chromium: chromium is missing; installing it needs root (apt-get install chromium)" >&2; exit 1; }
        sudo=(sudo -n)
    fi
    echo "install-chromium: installing Debian's chromium with apt-get (once, ~1 min)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Another apt run (a parallel build installing its own tools) holds the lock for a while.
    apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
    { "${sudo[@]}" "${apt[@]}" update && "${sudo[@]}" "${apt[@]}" install -y chromium >/dev/null; } \
        || { echo "install-chromium: apt-get could not install chromium" >&2; exit 1; }
    bin=$(command -v chromium) || { echo "install-chromium: chromium is still missing after apt-get" >&2; exit 1; }
fi
"$bin" --version >/dev/null 2>&1 || { echo "install-chromium: $bin does not run ($bin --version failed)" >&2; exit 1; }
echo "$bin"
