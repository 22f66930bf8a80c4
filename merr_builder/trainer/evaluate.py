"""`merr eval` (the MER2023 protocol) and `merr infer` (the whole chain on one new clip).

MER2023 protocol: the model answers the `emotion` task; the last word of the answer is the prediction
(unknown words → neutral); reported are accuracy, weighted F1, UAR (mean recall over the classes present)
and WAR (recall weighted by class size, which equals accuracy), with the confusion matrix as JSON and PNG.
"""

from __future__ import annotations

import json
import random
import re
import tempfile
from pathlib import Path

import numpy as np

from merr_builder.labels import MERR_LABELS, UnknownLabelError, normalize_label
from merr_builder.speech.subtitle import spoken_sentence
from merr_builder.tasks import instruction
from merr_builder.trainer.data import Sample, read_rows, samples_of


def parse_label(answer: str) -> str:
    """The last word of an answer as a MERR label; anything else is neutral (the MER2023 rule)."""
    words = re.findall(r"[A-Za-z]+", answer.lower())
    if not words:
        return "neutral"
    try:
        return normalize_label(words[-1])
    except UnknownLabelError:
        return "neutral"


def metrics(truth: list[str], predicted: list[str], labels: tuple[str, ...] = MERR_LABELS) -> dict:
    """Accuracy, weighted F1, UAR, WAR and the confusion matrix (rows: truth, columns: prediction)."""
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted):
        confusion[index[t], index[p]] += 1
    support = confusion.sum(1)
    predicted_count = confusion.sum(0)
    true_positive = np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, true_positive / support, 0.0)
        precision = np.where(predicted_count > 0, true_positive / predicted_count, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total = support.sum()
    present = support > 0
    return {
        "samples": int(total),
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "uar": float(recall[present].mean()) if present.any() else 0.0,
        "war": float((recall * support).sum() / total) if total else 0.0,
        "labels": list(labels),
        "confusion": confusion.tolist(),
    }


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
    ax.set_title(f"acc {result['accuracy']:.3f}  WF1 {result['weighted_f1']:.3f}  UAR {result['uar']:.3f}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def evaluate(checkpoint: Path, data: list[Path], out_dir: Path, split: str | None = "test", batch_size: int = 8,
             max_new_tokens: int = 16) -> dict:  # fmt: skip
    from merr_builder.trainer.train import load_trained

    model, scaler, _ = load_trained(checkpoint, _device())
    rows = [r for r in read_rows(data, list(scaler.stats), split) if r["label"]]
    if not rows:
        raise ValueError(f"no labelled rows in split {split!r} of {', '.join(map(str, data))}")
    rng = random.Random(0)
    samples = [s for r in rows for s in samples_of(r, ["emotion"], scaler, rng)]
    answers = [a for i in range(0, len(samples), batch_size) for a in model.generate(samples[i : i + batch_size], max_new_tokens)]
    predicted = [parse_label(a) for a in answers]
    result = metrics([s.label for s in samples], predicted)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({**result, "checkpoint": str(checkpoint), "split": split}, indent=1) + "\n")
    with (out_dir / "predictions.jsonl").open("w") as handle:
        for s, a, p in zip(samples, answers, predicted):
            handle.write(json.dumps({"clip_id": s.clip_id, "label": s.label, "answer": a, "predicted": p}, ensure_ascii=False) + "\n")
    plot_confusion(result, out_dir / "confusion.png")
    return result


def infer(clip: Path, checkpoint: Path, build_overrides: list[str] = (), max_new_tokens: int = 160) -> dict:
    """Build one new clip (media, faces, speech, coarse clues; no fine LLM) and ask the model. The pipeline
    runs in this process (no Prefect: one clip needs no orchestration)."""
    from merr_builder.config import load_config
    from merr_builder.local import run_locally
    from merr_builder.trainer.train import load_trained

    model, scaler, _ = load_trained(checkpoint, _device())
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
        row = read_rows([Path(tmp) / "out"], list(scaler.stats), None)[0]
    rng = random.Random(0)
    features = {stream: scaler.transform(row, stream) for stream in scaler.stats}
    questions = [Sample(row["clip_id"], task, instruction(task, spoken_sentence(row), rng), None, features, None) for task in ("emotion", "reason")]
    answer_emotion, answer_reason = model.generate(questions, max_new_tokens)
    return {"clip": str(clip), "label": parse_label(answer_emotion), "emotion_answer": answer_emotion, "reasoning": answer_reason,
            "transcript": row["transcript"], "transcript_en": row["transcript_en"]}  # fmt: skip


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
