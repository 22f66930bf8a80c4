"""The MER2023 protocol's metrics against scikit-learn, the answer parser, and `merr eval` / `merr infer`
on a real build and a real clip with a trained tiny model."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from merr_builder.labels import MERR_LABELS
from merr_builder.trainer.config import TrainConfig
from merr_builder.trainer.evaluate import metrics, parse_label
from merr_builder.trainer.train import train


def test_metrics_match_scikit_learn_on_a_fixed_confusion_case():
    truth = ["happy"] * 5 + ["sad"] * 3 + ["angry"] * 2 + ["neutral"] * 4
    predicted = ["happy", "happy", "happy", "sad", "neutral", "sad", "sad", "happy", "angry", "neutral", "neutral", "neutral", "worried", "neutral"]
    result = metrics(truth, predicted)
    assert result["accuracy"] == accuracy_score(truth, predicted)
    assert np.isclose(result["weighted_f1"], f1_score(truth, predicted, average="weighted"))
    assert np.isclose(result["uar"], balanced_accuracy_score(truth, predicted))
    assert np.isclose(result["war"], recall_score(truth, predicted, average="weighted"))
    assert result["confusion"] == confusion_matrix(truth, predicted, labels=list(MERR_LABELS)).tolist()


def test_the_last_word_is_the_label_and_anything_else_is_neutral():
    assert parse_label("The clues point to one emotion: Happy.") == "happy"
    assert parse_label("so the emotional state is anger") == "angry"  # a known spelling
    assert parse_label("I cannot tell") == "neutral" and parse_label("") == "neutral"


def test_merr_eval_and_merr_infer_run_the_whole_chain(sample_build, tiny_lm, shared_data, tmp_path):
    config = TrainConfig(data=[sample_build], split=None, out_dir=tmp_path / "run", model_dir=tiny_lm, tasks=["emotion"], batch_size=3,
                         max_steps=2, lr=1e-3, warmup_steps=0, save_every=2, lora_r=4)  # fmt: skip
    train(config)
    cli = [sys.executable, "-m", "merr_builder.cli"]
    done = subprocess.run([*cli, "eval", str(tmp_path / "run"), "--data", str(sample_build), "--split", "all", "--out", str(tmp_path / "eval")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    labelled = int(pd.read_parquet(sample_build / "shards", columns=["label"]).label.notna().sum())
    assert result["samples"] == len(predictions) == labelled >= 2 and sum(map(sum, result["confusion"])) == labelled
    assert result == {**metrics([p["label"] for p in predictions], [p["predicted"] for p in predictions]), "checkpoint": str(tmp_path / "run"), "split": None}
    assert (tmp_path / "eval" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    done = subprocess.run([*cli, "infer", str(shared_data / "single_face.mp4"), "--checkpoint", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    label = done.stdout.split("label: ", 1)[1].split("\n", 1)[0]
    assert label in MERR_LABELS and "reasoning: " in done.stdout
    done = subprocess.run([*cli, "infer", str(tmp_path / "missing.mp4"), "--checkpoint", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 2 and "missing.mp4" in done.stderr
