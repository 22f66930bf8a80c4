"""`merr export hf`: the merged model folder loads with plain transformers (no peft, no merr_builder) and,
fed the projected features from `projectors.safetensors` at the markers, gives the trained model's logits."""

import json
import random
import subprocess
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from merr_builder.trainer.config import TrainConfig
from merr_builder.trainer.data import read_rows, samples_of
from merr_builder.trainer.train import load_trained, train


def test_the_merged_folder_and_the_projectors_reproduce_the_trained_model(sample_build, tiny_lm, tmp_path):
    train(TrainConfig(data=[sample_build], split=None, out_dir=tmp_path / "run", model_dir=tiny_lm, tasks=["reason"], batch_size=2,
                      max_steps=2, lr=1e-2, warmup_steps=0, save_every=2, lora_r=4))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "merr_builder.cli", "export", "hf", str(tmp_path / "run"), "--to", str(tmp_path / "hf")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "hf"
    lm = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert not any("lora" in name for name, _ in lm.named_parameters())  # merged: a plain model
    assert AutoTokenizer.from_pretrained(folder).eos_token_id == lm.config.eos_token_id
    description = json.loads((folder / "emotion_llama.json").read_text())
    assert [s["name"] for s in description["streams"]] == ["peak", "face", "audio"] and "{sentence}" in description["prompt"]
    weights = load_file(str(folder / "projectors.safetensors"))

    model, scaler, _ = load_trained(tmp_path / "run")
    assert {k: v["mean"] for k, v in description["feature_stats"].items()} == {k: m for k, (m, _) in scaler.state().items()}
    samples = [s for r in read_rows([sample_build], scaler.columns, None) for s in samples_of(r, ["reason"], scaler, random.Random(0))][:3]
    batch = model.prompts.collate(samples)
    with torch.no_grad():
        expected = model.logits(batch)
        embeds = lm.get_input_embeddings()(batch.ids.clamp(min=0))
        for index, stream in enumerate(description["streams"]):
            rows, cols = torch.nonzero(batch.ids == -1 - index, as_tuple=True)
            projected = batch.features[stream["name"]] @ weights[f"{stream['name']}.weight"].T + weights[f"{stream['name']}.bias"]
            embeds[rows, cols] = projected[rows]
        got = lm(inputs_embeds=embeds, attention_mask=batch.attention_mask).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
