"""The bad-input corpus (tests/fixtures/bad_inputs.py) mixed with good clips: the build finishes, every
broken input has a quarantine row with its reason, every odd-but-valid clip comes through, and the good
clips' rows equal those of a build of the good clips alone."""

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.build import run_build
from merr_builder.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from bad_inputs import make_corpus  # noqa: E402

# One analysed frame per second: the 10-minute clip costs 600 face searches instead of 3,000.
SETTINGS = ["annotate.fine_backend=none", "faces.sample_fps=1", "media.k_frames=4", "annotate.au_filter=false"]  # broken input, not the AU filter
# Relative to the whole build by design (tone words are z-scores over the build's clips), naming the
# partition a clip sat in, or where its file lay: these differ between the two builds.
BUILD_RELATIVE = ["audio_tone_description", "coarse_caption", "provenance", "source_path"]


@pytest.fixture(scope="module")
def corpus_build(tmp_path_factory, clips, shared_data):
    root = tmp_path_factory.mktemp("bad-inputs")
    cases = make_corpus(root / "corpus", shared_data)
    good = root / "good"
    good.mkdir()
    for name in ("speech_en_happy", "speech_zh_sad"):
        for folder in (root / "corpus", good):
            os.symlink(clips.speech[name], folder / clips.speech[name].name)
    summary = run_build(root / "corpus", root / "out", load_config(None, SETTINGS))
    run_build(good, root / "good-out", load_config(None, SETTINGS))
    return cases, summary, root


def test_every_broken_input_is_quarantined_with_its_reason(corpus_build):
    cases, summary, root = corpus_build
    quarantine = pd.read_parquet(root / "out" / "quarantine.parquet")
    rows = pd.read_parquet(root / "out" / "shards", columns=["clip_id"])
    for case in cases:
        found = quarantine[quarantine.clip_id == case.clip_id]
        if case.expect == "quarantine":
            assert set(found.error_kind) == {case.error_kind}, (case, found.to_dict("records"))
            assert all(len(m) > 20 and (case.clip_id in m) for m in found.message), found.message.tolist()
        else:
            assert found.empty and case.clip_id in set(rows.clip_id), (case, found.to_dict("records"))
    assert summary.rows == len(rows) == sum(c.expect == "row" for c in cases) + 2


def test_good_clips_come_out_as_in_a_build_without_the_corpus(corpus_build):
    _, _, root = corpus_build
    mixed = pd.read_parquet(root / "out" / "shards").set_index("clip_id")
    alone = pd.read_parquet(root / "good-out" / "shards").set_index("clip_id")
    shared = mixed.loc[alone.index].drop(columns=BUILD_RELATIVE)
    pd.testing.assert_frame_equal(shared, alone.drop(columns=BUILD_RELATIVE))


def test_an_empty_sidecar_gives_way_to_asr_and_a_gbk_one_is_read(corpus_build):
    _, _, root = corpus_build
    rows = pd.read_parquet(root / "out" / "shards").set_index("clip_id")
    empty = rows.loc["subtitle_empty"]
    assert empty.transcript_source.startswith("asr:") and "empty_sidecar" in list(empty.transcript_flags)
    assert "hello, my name is" in empty.transcript.lower()  # espeak-ng said "Hello, my name is Anna."
    assert rows.loc["subtitle_gbk"].transcript == "你好，我叫安娜。"
