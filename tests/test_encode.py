"""`merr encode` (the pipeline's encoders step) with tiny random-config encoders that the test builds and saves
(ViT, VideoMAE, HuBERT), loaded through the same code as real checkpoints; then the trainer uses the new
streams and the Emotion-LLaMA export checks their width. And the command sequences a user runs
(encode, annotate, encode) lose nothing another step wrote."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from flows.build import rerun_build
from merr_builder.export.emotion_llama import export_emotion_llama
from merr_builder.labels import MERR_LABELS
from merr_builder.finished_build import ExportError
from merr_builder.pipeline import CORPUS_STEPS, STAGES
from merr_builder.shards import SHARD_NAME

FEATURES = ["feat_face", "feat_video", "feat_audio"]
ANNOTATION = ["audio_tone_description", "visual_objective_description", "coarse_caption", "label", "label_source", "fine_caption",
              "fine_status"]  # fmt: skip


def _encoders(tiny_encoders) -> list[str]:
    return [f"encode.image_encoder={tiny_encoders / 'vit'}", f"encode.video_encoder={tiny_encoders / 'videomae'}",
            f"encode.audio_encoder={tiny_encoders / 'hubert'}", "encode.batch_size=4"]  # fmt: skip


def _rows(build) -> pd.DataFrame:
    return pd.read_parquet(build / "shards").sort_values("clip_id").reset_index(drop=True)


def merr(*args) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "merr_builder.cli", *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_encode_fills_the_feature_columns_and_nothing_else(sample_build, tiny_encoders, tiny_lm, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(sample_build, build, symlinks=True)
    before = _rows(build)
    summary = rerun_build(build, _encoders(tiny_encoders), ("encode",), "merr encode")
    after = _rows(build)
    pd.testing.assert_frame_equal(before.drop(columns=[*FEATURES, "provenance"]), after.drop(columns=[*FEATURES, "provenance"]))
    assert before[FEATURES].isna().all().all()
    # Only the encoders step ran: the stages and every other step were current (the sample build is one partition).
    assert summary.stage_skipped == {unit.name: int(unit.name != "encoders") for unit in (*STAGES, *CORPUS_STEPS)}
    for column in FEATURES:
        present = after[column].dropna()
        assert len(present) == len(after)  # every sample clip has a face, frames and audio
        assert {len(v) for v in present} == {32} and all(np.isfinite(np.asarray(v)).all() for v in present)
        assert len({tuple(np.round(v, 5)) for v in present}) == len(present)  # clips differ, so do their features
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(manifest["encoders"]) == set(FEATURES) and all(len(e["sha256"]) == 64 for e in manifest["encoders"].values())
    listed = {s["path"].split("/")[-1]: s for s in manifest["shards"]}
    on_disk = {p.name for p in (build / "shards").iterdir() if SHARD_NAME.match(p.name)}
    assert set(listed) == on_disk and sum(s["rows"] for s in listed.values()) == len(after)

    # The trainer takes the new streams at their width; the export wants the original's 1024-d.
    from merr_builder.trainer.config import TrainConfig
    from merr_builder.trainer.train import train

    config = TrainConfig(data=[build], split=None, out_dir=tmp_path / "run", model_dir=tiny_lm, tasks=["emotion"], batch_size=3,
                         features=["peak", "face_encoder", "video_encoder", "audio_encoder"], max_steps=1, save_every=1, lora_r=4)  # fmt: skip
    result = train(config)
    assert {s: result.model.projectors[s].in_features for s in config.features[1:]} == dict.fromkeys(config.features[1:], 32)
    with pytest.raises(ExportError, match="must hold 1024 values"):
        export_emotion_llama(build, tmp_path / "export")


def test_encode_then_annotate_then_encode_keeps_every_column(sample_build, tiny_encoders, tmp_path):
    """The sequence that used to drop the features: each command is a run of the pipeline from the stored
    stage outputs, so what one step wrote survives every other step's rerun."""
    encoded, plain = tmp_path / "encoded", tmp_path / "plain"
    shutil.copytree(sample_build, encoded, symlinks=True)
    shutil.copytree(sample_build, plain, symlinks=True)
    flags = ["--image-encoder", tiny_encoders / "vit", "--video-encoder", tiny_encoders / "videomae", "--audio-encoder",
             tiny_encoders / "hubert", "--batch-size", "4"]  # fmt: skip
    merr("encode", encoded, *flags)
    first = _rows(encoded)
    assert first[FEATURES].notna().all().all()

    merr("annotate", "--from", encoded, "--set", "annotate.max_new_tokens=64")
    # A copy that was never encoded, given the answers just asked (the LLM's determinism is not under test here).
    shutil.copy(encoded / "cache" / "llm.sqlite", plain / "cache" / "llm.sqlite")
    merr("annotate", "--from", plain, "--set", "annotate.max_new_tokens=64")
    annotated = _rows(encoded)
    pd.testing.assert_frame_equal(annotated[FEATURES], first[FEATURES])
    pd.testing.assert_frame_equal(annotated[ANNOTATION], _rows(plain)[ANNOTATION])
    assert _rows(plain)[FEATURES].isna().all().all()

    stored = {p: p.stat().st_mtime_ns for p in (encoded / "stages").rglob("part-*.parquet")}
    merr("encode", encoded, *flags)  # the same encoders again: nothing runs
    manifest = json.loads((encoded / "manifest.json").read_text())
    assert all(record["partitions_skipped"] == record["runs"] for record in manifest["stages"].values()), manifest["stages"]
    assert {p: p.stat().st_mtime_ns for p in stored} == stored
    pd.testing.assert_frame_equal(_rows(encoded), annotated)
    # The manifest names the step and the models behind each column a step fills.
    columns = manifest["columns"]
    for feature, folder in zip(FEATURES, ("vit", "videomae", "hubert")):
        assert columns[feature]["step"] == "encoders" and [m["name"] for m in columns[feature]["models"].values()] == [folder]
    assert columns["fine_caption"]["step"] == "fine" and set(columns["fine_caption"]["models"]) == {"fine_llm"}
    assert columns["coarse_caption"]["step"] == "coarse" and columns["audio_tone_description"]["step"] == "tone"
    assert manifest["config"]["annotate"]["max_new_tokens"] == 64


