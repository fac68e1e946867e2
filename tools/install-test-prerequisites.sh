#!/bin/sh
# Installs the test suite's prerequisites that pip cannot provide, from Debian's packages, unless
# they are already on PATH: Prometheus (server + promtool; tests/deploy scrapes the project's
# metrics with it) and Chromium (tests/http drives the playground in a real headless browser).
# Idempotent; run by `./dev test` before the tests. Needs root (or password-less sudo) and a
# reachable apt mirror when something is missing. Exit status: 0 all present, 1 something missing.
set -eu

missing=""
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-prerequisites: apt-get not found; install$missing yourself" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-test-prerequisites: not root and no password-less sudo; install$missing yourself" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages' post-install scripts from starting system-wide services.
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    CREATED_POLICY=1
fi
status=0
# shellcheck disable=SC2086 # one word per package
{ $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; } >&2 || status=$?
if [ -n "$CREATED_POLICY" ]; then
    $SUDO rm -f "$POLICY"
fi
if [ "$status" -ne 0 ]; then
    echo "install-test-prerequisites: apt-get failed (status $status)" >&2
    exit 1
fi
