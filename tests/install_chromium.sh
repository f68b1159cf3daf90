#!/usr/bin/env bash
# The browser test's browser (tests/test_explore_browser.py): Debian's chromium and chromium-driver, from the system
# packages (a test tool's own browser download does not work offline). Does nothing when both are installed. Where
# apt is missing (macOS, other distributions) it says what to install and lets the other tests run.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
if ! command -v apt-get >/dev/null || { [ -n "$SUDO" ] && ! command -v sudo >/dev/null; }; then
    echo "install_chromium.sh: no apt-get (or no root): install chromium and chromedriver on the PATH yourself;" \
         "until then tests/test_explore_browser.py fails and the other tests run" >&2
    exit 0
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
