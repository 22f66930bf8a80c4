"""`merr encode` with tiny random-config encoders that the test builds and saves (ViT, VideoMAE, HuBERT),
loaded through the same code as real checkpoints; then the trainer uses the new streams and the
Emotion-LLaMA export checks their width."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from merr_builder.encode import encode
from merr_builder.export.emotion_llama import export_emotion_llama
from merr_builder.finished_build import ExportError
from merr_builder.shards import SHARD_NAME


@pytest.fixture(scope="module")
def tiny_encoders(tmp_path_factory):
    from transformers import (HubertConfig, HubertModel, VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel, ViTConfig,
                              ViTImageProcessor, ViTModel, Wav2Vec2FeatureExtractor)  # fmt: skip

    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}
    ViTModel(ViTConfig(image_size=32, patch_size=16, **small)).save_pretrained(root / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "vit")
    VideoMAEModel(VideoMAEConfig(image_size=32, patch_size=16, num_frames=4, tubelet_size=2, **small)).save_pretrained(root / "videomae")
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "videomae")
    HubertModel(HubertConfig(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                             num_conv_pos_embedding_groups=2, **small)).save_pretrained(root / "hubert")  # fmt: skip
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(root / "hubert")
    return root


def test_encode_fills_the_feature_columns_and_nothing_else(sample_build, tiny_encoders, tiny_lm, tmp_path):
    build = tmp_path / "build"
    shutil.copytree(sample_build, build, symlinks=True)
    before = pd.read_parquet(build / "shards").sort_values("clip_id").reset_index(drop=True)
    summary = encode(build, tiny_encoders / "vit", tiny_encoders / "videomae", tiny_encoders / "hubert", batch_size=4)
    after = pd.read_parquet(build / "shards").sort_values("clip_id").reset_index(drop=True)
    features = ["feat_face", "feat_video", "feat_audio"]
    pd.testing.assert_frame_equal(before.drop(columns=features), after.drop(columns=features))
    assert before[features].isna().all().all()
    assert summary.rows == len(after) and summary.filled == {c: int(after[c].notna().sum()) for c in features}
    for column in features:
        present = after[column].dropna()
        assert len(present) == len(after)  # every sample clip has a face, frames and audio
        assert {len(v) for v in present} == {32} and all(np.isfinite(np.asarray(v)).all() for v in present)
        assert len({tuple(np.round(v, 5)) for v in present}) == len(present)  # clips differ, so do their features
    manifest = json.loads((build / "manifest.json").read_text())
    assert set(manifest["encoders"]) == set(features) and all(len(e["sha256"]) == 64 for e in manifest["encoders"].values())
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


def test_encode_needs_an_encoder(sample_build):
    with pytest.raises(ValueError, match="at least one encoder"):
        encode(sample_build)
