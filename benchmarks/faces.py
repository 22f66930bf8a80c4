"""The visual path (faces, AUs, peak) against bare video decode of the same clips, in one run, on one core.

    python benchmarks/faces.py [--shared-data DIR] [--repeats 2]

The whole process (and the ffmpeg it starts) is pinned to one CPU core, so both numbers are per core.
Ours: `FaceAnalyser.analyse` as the build runs it (frames sampled at 5 fps, full-range detection,
landmarks and blendshapes on face crops, tracking, coarse-to-fine peak, peak JPEG and face crop).
Baseline: `ffmpeg -i X -map 0:v:0 -f null -`, decoding every video frame. Also reported: analysed
frames per second per core (sampled frames + refinement frames, through detector and landmarker), the
time spent inside the models, and the floor that leaves: bare decode + model time, over bare decode.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from one_core import arguments_on_one_core

from merr_builder.config import BuildConfig
from merr_builder.faces.mediapipe import MediaPipeExtractor
from merr_builder.faces.stage import FaceAnalyser
from merr_builder.faces.tracking import NEAR_SHIFT
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import ClipAudio


class CountingExtractor(MediaPipeExtractor):
    """The default backend, counting the frames it analyses and the time spent in its models."""

    frames = 0
    model_s = 0.0

    def faces_in(self, rgb):  # type: ignore[no-untyped-def]
        return self._counted(super().faces_in, rgb)

    def face_near(self, rgb, reference, max_shift=NEAR_SHIFT):  # type: ignore[no-untyped-def]
        return self._counted(super().face_near, rgb, reference, max_shift)

    @staticmethod
    def _counted(call, *args):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            CountingExtractor.frames += 1
            CountingExtractor.model_s += time.perf_counter() - started


def bare_decode(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "fatal", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"], check=True)
    return time.perf_counter() - started


def main() -> None:
    args = arguments_on_one_core(__doc__)

    data = args.shared_data
    paths = sorted([*(data / "mer2023_sample" / "video").glob("*.mp4"), data / "single_face.mp4",
                    data / "WolfgangLanger_Pexels.mp4", data / "face_noface.mov", data / "noface_face.mov"])  # fmt: skip
    config = BuildConfig()
    clips = [probe(ClipSource(p.stem, str(p)), config.ingest) for p in paths]
    audio = {c.clip_id: ClipAudio(c.source_path) if c.has_audio else None for c in clips}
    analyser = FaceAnalyser(config.faces, config.media, CountingExtractor())
    seconds_of_video = sum(c.video_duration_s for c in clips)

    def ours() -> float:
        CountingExtractor.frames, CountingExtractor.model_s = 0, 0.0
        started = time.perf_counter()
        for clip in clips:
            analyser.analyse(clip, audio[clip.clip_id])
        return time.perf_counter() - started

    ours()  # warm-up: model initialisation, page cache
    bare_decode(paths)
    baseline = statistics.median(bare_decode(paths) for _ in range(args.repeats))
    ours_s = statistics.median(ours() for _ in range(args.repeats))
    frames, model_s = CountingExtractor.frames, CountingExtractor.model_s  # of the last run

    print(f"machine: {platform.machine()}, pinned to 1 of {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"clips: {len(clips)} ({seconds_of_video:.1f} s of video), repeats: {args.repeats} (median)")
    print(f"bare video decode : {baseline:7.2f} s  ({baseline / len(clips) * 1000:6.0f} ms per clip)")
    print(f"visual path       : {ours_s:7.2f} s  ({ours_s / len(clips) * 1000:6.0f} ms per clip)")
    print(f"analysed frames   : {frames} ({frames / ours_s:.1f} frames/s per core, incl. decode)")
    print(f"  of which models : {model_s:7.2f} s  ({model_s / frames * 1000:.1f} ms per analysed frame: detector + landmarker)")
    print(f"ratio ours / bare : {ours_s / baseline:.2f}  (target <= 2)")
    # The floor of this design: every analysed frame must pass the models, and every frame must be decoded.
    print(f"floor (bare decode + models) / bare : {(baseline + model_s) / baseline:.2f}")


if __name__ == "__main__":
    main()
