#!/bin/sh
# Installs Debian's `prometheus` package (the server and promtool) unless both are already on PATH.
# Idempotent; run by `./dev test` before the tests (tests/deploy needs it) and by operators who want
# to try the monitoring config locally.
# Needs root (or sudo) and a reachable apt mirror. Exit status: 0 installed/present, 1 impossible.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-prometheus: apt-get not found; install Prometheus >= 2.42 (prometheus, promtool) yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-prometheus: not root and no password-less sudo" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package's post-install script from starting a system-wide prometheus service.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
status=0
{ $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends prometheus; } >&2 || status=$?
if [ -n "$CREATED_POLICY" ]; then
    $SUDO rm -f "$POLICY"
fi
if [ "$status" -ne 0 ]; then
    echo "install-prometheus: apt-get failed (status $status)" >&2
    exit 1
fi
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
