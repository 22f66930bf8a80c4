#!/usr/bin/env bash
# Install what is missing, then run the test suite (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1
exec "${MERR_VENV:-.venv}/bin/python" -m pytest "$@"
