"""How English is `transcript_en`? chrF against the English subtitles of MER2023's own CSV, per backend.

    python benchmarks/translation.py [--shared-data DIR] [--llm smollm2|PATH|URL] [--llm-model NAME] [--language zh]

The four MER2023 clips of `mer2023_sample/` with their CSV set aside: Whisper base (faster-whisper, as the
speech stage runs it) transcribes each clip, with the language detected (the build's default) or forced
(`--language zh`, what the README tells MER2023 users), then
- whisper: the same model's translation of the same audio (`speech.whisper_english`, the default);
- llm: the annotate LLM translates the transcript (`translate.backend llm`) through the build's own code:
  `--llm smollm2` (the pinned 135M default, CPU), a local model folder, or an OpenAI-compatible server URL
  (an 8B instruct model behind vLLM where a GPU is lent).
The untranslated transcript is scored too, as the floor. chrF (sacrebleu, character 6-grams, beta 2) over
the four sentences, and per clip. Four sentences are a small sample: read the per-clip lines with it.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
from sacrebleu.metrics import CHRF

from merr_builder.annotate.fine import make_llm
from merr_builder.annotate.translate import english_transcripts
from merr_builder.config import load_config
from merr_builder.media import decode_audio
from merr_builder.speech.faster_whisper import FasterWhisperASR

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--llm", default="smollm2", help="smollm2 | PATH of a local causal LM | URL of an OpenAI-compatible server | none")
    parser.add_argument("--llm-model", default=None, help="the model name, when --llm is a URL")
    parser.add_argument("--language", default=None, help="force the transcription language (default: detect, as a build does)")
    args = parser.parse_args()

    sample = args.shared_data / "mer2023_sample"
    reference = pd.read_csv(sample / "transcription_en_all.csv").set_index("name")["sentence"]
    names = sorted(reference.index)
    asr = FasterWhisperASR()
    rows, whisper_s, translate_s = [], 0.0, 0.0
    for name in names:
        audio = decode_audio(str(sample / "video" / f"{name}.mp4"))
        started = time.perf_counter()
        transcript = asr.transcribe(audio, args.language, "transcribe")
        whisper_s += time.perf_counter() - started
        started = time.perf_counter()
        english = asr.transcribe(audio, transcript.language, "translate") if transcript.language != "en" else None
        translate_s += time.perf_counter() - started
        rows.append({"clip_id": name, "transcript": transcript.text, "transcript_language": transcript.language,
                     "flags": transcript.flags, "asr_english": english.text if english else None, "asr_backend": asr.name})  # fmt: skip

    hypotheses = {"untranslated transcript (floor)": [r["transcript"] for r in rows]}
    hypotheses["whisper base translate"] = [t or "" for t, _ in english_transcripts(rows, "whisper", None, 192, Path("unused"))]
    llm_name = None
    if args.llm != "none":
        choice = (["annotate.fine_backend=smollm2"] if args.llm == "smollm2" else
                  ["annotate.fine_backend=openai", f"annotate.server_url={args.llm}", f"annotate.server_model={args.llm_model}"]
                  if args.llm.startswith(("http://", "https://")) else ["annotate.fine_backend=transformers", f"annotate.model_dir={args.llm}"])  # fmt: skip
        llm = make_llm(load_config(None, choice).annotate)
        llm_name = llm.model_id()["name"]
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            translated = english_transcripts(rows, "llm", llm, 192, Path(tmp) / "llm.sqlite")
            llm_s = time.perf_counter() - started
        hypotheses[f"llm {Path(llm_name).name}"] = [t or "" for t, _ in translated]
        sources = [source for _, source in translated]

    chrf = CHRF()
    refs = [reference[n] for n in names]
    print(f"machine: {platform.machine()}, Python {platform.python_version()}; {len(names)} MER2023 clips, language "
          f"{args.language or 'detected'}: " + ", ".join(f"{r['clip_id']} {r['transcript_language']}{' ' + '/'.join(r['flags']) if r['flags'] else ''}" for r in rows))
    print(f"Whisper base: transcription {whisper_s:.1f} s, translation {translate_s:.1f} s more "
          f"({translate_s / whisper_s:.2f}x the transcription; the encoding is shared)"
          + (f"; llm ({llm_name}): {llm_s:.1f} s, answers used {sum(s.startswith('llm') for s in sources)} of {len(rows)} "
             "(the others unusable: Whisper's kept)" if llm_name else ""))
    for backend, hyps in hypotheses.items():
        print(f"chrF {backend:38}: {chrf.corpus_score(hyps, [refs]).score:5.1f}")
        for name, hyp, ref in zip(names, hyps, refs):
            print(f"    {name:20} {chrf.sentence_score(hyp, [ref]).score:5.1f}  {hyp!r}")
    print("references: " + " | ".join(refs))


if __name__ == "__main__":
    main()
