#!/usr/bin/env bash
# Install everything, then build MERR from the sample clips: the real face clips and MER2023 clips in
# $MERR_SHARED_DATA (default ../shared/data), the same clips with espeak-ng speech muxed on, and a few
# broken files that the build quarantines. Output: $1 (default out/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. "${MERR_VENV:-.venv}/bin/activate"
export HF_HUB_OFFLINE=1

OUT=${1:-out/demo}
SAMPLES=${MERR_SHARED_DATA:-../shared/data}
INPUT=out/demo-input
python tests/fixtures/make_clips.py out/demo-clips --shared-data "$SAMPLES" >/dev/null
rm -rf "$INPUT" && mkdir -p "$INPUT/samples" "$INPUT/speech" "$INPUT/broken"
for clip in "$SAMPLES"/*.mp4 "$SAMPLES"/*.mov "$SAMPLES"/mer2023_sample/video/*.mp4; do
    ln -s "$(realpath "$clip")" "$INPUT/samples/"
done
ln -s "$(realpath out/demo-clips/speech)"/*.mp4 "$INPUT/speech/"
ln -s "$(realpath out/demo-clips/bad)"/{truncated,zero_bytes,text_file}.mp4 "$INPUT/broken/"

merr build "$INPUT" --out "$OUT" --partition-size 8
echo "the build is in $OUT: shards/ (the dataset), manifest.json, quarantine.parquet (3 broken files and the clip without a face, by design)"
