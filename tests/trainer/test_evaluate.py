"""Both evaluation protocols against scikit-learn and the original's script, the answer parsers, and
`merr eval` / `merr infer` on a real build and a real clip with a trained tiny model."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, precision_score, recall_score

from merr_builder.labels import MERR_LABELS
from merr_builder.trainer.config import TrainConfig
from merr_builder.trainer.evaluate import metrics, parse_label, read_predictions, score
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


# The released MER2023 result of Emotion-LLaMA (checkpoints/save_checkpoint/stage2/result/MER2023.txt): the
# confusion matrix in sklearn's sorted label order, and the four numbers the script printed for it.
RELEASED_LABELS = ["angry", "happy", "neutral", "sad", "surprise", "worried"]
RELEASED_CONFUSION = [[179, 1, 2, 1, 0, 0], [2, 152, 7, 4, 3, 1], [10, 10, 134, 6, 2, 4], [2, 2, 1, 250, 0, 2], [1, 0, 3, 1, 6, 3],
                      [4, 1, 3, 2, 1, 34]]  # fmt: skip
RELEASED = {"accuracy": 0.90528, "precision": 0.90363, "recall": 0.90528, "f1": 0.90358}


def original_eval_emotion(predictions: list[dict]) -> dict:
    """eval_emotion.py lines 83-98 (ZebangCheng/Emotion-LLaMA, as released), over answers already generated."""
    answers = [p["answer"] for p in predictions]
    targets = [p["label"] for p in predictions]
    for j in range(len(answers)):
        answers[j] = answers[j].split(" ")[-1]
        targets[j] = targets[j].split(" ")[-1]
        if answers[j] not in ["neutral", "angry", "happy", "sad", "worried", "surprise"]:
            answers[j] = "neutral"
    return {
        "accuracy": accuracy_score(targets, answers),
        "precision": precision_score(targets, answers, average="weighted", zero_division=0),
        "recall": recall_score(targets, answers, average="weighted"),
        "f1": f1_score(targets, answers, average="weighted"),
        "confusion": confusion_matrix(targets, answers).tolist(),
    }


def _merr_eval(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "merr_builder.cli", "eval", *map(str, args)], capture_output=True, text=True)


def test_the_emotion_llama_protocol_scores_a_predictions_file_as_the_original_script(tmp_path):
    # Answers as a model writes them: the bare word, a sentence whose last token carries a full stop or a
    # capital (the original keeps neither), labels outside its six (fear, doubt), an empty answer; truths
    # include a label outside the six (it stays, as in the original).
    cases = [("happy", "happy"), ("happy", "The emotion is happy"), ("happy", "Happy."), ("sad", "sad"), ("sad", "worried"),
             ("angry", "angry"), ("neutral", "fear"), ("worried", "doubt"), ("surprise", "surprise"), ("fear", "neutral"),
             ("fear", "sad"), ("neutral", ""), ("angry", "anger"), ("worried", "worried")]  # fmt: skip
    predictions = [{"clip_id": f"c{i}", "label": label, "answer": answer} for i, (label, answer) in enumerate(cases)]
    file = tmp_path / "predictions.jsonl"
    file.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    done = _merr_eval("--predictions", file, "--protocol", "emotion-llama", "--out", tmp_path / "eval")
    assert done.returncode == 0, done.stderr[-2000:]
    ours = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    original = original_eval_emotion(predictions)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert np.isclose(ours[name], original[name]), name
    assert ours["confusion"] == original["confusion"] and ours["protocol"] == "emotion-llama"
    rescored = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [p["predicted"] for p in rescored][:3] == ["happy", "happy", "neutral"]
    # The nine-label protocol reads the same answers differently ("Happy." is happy, "anger" is angry, "fear" is fear).
    nine = score(read_predictions(file), tmp_path / "merr", "merr")
    assert nine["accuracy"] > ours["accuracy"] and nine["labels"] == list(MERR_LABELS)
    with pytest.raises(ValueError, match="unknown evaluation protocol 'emotion_llama'; choose from merr, emotion-llama"):
        score(predictions, tmp_path / "x", "emotion_llama")


def test_the_emotion_llama_protocol_gives_the_released_mer2023_numbers_for_the_released_confusion_matrix(tmp_path):
    predictions = [{"clip_id": f"{i}-{j}-{n}", "label": truth, "answer": f"the emotion is {guess}"}
                   for i, truth in enumerate(RELEASED_LABELS) for j, guess in enumerate(RELEASED_LABELS)
                   for n in range(RELEASED_CONFUSION[i][j])]  # fmt: skip
    result = score(predictions, tmp_path, "emotion-llama")
    assert result["samples"] == 834 and result["confusion"] == RELEASED_CONFUSION and result["labels"] == RELEASED_LABELS
    assert {name: round(result[name], 5) for name in RELEASED} == RELEASED


def test_merr_eval_and_merr_infer_run_the_whole_chain(sample_build, tiny_lm, shared_data, tmp_path):
    config = TrainConfig(data=[sample_build], split=None, out_dir=tmp_path / "run", model_dir=tiny_lm, tasks=["emotion"], batch_size=3,
                         max_steps=2, lr=1e-3, warmup_steps=0, save_every=2, lora_r=4)  # fmt: skip
    train(config)
    cli = [sys.executable, "-m", "merr_builder.cli"]
    done = _merr_eval(tmp_path / "run", "--data", sample_build, "--split", "all", "--out", tmp_path / "eval")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    labelled = int(pd.read_parquet(sample_build / "shards", columns=["label"]).label.notna().sum())
    assert result["samples"] == len(predictions) == labelled >= 2 and sum(map(sum, result["confusion"])) == labelled
    assert result == {**metrics([p["label"] for p in predictions], [p["predicted"] for p in predictions]), "protocol": "merr",
                      "checkpoint": str(tmp_path / "run"), "split": None, "max_new_tokens": 16}  # fmt: skip
    assert (tmp_path / "eval" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    done = subprocess.run([*cli, "infer", str(shared_data / "single_face.mp4"), "--checkpoint", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    label = done.stdout.split("label: ", 1)[1].split("\n", 1)[0]
    assert label in MERR_LABELS and "reasoning: " in done.stdout
    done = subprocess.run([*cli, "infer", str(tmp_path / "missing.mp4"), "--checkpoint", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode == 2 and "missing.mp4" in done.stderr
