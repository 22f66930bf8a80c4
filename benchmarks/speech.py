"""ASR speed: ours against plain faster-whisper with the same model and settings, in one run.

CPU (the default):

    python benchmarks/speech.py [--shared-data DIR] [--repeats 2]

The process is pinned to one CPU core and CTranslate2 told to use one thread. Audio: the 6 espeak-ng
speech clips of tests/fixtures/make_clips.py and the 4 MER2023 clips (Mandarin, language forced). ASR:
faster-whisper, Whisper base int8, VAD and word timestamps on, as the build runs it, at beam 5 (the
build's default) and greedy; baseline: faster-whisper's own WhisperModel with the same settings at beam 5
(it encodes each clip's window twice when it detects the language). The headline is ours/plain; the
real-time factor per core is beside it, with the CPU named (it moves 4x between CPU models). Tone:
eGeMAPSv02 functionals (openSMILE) plus pace from the words.

GPU (through the device tool, inside benchmarks/gpu_session.sh):

    python benchmarks/speech.py --gpu --bundle .whl-speech [--shapes base,large-v3] [--clips 64]
                                [--batch 32] [--max-new-tokens 64] [--json FILE]

The device cannot download and carries at most 64 MiB, so the pinned model (145 MB) cannot travel:
random-weight models of Whisper base's and large-v3's shapes are converted there (float16), the same
converter a user runs. A random model never ends its text, so end-of-text is suppressed and every window
decodes `--max-new-tokens` tokens on every path: the same work, a fair ratio. Ours: the clips side by side
in batches of `--batch`, their Whisper calls batched (the build's path on a GPU), and one by one; plain:
faster-whisper's WhisperModel per clip with the same model and settings. Target: ours batched >= 3x plain.
The same words are not expected here: a random model's language guesses and next tokens are near ties,
which our language detection (on the frames decoding reads, one frame fewer than plain's) and float16
batches (summed in another order) can turn; the shares of clips whose text agrees are printed. On the
CPU the batched path's rows equal the one-by-one path's with the real model (tests/speech/test_batching.py).

Bundle (here, for the GPU run: `bash benchmarks/gpu_session.sh prepare-speech`):

    python benchmarks/speech.py --save-bundle .whl-speech [--shared-data DIR]

writes the clips' audio (audio.npz), Whisper's tokenizer.json, and an empty module named `av` (stub/):
faster-whisper imports PyAV only to decode files, which the benchmark never asks of it, and PyAV's wheel
(36 MB) cannot travel beside CTranslate2's (43 MB) under the 64 MiB limit.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from one_core import make_clips, one_core_parser, pin_to_one_core

from merr_builder.speech.faster_whisper import FasterWhisperASR, resolved_compute_type

SAMPLE_RATE = 16_000


def cpu_name() -> str:
    """The CPU model as the machine names it, with the vector units that decide CTranslate2's int8 speed
    (a VM may name only the family: AMX marks an Intel Sapphire Rapids or later)."""
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), platform.processor())
    flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    units = [unit for unit, flag in (("AVX-512", "avx512f"), ("AVX-512 VNNI", "avx512_vnni"), ("AMX", "amx_tile")) if flag in flags]
    return f"{name or platform.machine()}" + (f" [{', '.join(units)}]" if units else "")


def clip_audio(shared_data: Path) -> list[tuple[str, np.ndarray, str | None]]:
    """(name, 16 kHz audio, forced language) of the benchmark's clips."""
    from merr_builder.media import decode_audio

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = make_clips.make_all(Path(tmp) / "clips", shared_data)
        items = [(name, decode_audio(str(p)), None) for name, p in fixtures.speech.items()]
    mer = sorted((shared_data / "mer2023_sample" / "video").glob("*.mp4"))
    return items + [(p.stem, decode_audio(str(p)), "zh") for p in mer]


