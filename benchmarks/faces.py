"""The visual path (faces, AUs, peak): ours (the litert backend) against the MediaPipe Tasks backend and
bare video decode, on the same clips, on one core, in one run.

    python benchmarks/faces.py [--shared-data DIR] [--repeats 3]

The whole process (and the ffmpeg it starts) is pinned to one CPU core, so every number is per core.
Both paths are `FaceAnalyser.analyse` as the build runs it (frames sampled at 5 fps, faces and AUs, tracking
and main-person choice, coarse-to-fine peak, peak JPEG, aligned face crop, expression classifier). The
baseline is the analysis as it was before the litert backend: `faces.backend: mediapipe` with
`faces.frame_cache_mb: 0` (the refinement windows and the peak frame decoded again) and `media.decoder:
ffmpeg` (frames through the CLI's pipe); it runs once more with ours' in-process decoder, to show what
the decoder alone is worth. The runs take turns (ours, Tasks, decode; repeated) so that a slow spell of the
machine falls on all three; medians are reported. Printed: seconds of video analysed per core-second
(real time per core; target >= 5), ours against Tasks (target >= 2), both against bare decode
(`ffmpeg -i X -map 0:v:0 -f null -`), the landmark-model calls per second of video, and the projected
core-hours of a MER2023-SEMI build (73,148 clips of 3.5 s) at the measured rate.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from one_core import arguments_on_one_core

from merr_builder.config import BuildConfig, FacesConfig
from merr_builder.faces.stage import FaceAnalyser
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import ClipAudio

MER2023_SEMI_CLIPS = 73_148
MER2023_CLIP_S = 3.5


def bare_decode(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "fatal", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"], check=True)
    return time.perf_counter() - started


class Counted:
    """Counts the calls of one method of an object (the landmark model's, per backend)."""

    def __init__(self, owner: object, method: str) -> None:
        self.calls = 0
        inner = getattr(owner, method)

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls += 1
            return inner(*args, **kwargs)

        setattr(owner, method, counted)


def main() -> None:
    args = arguments_on_one_core(__doc__, repeats=3)

    data = args.shared_data
    paths = sorted([*(data / "mer2023_sample" / "video").glob("*.mp4"), data / "single_face.mp4",
                    data / "WolfgangLanger_Pexels.mp4", data / "face_noface.mov", data / "noface_face.mov"])  # fmt: skip
    config = BuildConfig()
    clips = [probe(ClipSource(p.stem, str(p)), config.ingest) for p in paths]
    audio = {c.clip_id: ClipAudio(c.source_path) if c.has_audio else None for c in clips}
    seconds_of_video = sum(c.video_duration_s for c in clips)
    ours = FaceAnalyser(FacesConfig(backend="litert"), config.media)
    # Today's analysis: the Tasks backend, its frames through the ffmpeg CLI's pipe, and the refinement
    # windows and peak frame decoded again.
    tasks = FaceAnalyser(
        FacesConfig(backend="mediapipe", frame_cache_mb=0, refine_tolerance=0.15), config.media.model_copy(update={"decoder": "ffmpeg"})
    )
    # The same with ours' in-process decode: how much of the speed-up is the decoder's.
    tasks_pyav = FaceAnalyser(tasks.config, config.media, tasks.extractor)
    landmarked = {"litert": Counted(ours.extractor, "_mesh"), "mediapipe": Counted(tasks.extractor, "_landmark")}

    def run(analyser: FaceAnalyser) -> float:
        landmarked[analyser.extractor.name].calls = 0
        started = time.perf_counter()
        for clip in clips:
            analyser.analyse(clip, audio[clip.clip_id])
        return time.perf_counter() - started

    run(ours), run(tasks), bare_decode(paths)  # warm-up: model initialisation, page cache, packet times
    times: dict[str, list[float]] = {"ours": [], "tasks": [], "decode": [], "tasks_pyav": []}
    for _ in range(args.repeats):
        times["ours"].append(run(ours))
        times["tasks"].append(run(tasks))
        times["decode"].append(bare_decode(paths))
        times["tasks_pyav"].append(run(tasks_pyav))
    ours_s, tasks_s, decode_s, tasks_pyav_s = (statistics.median(times[k]) for k in ("ours", "tasks", "decode", "tasks_pyav"))

    def rate(seconds: float) -> str:
        return f"{seconds:7.2f} s  ({seconds_of_video / seconds:5.2f}x real time per core)"

    print(f"machine: {platform.machine()}, pinned to 1 of {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"clips: {len(clips)} ({seconds_of_video:.1f} s of video), runs: {args.repeats} each, taking turns (median)")
    print(f"bare video decode : {rate(decode_s)}")
    print(f"ours (litert)     : {rate(ours_s)}   runs: {', '.join(f'{t:.2f}' for t in times['ours'])}")
    print(f"baseline (Tasks)  : {rate(tasks_s)}   runs: {', '.join(f'{t:.2f}' for t in times['tasks'])}")
    print(f"Tasks, ours' decode: {rate(tasks_pyav_s)}   runs: {', '.join(f'{t:.2f}' for t in times['tasks_pyav'])}")
    for name, counter in landmarked.items():
        print(f"  landmark-model calls, {name:9s}: {counter.calls} ({counter.calls / seconds_of_video:.1f} per second of video)")
    print(f"ours / Tasks speed-up: {tasks_s / ours_s:.2f}x  (target >= 2); against Tasks with ours' decode: {tasks_pyav_s / ours_s:.2f}x")
    print(f"real time per core   : {seconds_of_video / ours_s:.2f}x  (target >= 5)")
    print(f"ours / bare decode   : {ours_s / decode_s:.2f}   Tasks / bare decode: {tasks_s / decode_s:.2f}")
    per_video_s = ours_s / seconds_of_video
    core_hours = MER2023_SEMI_CLIPS * MER2023_CLIP_S * per_video_s / 3600
    print(f"MER2023-SEMI ({MER2023_SEMI_CLIPS:,} clips x {MER2023_CLIP_S} s): {core_hours:.0f} core-hours for the visual path "
          f"(Tasks: {core_hours * tasks_s / ours_s:.0f}); {core_hours / 16:.1f} h on 16 cores")


if __name__ == "__main__":
    main()
