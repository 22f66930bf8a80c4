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
from merr_builder.names import is_valid_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from bad_inputs import make_corpus  # noqa: E402
from original_loader import ORIGINAL_EMOS, read_like_emotion_llama  # noqa: E402

from merr_builder.export.emotion_llama import export_emotion_llama  # noqa: E402

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
    rows = pd.read_parquet(root / "out" / "shards", columns=["clip_id", "source_path"])
    for case in cases:
        found = quarantine[quarantine.clip_id == case.clip_id]
        if case.expect == "quarantine":
            assert set(found.error_kind) == {case.error_kind}, (case, found.to_dict("records"))
            assert all(len(m) > 20 and (Path(case.name).stem in m) for m in found.message), found.message.tolist()  # names the file
        else:
            assert found.empty and case.clip_id in set(rows.clip_id), (case, found.to_dict("records"))
            assert rows.set_index("clip_id").source_path[case.clip_id].endswith(case.name)  # the row keeps the name
    # every input accounted for: rows + quarantined = found
    assert summary.rows == len(rows) == sum(c.expect == "row" for c in cases) + 2
    assert summary.clips_found == summary.rows + len(quarantine)


def test_hostile_names_get_safe_ids_and_keep_their_bytes(corpus_build):
    cases, _, root = corpus_build
    rows = pd.read_parquet(root / "out" / "shards").set_index("clip_id")
    latin1 = next(c for c in cases if c.what.startswith("a name that is not valid UTF-8"))
    row = rows.loc[latin1.clip_id]
    assert row.source_path.endswith("latin1 caf\\xe9.mp4") and row.source_path_bytes.endswith(b"latin1 caf\xe9.mp4")
    assert os.path.isfile(os.fsdecode(row.source_path_bytes))
    for case in cases:
        if case.expect == "row":
            assert is_valid_id(case.clip_id), case
    newline = next(c for c in cases if "newline" in c.what)
    assert "\n" not in newline.clip_id and newline.clip_id.startswith("new_line-")


def test_sidecars_are_checked_and_read_in_their_encoding(corpus_build):
    _, _, root = corpus_build
    rows = pd.read_parquet(root / "out" / "shards").set_index("clip_id")
    quarantine = pd.read_parquet(root / "out" / "quarantine.parquet").set_index("clip_id")
    for clip_id in ("sidecar_utf16_bom", "sidecar_utf16_nobom", "sidecar_upper"):
        assert rows.loc[clip_id].transcript == "Hello, my name is Anna.", clip_id
        assert rows.loc[clip_id].transcript_source.startswith("sidecar:"), clip_id
    assert rows.loc["sidecar_utf16_bom"].transcript_encoding == "utf_16"
    assert rows.loc["sidecar_utf16_nobom"].transcript_encoding == "utf_16_le"
    assert (rows.loc["sidecar_cp1252"].transcript, rows.loc["sidecar_cp1252"].transcript_encoding) == ("Ça va très bien, merci.", "cp1252")
    assert "sidecar_huge.txt" in quarantine.loc["sidecar_huge"].message and "speech.sidecar_max_bytes" in quarantine.loc["sidecar_huge"].message
    assert "U+0000" in quarantine.loc["sidecar_nul"].message
    assert "not a valid SRT file" in quarantine.loc["sidecar_malformed"].message


def test_media_facts_come_from_the_stream_read(corpus_build):
    _, _, root = corpus_build
    rows = pd.read_parquet(root / "out" / "shards").set_index("clip_id")
    for clip_id in ("starts_at_100s", "audio_outlasts_video"):
        assert rows.loc[clip_id].duration_s == pytest.approx(2.4, abs=0.05), clip_id  # not 102.4 s, not 30 s
        assert rows.loc[clip_id].peak_frame_index is not None and 0 <= rows.loc[clip_id].peak_time_s <= 2.4, clip_id
    assert (rows.loc["two_video_streams"].video_stream, rows.loc["two_video_streams"].video_streams) == (0, 2)
    # a link to a clip of the build: flagged as the same content, in the same split
    assert rows.loc["silent_audio"].duplicate_of == "link_to_silent_audio"
    assert rows.loc["silent_audio"].split == rows.loc["link_to_silent_audio"].split


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


def test_an_export_of_hostile_names_reads_back_as_the_original_loader_reads_it(corpus_build, tmp_path):
    cases, _, root = corpus_build
    rows = pd.read_parquet(root / "out" / "shards", columns=["clip_id", "label", "coarse_caption"]).set_index("clip_id")
    export_emotion_llama(root / "out", tmp_path / "MER2023")
    samples = {s["name"]: s for s in read_like_emotion_llama(tmp_path / "MER2023", "MERR_coarse_grained.txt", "MERR_coarse_grained.json", "caption")}
    exported = rows[rows.label.notna() & rows.coarse_caption.notna()]
    assert sorted(samples) == sorted(exported.index)
    hostile = [c.clip_id for c in cases if c.expect == "row" and c.clip_id != Path(c.name).stem]
    assert len(hostile) >= 6 and all(h in samples for h in hostile)
    for name, sample in samples.items():
        assert ORIGINAL_EMOS[sample["emotion"]] == exported.label[name] and sample["answer"] == exported.coarse_caption[name]
        assert sample["frame_ok"], name  # the video link of a hostile name (one not even UTF-8) opens