def run_cpu(args) -> None:  # type: ignore[no-untyped-def]
    from faster_whisper import WhisperModel

    from merr_builder.speech.tone import egemaps, pace

    pin_to_one_core()
    items = [(audio, language) for _, audio, language in clip_audio(args.shared_data)]
    seconds = sum(len(a) for a, _ in items) / SAMPLE_RATE

    # The three set-ups take turns clip by clip, so a noisy neighbour slows them alike.
    setups: dict[int | str, FasterWhisperASR] = {}
    for beam in (5, 1, "plain faster-whisper, beam 5"):
        asr = setups[beam] = FasterWhisperASR(device="cpu", beam_size=beam if isinstance(beam, int) else 5, cpu_threads=1)
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
    egemaps(items[0][0], SAMPLE_RATE)  # warm-up

    def run_tone() -> float:
        started = time.perf_counter()
        for (audio, _), ws in zip(items, words):
            egemaps(audio, SAMPLE_RATE)
            pace(ws)
        return time.perf_counter() - started

    tone = statistics.median(run_tone() for _ in range(args.repeats))
    baseline = results["plain faster-whisper, beam 5"]
    print(f"ours (beam 5) / plain faster-whisper (beam 5): {baseline / results[5]:.2f}x faster, same model, settings and core")
    print(f"CPU: {cpu_name()} ({platform.machine()}), pinned to 1 of {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"audio: {len(items)} clips, {seconds:.1f} s; repeats: {args.repeats} (median)")
    for beam, wall in results.items():
        name = f"ours, beam {beam}" if isinstance(beam, int) else beam
        print(f"{name:31}: {wall:6.2f} s  -> {seconds / wall:5.1f}x real time per core")
    print(f"{'tone (eGeMAPS+pace)':31}: {tone:6.2f} s  -> {seconds / tone:5.1f}x real time per core")


def save_bundle(args) -> None:  # type: ignore[no-untyped-def]
    from merr_builder.assets import whisper_base_dir

    out = Path(args.save_bundle)
    (out / "stub" / "av").mkdir(parents=True, exist_ok=True)
    items = clip_audio(args.shared_data)
    np.savez_compressed(
        out / "audio.npz",
        **{f"{i:02d}_{name}": (audio * 32767).astype(np.int16) for i, (name, audio, _) in enumerate(items)},
        languages=np.array([language or "" for _, _, language in items]),
    )
    (out / "tokenizer.json").write_bytes((whisper_base_dir() / "tokenizer.json").read_bytes())
    (out / "stub" / "av" / "__init__.py").write_text(
        '"""Empty stand-in for PyAV on the device: faster-whisper imports it to decode files, which the GPU\n'
        'benchmark never asks of it (it hands decoded audio). See benchmarks/speech.py."""\n'
    )
    print(f"bundle: {out} ({len(items)} clips)")


def load_bundle(bundle: Path) -> list[tuple[str, np.ndarray, str | None]]:
    data = np.load(bundle / "audio.npz")
    names = sorted(k for k in data.files if k != "languages")
    languages = [str(x) or None for x in data["languages"]]
    return [(n[3:], data[n].astype(np.float32) / 32767, lang) for n, lang in zip(names, languages)]


def _plain(model, ours: FasterWhisperASR, audio: np.ndarray, language: str | None) -> str:  # type: ignore[no-untyped-def]
    """Plain faster-whisper's text of a clip, with our settings."""
    segments, _ = model.transcribe(audio, **ours.options(language, "transcribe"))
    return "".join(s.text for s in segments).strip()


def run_gpu(args) -> dict:  # type: ignore[no-untyped-def]
    import ctranslate2
    from faster_whisper import WhisperModel
    from random_whisper import random_whisper  # (tests/fixtures, on the path through one_core)

    if args.device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise SystemExit("CTranslate2 sees no GPU (is it the CUDA build, and can it load cuBLAS/cuDNN?)")
    clips = load_bundle(args.bundle)
    items = [clips[i % len(clips)] for i in range(args.clips)]
    seconds = sum(len(a) for _, a, _ in items) / SAMPLE_RATE
    report: dict = {"clips": len(items), "audio_s": seconds, "batch": args.batch, "max_new_tokens": args.max_new_tokens,
                    "ctranslate2": ctranslate2.__version__, "shapes": {}}  # fmt: skip
    print(f"audio: {len(items)} clips ({len(clips)} distinct), {seconds:.1f} s; beam 5, VAD, word timings, "
          f"end-of-text suppressed, {args.max_new_tokens} tokens a window")  # fmt: skip
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            folder = random_whisper(Path(tmp) / shape, shape, args.bundle / "tokenizer.json", quantization="float16", device=args.device)
            converted_s = time.perf_counter() - started
            compute_type = resolved_compute_type("auto", args.device)  # float16 on the GPU, as the build
            plain = WhisperModel(str(folder), device=args.device, compute_type=compute_type)
            eot = plain.hf_tokenizer.token_to_id("<|endoftext|>")
            options = dict(suppress_tokens=[-1, eot], max_new_tokens=args.max_new_tokens, no_speech_threshold=None)
            ours = FasterWhisperASR(folder, device=args.device, compute_type=compute_type, decode_options=options)
            for _, audio, language in items[:2]:  # warm-up: CUDA kernels and cuBLAS plans
                _plain(plain, ours, audio, language)
                ours.transcribe(audio, language, "transcribe")

            started = time.perf_counter()
            plain_texts = [_plain(plain, ours, a, lang) for _, a, lang in items]
            plain_s = time.perf_counter() - started

            started = time.perf_counter()
            alone_texts = [ours.transcribe(a, lang, "transcribe").text for _, a, lang in items]
            alone_s = time.perf_counter() - started

            def one(item):  # type: ignore[no-untyped-def]
                _, audio, language = item
                with ours.one_of_batch():
                    return ours.transcribe(audio, language, "transcribe").text

            batcher = ours.batched.batcher
            batcher.batches = batcher.calls = 0
            started = time.perf_counter()
            with ThreadPoolExecutor(args.batch) as pool:
                batched_texts = list(pool.map(one, items))
            batched_s = time.perf_counter() - started

        same = lambda texts: sum(a == b for a, b in zip(texts, plain_texts)) / len(items)  # noqa: E731
        row = {
            "converted_s": converted_s, "plain_s": plain_s, "ours_alone_s": alone_s, "ours_batched_s": batched_s,
            "ratio_batched": plain_s / batched_s, "ratio_alone": plain_s / alone_s,
            "rtf_plain": seconds / plain_s, "rtf_batched": seconds / batched_s,
            "same_text_alone": same(alone_texts), "same_text_batched": same(batched_texts),
            "batched_same_as_alone": sum(a == b for a, b in zip(batched_texts, alone_texts)) / len(items),
            "model_calls": batcher.calls, "batched_calls": batcher.batches,
        }  # fmt: skip
        report["shapes"][shape] = row
        print(f"[{shape}] ours batched / plain faster-whisper: {row['ratio_batched']:.2f}x (target >= 3); "
              f"ours one by one / plain: {row['ratio_alone']:.2f}x")  # fmt: skip
        print(f"[{shape}]   plain {plain_s:6.2f} s ({row['rtf_plain']:6.1f}x real time), ours batched {batched_s:6.2f} s "
              f"({row['rtf_batched']:6.1f}x real time), ours one by one {alone_s:6.2f} s; "
              f"{batcher.calls} model calls in {batcher.batches} batches; model made in {converted_s:.0f} s")  # fmt: skip
        print(f"[{shape}]   clips whose text is plain's: ours one by one {row['same_text_alone']:.0%}, ours batched "
              f"{row['same_text_batched']:.0%}; batched as one by one: {row['batched_same_as_alone']:.0%}")  # fmt: skip
    return report


def main() -> None:
    parser = one_core_parser(__doc__)
    parser.add_argument("--gpu", action="store_true", help="the GPU benchmark (random-weight models of real shapes)")
    parser.add_argument("--bundle", type=Path, default=Path(".whl-speech"), help="what --save-bundle wrote")
    parser.add_argument("--save-bundle", type=Path, default=None, help="write the GPU run's audio and tokenizer here")
    parser.add_argument("--shapes", default="base,large-v3")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the GPU benchmark's code (with --shapes tiny-test)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.save_bundle:
        save_bundle(args)
    elif args.gpu:
        report = run_gpu(args)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    else:
        run_cpu(args)


if __name__ == "__main__":
    main()