def test_encode_needs_an_encoder(sample_build):
    result = subprocess.run([sys.executable, "-m", "merr_builder.cli", "encode", str(sample_build)], capture_output=True, text=True)
    assert result.returncode == 2 and "at least one encoder" in result.stderr


def test_the_global_stream_from_encode_through_both_stages_to_eval_and_inference(sample_build, tiny_encoders, tiny_tower, tiny_lm,
                                                                                  shared_data, tmp_path):  # fmt: skip
    """`merr encode --vision-tower` stores the tower's patch tokens of the peak frame; training reads them or
    runs the tower on the frame itself (the same tokens, the same losses); stage 2 goes on with stage 1's
    global encoder, and eval and inference use it (inference on a new clip's peak frame)."""
    import pyarrow.parquet as pq
    import torch

    from merr_builder.encoders import ImageEncoder, VisionTower, face_crops, tower_image, unpack_patches
    from merr_builder.trainer.config import TrainConfig
    from merr_builder.trainer.evaluate import evaluate, infer
    from merr_builder.trainer.train import train

    build = tmp_path / "build"
    shutil.copytree(sample_build, build, symlinks=True)
    merr("encode", build, "--vision-tower", tiny_tower, "--image-encoder", tiny_encoders / "vit")
    rows = pq.read_table(build / "shards").to_pylist()
    tower, faces = VisionTower(tiny_tower), ImageEncoder(tiny_encoders / "vit", "cpu")
    for row in rows:
        stored = unpack_patches(row["vision_patches"])
        with torch.no_grad():
            live = tower(torch.from_numpy(tower.pixels([tower_image(row)])))[0].numpy()
        assert stored.shape == (25, 32)
        np.testing.assert_allclose(stored, live, rtol=2e-3, atol=2e-3)  # float16 storage
        # The face feature is the mean over the main face in the clip's frames, as the original's MAE feature was.
        crops = face_crops(row)
        assert len(crops) >= 4, row["clip_id"]
        np.testing.assert_allclose(row["feat_face"], faces._features(crops).mean(0), rtol=1e-5, atol=1e-5)
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["encoders"]["vision_patches"]["name"] == tiny_tower.name

    common = {"data": [build], "split": None, "model_dir": tiny_lm, "batch_size": 2, "max_steps": 2, "save_every": 2, "lora_r": 4,
              "features": ["global", "peak", "face", "audio"], "vision_tower": tiny_tower, "tasks": ["emotion", "reason"]}  # fmt: skip
    on_frames = train(TrainConfig(**common, out_dir=tmp_path / "stage1"))
    on_tokens = train(TrainConfig(**common, out_dir=tmp_path / "stage1-stored", vision_tokens="encode"))
    np.testing.assert_allclose(on_frames.losses, on_tokens.losses, rtol=1e-3)
    assert on_tokens.model.tower is None and on_frames.model.prompts.counts["global"] == 7
    meta = json.loads((on_frames.checkpoint / "checkpoint.json").read_text())
    assert meta["vision"]["tokens"] == 7 and meta["vision"]["tower"] == str(tiny_tower) and len(meta["vision"]["weights"]["sha256"]) == 64
    # Stored tokens from another tower are refused, naming both.
    with pytest.raises(ValueError, match="vision_patches were made by .*tiny-tower.*not by .*vit"):
        train(TrainConfig(**{**common, "vision_tower": tiny_encoders / "vit"}, out_dir=tmp_path / "x", vision_tokens="encode"))

    # Stage 2 from stage 1: its streams and tower come with the checkpoint (the task is the emotion one here:
    # the offline model kept no fine caption in the sample build).
    stage2 = train(TrainConfig(data=[build], split=None, out_dir=tmp_path / "stage2", init_from=tmp_path / "stage1", tasks=["emotion"],
                               batch_size=1, max_steps=1, save_every=1, lora_r=4))  # fmt: skip
    assert stage2.model.streams == common["features"] and stage2.model.prompts.counts["global"] == 7
    result = evaluate(tmp_path / "stage2", [build], tmp_path / "eval", None, protocol="emotion-llama", max_new_tokens=8)
    assert result["protocol"] == "emotion-llama" and result["samples"] >= 2 and set(result["labels"]) <= set(MERR_LABELS)
    answer = infer(shared_data / "single_face.mp4", tmp_path / "stage2", max_new_tokens=8)  # the tower on the new clip's peak frame
    assert answer["label"] in MERR_LABELS and answer["reasoning"] is not None
