"""ASR and tone real-time factors per core (seconds of audio per second of wall), in one run.

    python benchmarks/speech.py [--shared-data DIR] [--repeats 2]

The process is pinned to one CPU core and CTranslate2 told to use one thread. Audio: the 6 espeak-ng
speech clips of tests/fixtures/make_clips.py and the 4 MER2023 clips (Mandarin, language forced).
ASR: faster-whisper, Whisper base int8, VAD and word timestamps on, as the build runs it, at beam 5
(the build's default) and greedy; baseline: faster-whisper's own WhisperModel with the same settings
at beam 5 (it encodes each clip's window twice when it detects the language). Tone: eGeMAPSv02 functionals (openSMILE) plus pace from the words.
Target for ASR: at least 4x real time per core.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from faster_whisper import WhisperModel
from one_core import arguments_on_one_core, make_clips

from merr_builder.media import AUDIO_SAMPLE_RATE, decode_audio
from merr_builder.speech.faster_whisper import FasterWhisperASR
from merr_builder.speech.tone import egemaps, pace


def main() -> None:
    args = arguments_on_one_core(__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = make_clips.make_all(Path(tmp) / "clips", args.shared_data)
        items = [(decode_audio(str(p)), None) for p in fixtures.speech.values()]
        items += [(decode_audio(str(p)), "zh") for p in sorted((args.shared_data / "mer2023_sample" / "video").glob("*.mp4"))]
    seconds = sum(len(a) for a, _ in items) / AUDIO_SAMPLE_RATE

    # The three set-ups take turns clip by clip, so a noisy neighbour slows them alike.
    setups: dict[int | str, FasterWhisperASR] = {}
    for beam in (5, 1, "plain faster-whisper, beam 5"):
        asr = setups[beam] = FasterWhisperASR(beam_size=beam if isinstance(beam, int) else 5, cpu_threads=1)
        if not isinstance(beam, int):
            asr.model = WhisperModel(str(asr.model_dir), device="cpu", compute_type="int8", cpu_threads=1)
        asr.transcribe(items[0][0], None, "transcribe")  # warm-up
    walls: dict[int | str, list[float]] = {beam: [] for beam in setups}
    for _ in range(args.repeats):
        per_clip = {beam: 0.0 for beam in setups}
        for audio, language in items:
            for beam, asr in setups.items():
                started = time.perf_counter()
                asr.transcribe(audio, language, "transcribe")
                per_clip[beam] += time.perf_counter() - started
        for beam, wall in per_clip.items():
            walls[beam].append(wall)
    results = {beam: statistics.median(w) for beam, w in walls.items()}
    asr = setups[5]

    words = [asr.transcribe(a, lang, "transcribe").words for a, lang in items]
    egemaps(items[0][0], AUDIO_SAMPLE_RATE)  # warm-up

    def run_tone() -> float:
        started = time.perf_counter()
        for (audio, _), ws in zip(items, words):
            egemaps(audio, AUDIO_SAMPLE_RATE)
            pace(ws)
        return time.perf_counter() - started

    tone = statistics.median(run_tone() for _ in range(args.repeats))
    print(f"machine: {platform.machine()}, pinned to 1 of {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"audio: {len(items)} clips, {seconds:.1f} s; repeats: {args.repeats} (median)")
    for beam, wall in results.items():
        name = f"ASR beam {beam}" if isinstance(beam, int) else beam
        print(f"{name:31}: {wall:6.2f} s  -> {seconds / wall:5.1f}x real time per core  (target >= 4)")
    baseline = results["plain faster-whisper, beam 5"]
    print(f"ours beam 5 vs plain faster-whisper beam 5: {baseline / results[5]:.2f}x faster")
    print(f"{'tone (eGeMAPS+pace)':31}: {tone:6.2f} s  -> {seconds / tone:5.1f}x real time per core")


if __name__ == "__main__":
    main()
