"""Training on a real build: the loss falls (SmolLM2-135M), save → load gives the same logits (float32,
and bf16 with the frozen base held in bf16), a resumed
run continues the uninterrupted loss curve exactly, and two gloo processes train under torchrun, with the
model replicated (DDP) or sharded (FSDP2) and the same losses either way."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from merr_builder.trainer import checkpoint
from merr_builder.trainer.config import TrainConfig
from merr_builder.trainer.data import read_rows, samples_of
from merr_builder.trainer.train import load_trained, train


def _config(build: Path, out: Path, **changes) -> TrainConfig:
    settings = {"data": [build], "split": None, "out_dir": out, "tasks": ["emotion", "reason"], "batch_size": 2, "max_steps": 6,
                "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1, "save_every": 3, "lora_r": 8, "shuffle_buffer": 4, "length_window": 2}  # fmt: skip
    return TrainConfig.model_validate({**settings, **changes})


def test_a_few_steps_on_the_sample_build_with_smollm2_make_the_loss_fall(sample_build, tmp_path):
    config = _config(sample_build, tmp_path / "run", tasks=["emotion"], batch_size=3, max_steps=12, lr=2e-3, warmup_steps=0, save_every=12)
    result = train(config)
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < 0.5 * first, result.losses
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13)) and all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in log)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_save_then_load_gives_identical_logits(sample_build, tiny_lm, tmp_path, precision):
    result = train(_config(sample_build, tmp_path / "run", model_dir=tiny_lm, max_steps=2, save_every=2, precision=precision))
    loaded, scaler, meta = load_trained(tmp_path / "run")
    assert meta["step"] == 2 and result.checkpoint.name == "step-0000002"
    # bf16: the frozen base is held in bf16, what AdamW updates (LoRA, projectors) in float32; loading does the same.
    base = torch.bfloat16 if precision == "bf16" else torch.float32
    for model in (result.model, loaded):
        assert {p.dtype for p in model.parameters() if not p.requires_grad} == {base}
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    samples = [s for r in read_rows([sample_build], scaler.columns, None) for s in samples_of(r, ["reason"], scaler, random.Random(0))]
    batch = loaded.prompts.collate(samples[:4])
    trained = result.model.eval()
    with torch.no_grad():
        assert torch.equal(trained.logits(batch), loaded.logits(batch))
        assert any(p.abs().sum() > 0 for n, p in loaded.named_parameters() if "lora_B" in n)  # the adapters did move


def test_a_resumed_run_continues_the_uninterrupted_loss_curve_exactly(sample_build, tiny_lm, tmp_path):
    whole = train(_config(sample_build, tmp_path / "whole", model_dir=tiny_lm))
    first = train(_config(sample_build, tmp_path / "stopped", model_dir=tiny_lm), stop_after=3)
    assert first.steps == 3 and (tmp_path / "stopped" / "latest").read_text().strip() == "step-0000003"
    rest = train(_config(sample_build, tmp_path / "stopped", model_dir=tiny_lm), resume=True)
    assert len(whole.losses) == 6 and first.losses + rest.losses == whole.losses


def _torchrun(config: TrainConfig, folder: Path, *args: str) -> list[dict]:
    """Train under `torchrun` with two gloo processes; the metrics log."""
    path = folder / f"{Path(config.out_dir).name}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "merr_builder.trainer.train", "--config", str(path), *args]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in (Path(config.out_dir) / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_under_torchrun_replicated_or_sharded(sample_build, tiny_lm, tmp_path):
    ddp = _config(sample_build, tmp_path / "ddp", model_dir=tiny_lm, max_steps=3, save_every=1)
    log = _torchrun(ddp, tmp_path)
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["world"] == 2 for r in log)
    weights, state, meta = checkpoint.load(tmp_path / "ddp")
    assert meta["world"] == 2 and len(state["rng"]) == 2  # each rank's generators, for an exact resume

    # FSDP: the same run with the model sharded over the two processes, stopped after step 2 and resumed.
    fsdp = ddp.model_copy(update={"out_dir": tmp_path / "fsdp", "sharding": "fsdp"})
    _torchrun(fsdp, tmp_path, "--stop-after", "2")
    sharded = _torchrun(fsdp, tmp_path, "--resume")
    assert [r["step"] for r in sharded] == [1, 2, 3]
    assert [r["loss"] for r in sharded] == pytest.approx([r["loss"] for r in log], rel=1e-5)
    sharded_weights, _, sharded_meta = checkpoint.load(tmp_path / "fsdp")  # saved whole, under the same names
    assert (meta["sharding"], sharded_meta["sharding"]) == ("ddp", "fsdp")
    assert sharded_weights.keys() == weights.keys()
    assert all(torch.allclose(sharded_weights[k], weights[k], atol=1e-5) for k in weights)
    assert any(weights[k].abs().sum() > 0 for k in weights if "lora_B" in k)  # (so the comparison means something)

    # The sharded run's checkpoint (optimizer state by parameter name) goes on in one plain process.
    onward = train(fsdp.model_copy(update={"max_steps": 4, "save_every": 4}), resume=True)
    assert onward.steps == 4 and len(onward.losses) == 1 and checkpoint.load(tmp_path / "fsdp")[2]["sharding"] == "none"


def test_a_bad_training_config_names_the_field(tmp_path):
    from merr_builder.config import ConfigError
    from merr_builder.trainer.config import load_train_config

    (tmp_path / "t.yaml").write_text("data: [x]\nlora_r: 0\n")
    with pytest.raises(ConfigError, match="lora_r"):
        load_train_config(tmp_path / "t.yaml")


@pytest.mark.parametrize("stage", [1, 2])
def test_the_shipped_stage_configs_load_and_begin_with_their_command(stage):
    from merr_builder.trainer.config import load_train_config

    path = Path(__file__).resolve().parents[2] / "configs" / f"train_stage{stage}.yaml"
    assert path.read_text().splitlines()[0] == f"# merr train --config configs/train_stage{stage}.yaml"
    config = load_train_config(path)
    if stage == 1:
        assert config.tasks == ["emotion", "reason"] and config.init_from is None
    else:  # instruction tuning on the fine captions, from stage 1's adapters and projectors
        assert config.tasks == ["reason_v2"] and Path(config.init_from) == Path(load_train_config(path.with_name("train_stage1.yaml")).out_dir)


def test_every_stream_a_shipped_config_or_the_readme_names_exists():
    """Config comments and README prose are where users copy stream names from (a comment once said
    face_mae, video_mae, hubert, which never existed)."""
    import re

    from merr_builder.trainer.features import STREAMS

    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "configs").glob("train_*.yaml")):
        line = next(line for line in path.read_text().splitlines() if line.startswith("features:"))
        named = [name.strip() for group in re.findall(r"\[([^\]]*)\]", line) for name in group.split(",")]
        assert named and set(named) <= set(STREAMS), (path.name, set(named) - set(STREAMS))
    readme = (root / "README.md").read_text()
    table = readme.split("#### Feature streams", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", table, flags=re.M) == list(STREAMS)  # the table lists every stream, in order
    for listing in re.findall(r"streams?\s+((?:`\w+`(?:,\s*|\s+and\s+)?)+)", readme):
        assert set(re.findall(r"`(\w+)`", listing)) <= set(STREAMS), listing
    for listing in re.findall(r"features: \[([^\]]*)\]", readme):
        assert {name.strip() for name in listing.split(",")} <= set(STREAMS), listing
