"""`merr eval` (two protocols) and `merr infer` (the whole chain on one new clip).

Protocols (`--protocol`):

- `emotion-llama` reproduces the original's `eval_emotion.py` (lines 83-98 of the released script): the
  prediction is the generated answer's last space-separated token as it stands (no lower-casing, no
  punctuation removed), and one outside {neutral, angry, happy, sad, worried, surprise} becomes neutral;
  the truth is the label word; scikit-learn's accuracy and weighted precision, recall and F1 over the
  labels that occur, and the confusion matrix in sorted label order; greedy, 500 new tokens. This is
  the number the paper's 0.9036 (MER2023) is.
- `merr` (default) reads every one of the nine MERR labels: the answer's last word, lower-cased and
  normalised (`anger` → angry), unknown → neutral; accuracy, weighted F1, UAR (mean recall over the
  classes present) and WAR (recall weighted by class size, which equals accuracy), the confusion matrix
  over the nine labels; 16 new tokens (the `emotion` task's answer is one label word).

Both write `metrics.json`, `predictions.jsonl` (clip, label, raw answer, prediction) and `confusion.png`;
`merr eval --predictions FILE` scores a predictions file again under either protocol without a model.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merr_builder.labels import MERR_LABELS, UnknownLabelError, normalize_label
from merr_builder.speech.subtitle import spoken_sentence
from merr_builder.tasks import instruction
from merr_builder.trainer.data import Sample, read_rows, samples_of

# eval_emotion.py: `if answers[j] not in ['neutral', 'angry', 'happy', 'sad', 'worried', 'surprise']`
EMOTION_LLAMA_EVAL_LABELS = ("neutral", "angry", "happy", "sad", "worried", "surprise")


def parse_label(answer: str) -> str:
    """The last word of an answer as a MERR label; anything else is neutral (the `merr` protocol)."""
    words = re.findall(r"[A-Za-z]+", answer.lower())
    if not words:
        return "neutral"
    try:
        return normalize_label(words[-1])
    except UnknownLabelError:
        return "neutral"


def parse_label_as_emotion_llama(answer: str) -> str:
    """`answers[j].split(" ")[-1]`, kept only when it is one of the six words as written (eval_emotion.py)."""
    word = answer.split(" ")[-1]
    return word if word in EMOTION_LLAMA_EVAL_LABELS else "neutral"


def _confusion(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted):
        confusion[index[t], index[p]] += 1
    return confusion


def _per_class(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Support, precision, recall and F1 per class; 0 where undefined (scikit-learn's zero_division)."""
    support, predicted_count, true_positive = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, true_positive / support, 0.0)
        precision = np.where(predicted_count > 0, true_positive / predicted_count, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return support, precision, recall, f1


def metrics(truth: list[str], predicted: list[str], labels: tuple[str, ...] = MERR_LABELS) -> dict:
    """The `merr` protocol: accuracy, weighted F1, UAR, WAR and the confusion matrix (rows: truth)."""
    confusion = _confusion(truth, predicted, labels)
    support, _, recall, f1 = _per_class(confusion)
    total = support.sum()
    present = support > 0
    return {
        "samples": int(total),
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "war": float((recall * support).sum() / total) if total else 0.0,
        "labels": list(labels),
        "confusion": confusion.tolist(),
    }


def emotion_llama_metrics(truth: list[str], predicted: list[str]) -> dict:
    """eval_emotion.py's numbers: accuracy_score; precision_score, recall_score, f1_score with
    average='weighted' over the labels that occur in truth or prediction (sorted, as scikit-learn's
    unique_labels); confusion_matrix in that order."""
    labels = tuple(sorted(set(truth) | set(predicted)))
    confusion = _confusion(truth, predicted, labels)
    support, precision, recall, f1 = _per_class(confusion)
    total = support.sum()
    weighted = lambda values: float((values * support).sum() / total) if total else 0.0
    return {
        "samples": int(total),
        "accuracy": float(np.trace(confusion) / total) if total else 0.0,
        "precision": weighted(precision),
        "recall": weighted(recall),
        "f1": weighted(f1),
        "weighted_f1": weighted(f1),
        "labels": list(labels),
        "confusion": confusion.tolist(),
    }


@dataclass(frozen=True)
class Protocol:
    name: str
    parse: Callable[[str], str]  # generated answer → predicted label
    score: Callable[[list[str], list[str]], dict]  # truth, predictions → metrics
    max_new_tokens: int
    headline: tuple[str, ...]  # the metrics `merr eval` prints
    truth: Callable[[str], str] = lambda label: label  # a row's label → the label scored against


def _last_word(label: str) -> str:
    """eval_emotion.py: `targets[j].split(" ")[-1]` (the target is the label word itself here)."""
    return label.split(" ")[-1]


PROTOCOLS = {
    "merr": Protocol("merr", parse_label, metrics, 16, ("accuracy", "weighted_f1", "uar", "war")),
    "emotion-llama": Protocol("emotion-llama", parse_label_as_emotion_llama, emotion_llama_metrics, 500,
                              ("accuracy", "precision", "recall", "f1"), _last_word),  # fmt: skip
}


def protocol_named(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def plot_confusion(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = np.asarray(result["confusion"])
    fig, ax = plt.subplots(figsize=(6, 5.5), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(result["labels"])), result["labels"], rotation=45, ha="right")
    ax.set_yticks(range(len(result["labels"])), result["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", color="black")
    ax.set_title(f"{result.get('protocol', 'merr')}: acc {result['accuracy']:.3f}  weighted F1 {result['weighted_f1']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(checkpoint: Path, data: list[Path], out_dir: Path, split: str | None = "test", batch_size: int = 8,
             protocol: str = "merr", max_new_tokens: int | None = None) -> dict:  # fmt: skip
    """Generate the `emotion` answer for every labelled row of the split and score it under `protocol`."""
    from merr_builder.trainer.train import load_trained

    chosen = protocol_named(protocol)
    # The global encoder runs on the peak frames (the tokens `merr encode` stores, up to float16), so any
    # build can be evaluated, encoded with the tower or not.
    model, scaler, _ = load_trained(checkpoint, _device(), vision_source="frame")
    rows = [r for r in read_rows(data, scaler.columns, split) if r["label"]]
    if not rows:
        raise ValueError(f"no labelled rows in split {split!r} of {', '.join(map(str, data))}")
    rng = random.Random(0)
    samples = [s for r in rows for s in samples_of(r, ["emotion"], scaler, rng)]
    tokens = max_new_tokens or chosen.max_new_tokens
    answers = [a for i in range(0, len(samples), batch_size) for a in model.generate(samples[i : i + batch_size], tokens)]
    predictions = [{"clip_id": s.clip_id, "label": s.label, "answer": a} for s, a in zip(samples, answers)]
    return score(predictions, out_dir, protocol, {"checkpoint": str(checkpoint), "split": split, "max_new_tokens": tokens})


def score(predictions: list[dict], out_dir: Path, protocol: str = "merr", about: dict | None = None) -> dict:
    """Metrics of answers already generated (`clip_id`, `label`, `answer` each) under `protocol`, written
    with the predictions and the confusion plot to `out_dir`."""
    chosen = protocol_named(protocol)
    missing = [i for i, p in enumerate(predictions) if not {"label", "answer"} <= set(p)]
    if missing:
        raise ValueError(f"prediction {missing[0] + 1} has no 'label' or no 'answer'")
    truth = [chosen.truth(p["label"]) for p in predictions]
    predicted = [chosen.parse(p["answer"]) for p in predictions]
    result = {**chosen.score(truth, predicted), "protocol": chosen.name, **(about or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    with (out_dir / "predictions.jsonl").open("w") as handle:
        for p, label in zip(predictions, predicted):
            handle.write(json.dumps({**p, "predicted": label}, ensure_ascii=False) + "\n")
    plot_confusion(result, out_dir / "confusion.png")
    return result


def read_predictions(path: Path) -> list[dict]:
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {number} is not JSON ({exc.msg})") from None
    return out


def infer(clip: Path, checkpoint: Path, build_overrides: list[str] = (), max_new_tokens: int = 160) -> dict:
    """Build one new clip (media, faces, speech, coarse clues; no fine LLM) and ask the model. The pipeline
    runs in this process (no Prefect: one clip needs no orchestration)."""
    from merr_builder.config import load_config
    from merr_builder.local import run_locally
    from merr_builder.trainer.train import load_trained

    # The clip is new: the global encoder runs on its peak frame whatever the training read (the same tokens
    # `merr encode --vision-tower` stores).
    model, scaler, _ = load_trained(checkpoint, _device(), vision_source="frame")
    with tempfile.TemporaryDirectory(prefix="merr-infer-") as tmp:
        folder = Path(tmp) / "input"
        folder.mkdir()
        (folder / Path(clip).name).symlink_to(Path(clip).absolute())
        # The AU filter chooses what enters a dataset; a clip asked about is answered whatever its face shows.
        settings = ["annotate.fine_backend=none", "annotate.au_filter=false", *build_overrides]
        summary = run_locally(folder, Path(tmp) / "out", load_config(None, settings))
        if summary.rows == 0:
            import pyarrow.parquet as pq

            reasons = "; ".join(pq.read_table(Path(tmp) / "out" / "quarantine.parquet").column("message").to_pylist())
            raise ValueError(f"{clip}: the clip could not be analysed ({reasons})")
        row = read_rows([Path(tmp) / "out"], scaler.columns, None)[0]
    rng = random.Random(0)
    features = scaler.features(row)
    questions = [Sample(row["clip_id"], task, instruction(task, spoken_sentence(row), rng), None, features, None) for task in ("emotion", "reason")]
    answer_emotion, answer_reason = model.generate(questions, max_new_tokens)
    return {"clip": str(clip), "label": parse_label(answer_emotion), "emotion_answer": answer_emotion, "reasoning": answer_reason,
            "transcript": row["transcript"], "transcript_en": row["transcript_en"]}  # fmt: skip


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
