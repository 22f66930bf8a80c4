"""The build flow end to end: real ffmpeg, real Prefect (the session's server), real Parquet."""

import hashlib
import json
import math
import os
from pathlib import Path

import datasets
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from flows.build import rerun_build, run_build
from merr_builder.config import load_config
from merr_builder.pipeline import CORPUS_STEPS, STAGES
from merr_builder.quarantine import ErrorKind
from merr_builder.schema import SCHEMA_VERSION


def _link(folder: Path, *paths: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        os.symlink(path, folder / path.name)


@pytest.fixture(scope="module")
def mixed_build(clips, shared_data, tmp_path_factory):
    """Good clips and broken ones in one input folder, built in partitions of 3."""
    root = tmp_path_factory.mktemp("mixed")
    good = [*clips.speech.values(), shared_data / "single_face.mp4", clips.rotated_90]
    bad = [clips.truncated, clips.truncated_faststart, clips.zero_bytes, clips.text_as_mp4, clips.no_audio]
    _link(root / "input" / "good", *good)
    _link(root / "input" / "bad", *bad)
    # The machinery, not the AU filter (the sample build's card test checks that): every good clip is a row.
    config = load_config(None, ["run.partition_size=3", "annotate.fine_backend=none", "annotate.au_filter=false"])  # the LLM: MER2023 test
    summary = run_build(root / "input", root / "out", config)
    return root / "out", summary, good, bad, config


def test_good_clips_come_through_and_bad_ones_are_quarantined(mixed_build):
    out, summary, good, bad, _ = mixed_build
    rows = pd.read_parquet(out / "shards")
    assert sorted(rows.clip_id) == sorted(p.stem for p in good)
    quarantine = pd.read_parquet(out / "quarantine.parquet").set_index("clip_id")
    assert sorted(quarantine.index) == sorted(p.stem for p in bad)
    expected = {
        "truncated": ErrorKind.UNREADABLE_CONTAINER,
        "truncated_faststart": ErrorKind.TRUNCATED,
        "zero_bytes": ErrorKind.EMPTY_FILE,
        "text_file": ErrorKind.UNREADABLE_CONTAINER,
        "no_audio": ErrorKind.NO_AUDIO_STREAM,
    }
    assert quarantine.error_kind.to_dict() == expected
    for clip_id, row in quarantine.iterrows():
        assert row.source_path.endswith(f"{clip_id}.mp4") and row.source_path in row.message
    assert quarantine.loc["truncated_faststart", "stage"] == "media"
    assert summary.rows == len(good) and summary.quarantined == len(bad)


def test_rows_hold_what_the_stages_measured(mixed_build, shared_data):
    out, *_ = mixed_build
    rows = pd.read_parquet(out / "shards").set_index("clip_id")
    smile = rows.loc["single_face"]
    assert (smile.width, smile.height, smile.has_audio) == (640, 360, True)
    assert smile.fingerprint == hashlib.sha256((shared_data / "single_face.mp4").read_bytes()).hexdigest()
    assert len(smile.frames_jpeg) == 16 and smile.frames_jpeg[0][:2] == b"\xff\xd8"  # JPEG magic
    assert (rows.loc["rotated_90", "width"], rows.loc["rotated_90", "height"]) == (360, 640)
    assert set(rows.split) == {"train"}
    provenance = json.loads(smile.provenance)
    assert set(provenance["stages"]) == {stage.name for stage in STAGES}
    assert set(provenance["steps"]) == {step.name for step in CORPUS_STEPS}


def test_manifest_lists_every_shard_with_its_hash(mixed_build):
    out, summary, *_ = mixed_build
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert set(manifest["models"]) == {"face_landmarker", "face_detector", "expression_classifier", "asr"}
    assert manifest["rows"] == summary.rows == sum(s["rows"] for s in manifest["shards"])
    for shard in manifest["shards"]:
        data = (out / shard["path"]).read_bytes()
        assert len(data) == shard["bytes"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
    assert manifest["config"]["run"]["partition_size"] == 3
    assert manifest["packages"]["pyarrow"] and manifest["tools"]["ffmpeg"].startswith("ffmpeg version")
    assert manifest["quarantine"]["by_kind"][ErrorKind.UNREADABLE_CONTAINER] == 2


def test_shards_load_with_pandas_pyarrow_dataset_and_hf_datasets(mixed_build):
    out, summary, *_ = mixed_build
    files = sorted(str(p) for p in (out / "shards").glob("merr-*.parquet"))
    assert len(pd.read_parquet(files[0]).columns) == len(pq.read_schema(files[0]).names)
    assert ds.dataset(out / "shards", format="parquet").count_rows() == summary.rows
    hf = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(out.parent / "hf"))
    assert hf.num_rows == summary.rows
    assert {"clip_id", "frames_jpeg", "aus_peak", "au_series", "egemaps"} <= set(hf.column_names)


def test_a_second_run_skips_its_finished_partitions(mixed_build):
    out, first, _, _, config = mixed_build
    stage_files = sorted((out / "stages").rglob("part-*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in stage_files]
    before = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    second = run_build(out.parent / "input", out, config)
    n_partitions = math.ceil(second.clips_found / 3)
    assert second.stage_skipped == {unit.name: 1 if getattr(unit, "scope", "") == "build" else n_partitions for unit in (*STAGES, *CORPUS_STEPS)}
    assert json.loads((out / "manifest.json").read_text())["published"] == "kept (nothing changed)"
    assert [p.stat().st_mtime_ns for p in stage_files] == mtimes
    after = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_a_changed_stage_setting_reruns_that_stage_only(clips, tmp_path):
    chosen = sorted(clips.speech.values())[:3]  # two partitions, one of them partial
    _link(tmp_path / "input", *chosen)
    out = tmp_path / "out"
    base = ["run.partition_size=2", "annotate.fine_backend=none", "annotate.au_filter=false"]  # every clip a row
    run_build(tmp_path / "input", out, load_config(None, base))
    summary = run_build(tmp_path / "input", out, load_config(None, [*base, "media.k_frames=4"]))
    n_partitions = math.ceil(len(chosen) / 2)
    assert summary.stage_skipped == {"ingest": n_partitions} | {unit.name: 0 for unit in (*STAGES[1:], *CORPUS_STEPS)}
    rows = pd.read_parquet(out / "shards")
    assert set(rows.frames_jpeg.map(len)) == {4}
    assert len(list((out / "stages" / "media").glob("part-*.quarantine.parquet"))) == n_partitions  # old ones gone


def test_a_changed_annotate_setting_reruns_only_the_steps_that_depend_on_it(clips, tmp_path):
    _link(tmp_path / "input", clips.speech["speech_en_happy"], clips.speech["speech_en_angry"])
    out, base = tmp_path / "out", ["annotate.fine_backend=none"]
    run_build(tmp_path / "input", out, load_config(None, base))
    before = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)

    def skipped() -> dict[str, bool]:  # counted from the manifest: every run of the unit was current
        units = json.loads((out / "manifest.json").read_text())["stages"]
        return {name: unit["partitions_skipped"] == unit["runs"] > 0 for name, unit in units.items()}

    changed = [*base, "annotate.objective_max_new_tokens=64"]  # a setting of the objective step
    run_build(tmp_path / "input", out, load_config(None, changed))
    reran = {"objective", "coarse", "fine"}  # the step, and the steps that read what it wrote
    assert skipped() == {unit.name: unit.name not in reran for unit in (*STAGES, *CORPUS_STEPS)}
    after = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(before.drop(columns="provenance"), after.drop(columns="provenance"))  # (no VLM: same words)

    run_build(tmp_path / "input", out, load_config(None, changed))  # the same again: nothing runs
    assert all(skipped().values())
    assert json.loads((out / "manifest.json").read_text())["published"] == "kept (nothing changed)"


def test_mer2023_layout_builds_end_to_end_with_the_offline_llm(mer2023_sample, tmp_path):
    # The sample ships no labels, and none of its four peaks matches an AU prototype: with the paper's AU
    # filter all four would leave (test_card checks that); off, they are neutral rows through every step.
    settings = ["speech.language=zh", "annotate.au_filter=false", "annotate.max_new_tokens=64"]  # (short answers: CI time)
    summary = run_build(mer2023_sample, tmp_path / "out", load_config(None, settings))
    rows = pd.read_parquet(tmp_path / "out" / "shards").set_index("clip_id")
    expected = pd.read_csv(mer2023_sample / "transcription_en_all.csv").set_index("name")["sentence"]
    assert summary.rows == 4
    assert rows.transcript.to_dict() == expected.to_dict()  # the sidecar CSV wins over ASR
    assert rows.transcript_source.str.startswith("sidecar:").all()
    assert rows.transcript_en.to_dict() == expected.to_dict() and (rows.transcript_en_source == "original").all()  # already English
    assert rows.has_speech.all() and rows.audio_tone_description.str.len().gt(0).all()
    assert rows.egemaps.map(len).eq(88).all()
    for clip_id, row in rows.iterrows():  # the coarse caption holds each clue the stages measured
        assert row.coarse_caption.startswith("This person in the video is ")
        assert row.visual_expression_description.lower() in row.coarse_caption.lower()
        assert row.audio_tone_description in row.coarse_caption and row.coarse_caption.endswith(row.transcript)
        assert row.label == row.pseudo_label and row.label_source.startswith("AU pseudo-label")
        kept = pd.notna(row.fine_caption)
        assert row.fine_status == "kept" if kept else row.fine_status.startswith(("rejected", "not selected"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert "fine_llm" in manifest["models"] and len(manifest["models"]["fine_llm"]["sha256"]) == 64
    # A rebuild asks the LLM nothing new: every answer comes from the cache, and the captions are the same.
    cache = tmp_path / "out" / "cache" / "llm.sqlite"
    stamp = cache.stat().st_mtime_ns
    run_build(mer2023_sample, tmp_path / "out", load_config(None, settings))
    again = pd.read_parquet(tmp_path / "out" / "shards").set_index("clip_id")
    pd.testing.assert_series_equal(rows.fine_status, again.fine_status)
    assert cache.stat().st_mtime_ns == stamp


def test_duplicate_ids_are_quarantined_in_a_build(shared_data, tmp_path):
    for sub, name in (("a", "single_face.mp4"), ("b", "no_face.mp4")):
        (tmp_path / "input" / sub).mkdir(parents=True)
        os.symlink(shared_data / name, tmp_path / "input" / sub / "same.mp4")
    os.symlink(shared_data / "single_face.mp4", tmp_path / "input" / "unique.mp4")
    summary = run_build(tmp_path / "input", tmp_path / "out", load_config(None, ["annotate.fine_backend=none"]))
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    assert summary.rows == 1 and summary.clips_found == 3
    assert list(quarantine.error_kind) == [ErrorKind.DUPLICATE_CLIP_ID] * 2
    assert all("a/same.mp4" in m and "b/same.mp4" in m for m in quarantine.message)


def test_regenerating_annotations_changes_only_annotation_columns(clips, tmp_path):
    _link(tmp_path / "input", clips.speech["speech_en_happy"], clips.speech["speech_en_angry"])
    out = tmp_path / "out"
    run_build(tmp_path / "input", out, load_config(None, ["annotate.fine_backend=none"]))
    before = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    stage_files = {p: p.stat().st_mtime_ns for s in STAGES for p in (out / "stages" / s.name).glob("part-*.parquet")}

    rerun_build(out, ["annotate.fine_backend=smollm2"], ("annotate",), "merr annotate")
    after = pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True)
    annotation = ["fine_caption", "fine_status", "provenance"]
    pd.testing.assert_frame_equal(before.drop(columns=annotation), after.drop(columns=annotation))
    assert before.fine_status.str.startswith("not generated").all()
    assert not after.fine_status.str.startswith("not generated").any()
    assert {p: p.stat().st_mtime_ns for p in stage_files} == stage_files  # no stage ran again
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["annotation"]["fine"]["backend"] == "smollm2" and "fine_llm" in manifest["models"]

    cache = out / "cache" / "llm.sqlite"
    stamp = cache.stat().st_mtime_ns
    rerun_build(out, ["annotate.fine_backend=smollm2"], ("annotate",), "merr annotate")  # the same questions: every answer from the cache
    assert cache.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(after, pd.read_parquet(out / "shards").sort_values("clip_id").reset_index(drop=True))


def test_regeneration_refuses_settings_that_need_re_extraction(tmp_path):
    from merr_builder.config import ConfigError, config_as_json
    from merr_builder.rerun import RerunError, rerun_config

    with pytest.raises(ConfigError, match="media.k_frames"):
        rerun_config({"config": config_as_json(load_config())}, ["media.k_frames=4"], ("annotate",))
    with pytest.raises(RerunError, match="not a finished build"):
        rerun_build(tmp_path, [], ("annotate",), "merr annotate")
