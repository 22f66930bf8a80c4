#!/usr/bin/env bash
# The GPU benchmarks of a device lease (15 minutes in all, starts included), as prepared commands: the fine-step
# LLM (issue 20) and speech (issue 23) each one call of the device tool; the trainer's (issue 7, met) on request.
#
#   bash benchmarks/gpu_session.sh prepare   # here, once: wheels and the tokenizer into .whl/ (git-ignored)
#   bash benchmarks/gpu_session.sh rehearse  # here, optional (about 10 minutes, no GPU): tests/annotate and the
#                                            # CPU-size LLM benchmark under the device image's torch version
#   bash benchmarks/gpu_session.sh run [llm|train|all]  # on the device machine, from the repo root, with .whl
#                                            # carried (device tool: carry [".whl"], timeout_s 600). The llm
#                                            # benchmark runs three prompt shapes (real, early, stress; each
#                                            # shape's JSON written as it ends), ours with masked and with
#                                            # row-length attention, row-length with fused layers, at the
#                                            # automatic row count and with FP8 layers (the early and stress
#                                            # shapes: masked and the best only): about 8 minutes alone, so run `train` and `llm`
#                                            # as two calls (the machine stays warm 30 s between)
#   bash benchmarks/gpu_session.sh prepare-speech   # here: CTranslate2 and faster-whisper wheels, the clips'
#                                            # audio and Whisper's tokenizer into .whl-speech/ (about 50 MB)
#   bash benchmarks/gpu_session.sh run speech       # there, a call of its own (carry [".whl-speech"]: it and
#                                            # .whl do not fit the 64 MiB together); about 3-5 minutes
#
# With 15 device minutes in all (the start included), run `speech` first, then `llm` with what is left:
# LLM_LIMIT_S=<seconds left less a minute> bash benchmarks/gpu_session.sh run llm  (its JSON is written
# after every variant, in the order real, early, stress, so a shortened run keeps what it finished; on
# the real shape the float32 check comes before the automatic row count and FP8). With under about 8
# minutes left, drop the optional FP8 variant: LLM_ARGS=--no-fp8.
#
# The device image has torch but not every package we pin (pydantic, our transformers/peft versions), and
# nothing can be fetched there, so they travel as cp312 wheels and install into /tmp/site. `run` writes
# each benchmark's log and JSON under $OUT (or out/gpu here) and gives each a time limit, so one that
# hangs or runs out of memory still leaves the other's numbers.
set -uo pipefail
cd "$(dirname "$0")/.."
# pins NAME...: each package's pinned version (NAME==VERSION) as requirements.lock (or, for an optional extra's
# package, pyproject.toml) has it, so that the device carries what the tests here ran.
pins() {
    local name pin
    for name; do
        pin=$(grep -i -m1 -o "^$name==[^ ;]*" requirements.lock || grep -i -m1 -o "\"$name==[^\"]*" pyproject.toml | tr -d '"')
        [ -n "$pin" ] || { echo "$name: pinned in neither requirements.lock nor pyproject.toml" >&2; return 1; }
        echo "$pin"
    done
}
python=${MERR_VENV:-.venv}/bin/python  # (here: prepare, prepare-speech)
# download DIR NAME...: the pinned cp312 x86_64 wheels of these packages (the device's Python), no dependencies.
download() {
    local dir=$1 wheels
    shift
    wheels=$(pins "$@") || return 1
    # shellcheck disable=SC2086  # (one pin a word)
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$dir" $wheels
}
# What the LLM and trainer benchmarks need beside the image's torch (torchao: the FP8 variant, annotate.fp8, 3.4 MB).
WHEEL_NAMES=(transformers tokenizers huggingface_hub peft pydantic pydantic_core annotated-types typing-inspection
             typing_extensions dill httpx2 httpcore2 h2 hpack hyperframe sniffio truststore torchao)
SPEECH_WHEEL_NAMES=(ctranslate2 faster-whisper)
# The device image's torch (KINDS.md's pip list, 2026-11). `rehearse` runs the LLM tests and the CPU-size benchmark
# under it here, to find an API our code uses that it lacks before device minutes are spent; `run` says if it changed.
DEVICE_TORCH=torch==2.11.0

