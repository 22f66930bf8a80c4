"""MERR's language on a real build: English beside each transcript, doubtful speech never quoted, and a clip
without speech said plainly, the same for the original loader, LLaMA-Factory and the bundled trainer.

The build: the four MER2023 clips with their English CSV ignored (so Whisper base transcribes Mandarin, and
on sample_00000727 guesses Korean and repeats itself: a flagged hallucination), a real face clip whose
audio holds no speech, and a real face clip with no audio stream at all (no transcript). Every clip is labelled by a
label file, so all of them reach the exports.
"""

import csv
import os
import random
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from merr_builder.config import load_config
from merr_builder.export.emotion_llama import export_emotion_llama
from merr_builder.export.sharegpt import export_sharegpt
from merr_builder.local import run_locally
from merr_builder.speech.stage import guess_language
from merr_builder.speech.subtitle import SILENT_SENTENCE, UNQUOTED_SENTENCE
from merr_builder.trainer.data import read_rows, samples_of
from merr_builder.trainer.features import FeatureScaler

SAYS = re.compile(r"The person in video says: (.*?)\. \[")  # the sentence, up to the task tag that follows it


@pytest.fixture(scope="module")
def subtitle_build(tmp_path_factory, mer2023_sample, shared_data) -> Path:
    root = tmp_path_factory.mktemp("subtitles")
    folder = root / "input"
    folder.mkdir()
    sources = [*sorted((mer2023_sample / "video").glob("*.mp4")), shared_data / "single_face.mp4"]
    for clip in sources:
        os.symlink(clip, folder / clip.name)
    no_audio = folder / "no_audio.mp4"  # a real face, its audio stream removed
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(shared_data / "WolfgangLanger_Pexels.mp4"), "-an", "-c:v", "copy", str(no_audio)], check=True)
    sources.append(no_audio)
    labels = root / "labels.csv"
    with labels.open("w", newline="") as handle:
        csv.writer(handle).writerows([("name", "label"), *((clip.stem, "happy") for clip in sources)])
    config = load_config(None, ["speech.sidecar=ignore", f"ingest.labels_file={labels}", "ingest.require_audio=false",
                                "annotate.fine_backend=none", "annotate.au_filter=false"])  # fmt: skip
    run_locally(folder, root / "out", config)
    return root / "out"


@pytest.fixture(scope="module")
def rows(subtitle_build) -> pd.DataFrame:
    return pd.read_parquet(subtitle_build / "shards").set_index("clip_id")


def test_every_mer2023_clip_has_english_beside_its_transcript(rows, mer2023_sample):
    for name in pd.read_csv(mer2023_sample / "transcription_en_all.csv")["name"]:
        row = rows.loc[name]
        assert row.transcript_language != "en" and row.transcript  # Whisper heard Mandarin (or guessed)
        assert row.transcript_en and guess_language(row.transcript_en) == "en", (name, row.transcript_en)
        assert row.transcript_en_source == "whisper:faster_whisper"


def test_the_build_has_the_three_cases_the_exports_must_say_plainly(rows):
    assert "repetition" in rows.loc["sample_00000727"].transcript_flags  # the Korean loop
    assert rows.loc["single_face"].transcript == "" and not rows.loc["single_face"].has_speech
    assert pd.isna(rows.loc["no_audio"].transcript) and rows.loc["no_audio"].transcript_error


def test_the_original_loader_llama_factory_and_the_trainer_read_the_same_plain_sentences(subtitle_build, rows, tmp_path):
    expected = {"sample_00000727": UNQUOTED_SENTENCE, "single_face": SILENT_SENTENCE, "no_audio": SILENT_SENTENCE}
    # Whisper base's words below its own fallback confidence are not quoted either (samplenew_00061200's).
    doubtful = {"repetition", "low_language_probability", "no_speech_probable", "low_confidence"}
    expected |= {c: UNQUOTED_SENTENCE for c in rows.index if c not in expected and doubtful & set(rows.loc[c].transcript_flags)}
    expected |= {c: rows.loc[c].transcript_en for c in rows.index if c not in expected}
    assert list(expected.values()).count(UNQUOTED_SENTENCE) < len(expected) - 2  # some speech is still quoted
    flagged = rows.loc["sample_00000727"]

    # The original loader: pandas reads the CSV, first_face.py formats "The person in video says: {}. ".
    folder = export_emotion_llama(subtitle_build, tmp_path / "MER2023").folder
    table = pd.read_csv(folder / "transcription_en_all.csv")
    assert not table["sentence"].isna().any()
    original = {name: "The person in video says: {}. ".format(sentence) for name, sentence in zip(table["name"], table["sentence"])}
    assert {name: text.removeprefix("The person in video says: ").removesuffix(". ") for name, text in original.items()} == expected

    # LLaMA-Factory: the ShareGPT file through `datasets`, as its loader reads it.
    from datasets import load_dataset

    export_sharegpt(subtitle_build, tmp_path / "lf" / "merr.json")
    samples = load_dataset("json", data_files=str(tmp_path / "lf" / "merr.json"), split="train")
    factory = {s["clip_id"]: SAYS.search(s["conversations"][0]["value"]).group(1) for s in samples}
    assert factory == expected

    # The bundled trainer's instructions.
    trainer = {}
    for row in read_rows([subtitle_build], [], None):
        for sample in samples_of(row, ["emotion"], FeatureScaler({}), random.Random(0)):
            trainer[sample.clip_id] = SAYS.search(sample.instruction).group(1)
    assert trainer == expected

    every_text = (folder / "transcription_en_all.csv").read_text() + (folder / "MERR_coarse_grained.json").read_text()
    every_text += (tmp_path / "lf" / "merr.json").read_text()
    assert "nan" not in re.findall(r"[a-z]+", every_text.lower()) and "says: ." not in every_text and "Saying: (" not in every_text
    assert "아니" not in every_text and flagged.transcript_en not in every_text  # nothing of the flagged transcript


def test_the_card_counts_doubtful_transcripts_and_lists_no_language_only_they_have(subtitle_build):
    card = (subtitle_build / "DATA_CARD.md").read_text()
    header = card.split("---")[1]
    assert "- ko" not in header and "- zh" in header and "- en" in header
    doubtful = re.search(r"(\d+) transcripts? (is|are) doubtful \(([^)]*)\)", card)
    assert doubtful and int(doubtful.group(1)) >= 1 and "repetition 1" in doubtful.group(3), card
    assert "from whisper" in card and "2 clips have no speech" in card  # single_face and no_audio
