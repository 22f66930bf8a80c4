#!/usr/bin/env bash
# Install what is missing, then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# The gallery test opens the page in a real browser: Debian's chromium (tests only, not the tool).
if ! command -v chromium >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export HF_HUB_OFFLINE=1
exec "${MERR_VENV:-.venv}/bin/python" -m pytest "$@"