# CTranslate2's PyPI wheel is built for CUDA 12 and opens libcublas.so.12 (and cuDNN 9) when it runs; the
# device image is CUDA 13, whose cuBLAS is libcublas.so.13, and CUDA 12's cuBLAS (about 600 MB) cannot
# travel. Where no libcublas.so.12 is found, CUDA 13's is offered under that name and the log says so; if
# that fails, the benchmark's error says what did. Why it may work (read from the 4.8.5 wheel with readelf
# and strings): libctranslate2 does not link cuBLAS, it dlopens libcublas.so.12 and looks up nine functions
# by name (cublasCreate_v2, cublasDestroy_v2, cublasSetStream_v2, cublasGetMathMode, cublasGetProperty,
# cublasGemmEx, cublasGemmStridedBatchedEx, cublasSgemm_v2, cublasSgemmStridedBatched), all still in cuBLAS
# 13 with the same signatures; its CUDA runtime is linked in (CUDA 12's, which a CUDA 13 driver runs); it
# names no cuDNN. Known trouble with cuBLAS 13 is in int8 GEMMs (OpenNMT/CTranslate2#1933); ours is float16.
speech_libraries() {
    local site lib found shim=/tmp/cublas12
    site=$(python3 -c "import os, nvidia; print(os.path.dirname(list(nvidia.__path__)[0]))" 2>/dev/null)
    [ -n "$site" ] || return 0
    for lib in libcudnn.so.9 libcublas.so.13; do
        found=$(find "$site/nvidia" -name "$lib*" 2>/dev/null | head -1)
        [ -n "$found" ] && export LD_LIBRARY_PATH=$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    done
    if ! ldconfig -p | grep -q 'libcublas.so.12' && [ -z "$(find "$site/nvidia" -name 'libcublas.so.12*' | head -1)" ]; then
        mkdir -p "$shim"
        for lib in libcublas libcublasLt; do
            found=$(find "$site/nvidia" -name "$lib.so.13*" 2>/dev/null | head -1)
            [ -n "$found" ] && ln -sf "$found" "$shim/$lib.so.12"
        done
        echo "no libcublas.so.12 here: CUDA 13's cuBLAS offered under that name ($(ls "$shim" | tr '\n' ' '))"
        export LD_LIBRARY_PATH=$shim:$LD_LIBRARY_PATH
    fi
}

case "${1:-}" in
prepare-speech)
    download .whl-speech "${SPEECH_WHEEL_NAMES[@]}" || exit 1
    HF_HUB_OFFLINE=1 "$python" benchmarks/speech.py --save-bundle .whl-speech || exit 1
    du -sh .whl-speech
    ;;
prepare)
    download .whl "${WHEEL_NAMES[@]}" || exit 1
    # The benchmarks' vocabulary and chat template: SmolLM2's tokenizer, from the pinned package.
    "$python" -c "
from transformers import AutoTokenizer
from merr_builder.assets import smollm2_dir
AutoTokenizer.from_pretrained(smollm2_dir()).save_pretrained('.whl/tokenizer')" || exit 1
    du -sh .whl
    ;;
run)
    out=${OUT:-out/gpu}
    mkdir -p "$out"
    if [[ ${2:-} == speech ]]; then  # issue 23: ours batched against plain faster-whisper, base and large-v3 shapes
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site-speech \
            .whl-speech/*.whl || exit 1
        speech_libraries
        # (the empty `av` last: a real PyAV, where there is one, wins)
        export PYTHONPATH=/tmp/site-speech:$PWD:$PWD/.whl-speech/stub HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
        nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
        timeout "${SPEECH_LIMIT_S:-480}" python3 benchmarks/speech.py --gpu --bundle .whl-speech \
            --json "$out/speech_gpu.json" 2>&1 | tee "$out/speech_gpu.log"
        echo "speech exit: ${PIPESTATUS[0]}"
        exit 0
    fi
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"
    have=$(python3 -c "import torch; print(torch.__version__.split('+')[0])")
    [ "torch==$have" = "$DEVICE_TORCH" ] || echo "note: this image's torch is $have, not the rehearsed" \
        "${DEVICE_TORCH#torch==} (set DEVICE_TORCH in this script and run \`rehearse\` here next time)" | tee -a "$out/gpu.txt"
    only=${2:-llm}  # (train and llm together outlast one 600 s call; `all` runs both)
    # The trainer first (issue 7); then the fine-step LLM (issue 5).
    if [[ $only == all || $only == train ]]; then
        timeout "${TRAIN_LIMIT_S:-300}" python3 benchmarks/train_throughput.py --gpu --tokenizer .whl/tokenizer \
            --json "$out/train_throughput.json" 2>&1 | tee "$out/train_throughput.log"
        echo "train_throughput exit: ${PIPESTATUS[0]}"
    fi
    if [[ $only == all || $only == llm ]]; then
        # shellcheck disable=SC2086  # (LLM_ARGS: more options, word-split on purpose)
        timeout "${LLM_LIMIT_S:-540}" python3 benchmarks/llm_throughput.py --gpu --tokenizer .whl/tokenizer \
            --json "$out/llm_throughput.json" ${LLM_ARGS:-} 2>&1 | tee "$out/llm_throughput.log"
        echo "llm_throughput exit: ${PIPESTATUS[0]}"
    fi
    ;;
rehearse)  # here, on the CPU, before a lease: the LLM tests and the CPU-size benchmark under the device's torch
    venv=${REHEARSE_VENV:-/tmp/merr-device-torch}  # (about 7 GB: the CUDA build of torch and its libraries)
    MERR_VENV=$venv MERR_TORCH=$DEVICE_TORCH bash scripts/install.sh || exit 1
    # shellcheck disable=SC2046  # (one pin)
    "$venv/bin/python" -m pip install -q --no-deps $(pins torchao) || exit 1  # (FP8 runs on a GPU only: imported here)
    "$venv/bin/python" -c "import torch, torchao.quantization; print('torch', torch.__version__, 'torchao', torchao.__version__)" || exit 1
    HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -p no:randomly tests/annotate || exit 1
    (cd benchmarks && HF_HUB_OFFLINE=1 "$venv/bin/python" llm_throughput.py --shapes real,early,stress) || exit 1
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh prepare | prepare-speech | rehearse | run [train|llm|speech]" >&2
    exit 2
    ;;
esac
