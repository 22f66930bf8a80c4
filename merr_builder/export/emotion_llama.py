"""`merr export emotion-llama`: the files the original Emotion-LLaMA trainer reads, in its layout.

Layout (the repository's Overview: `MER2023/{video, HL-UTT, mae_340_UTT, maeV_399_UTT,
transcription_en_all.csv, MERR_coarse_grained.{txt,json}, MERR_fine_grained.{txt,json}}`; facts §1.11):

- `MERR_coarse_grained.txt` / `MERR_fine_grained.txt`: one line per clip, `name frames label`, space-
  separated (the trainer reads column 1 and 3; "frames" is the clip's frame count, as in the original);
  the original's 4th column (a predicted valence) is not made by this recipe and is left out.
- `MERR_coarse_grained.json`: {name: {"caption": coarse caption, ...clues}}; `MERR_fine_grained.json`:
  {name: {"smp_reason_caption": fine caption, ...}} for clips whose fine caption was kept.
- `transcription_en_all.csv`: `name,sentence` for every exported clip: English words, or the documented
  text for a clip without speech ("nothing") or whose words are doubtful ("[unclear speech]"), as
  `speech.subtitle` defines them; never empty, so pandas never reads a NaN the prompt would quote.
- `video/<name>.mp4`: relative links to the source clips (the export moves with its sources, e.g. a data
  folder holding both), or copies with `copy_videos` (the export moves alone); the trainer's global
  encoder reads a frame of it.
- `peak_frames/<name>.jpg`: the emotional peak frame, which the paper's global encoder was meant to see
  (the released code takes the first frame instead).
- `mae_340_UTT/`, `maeV_399_UTT/`, `HL-UTT/<name>.npy`: 1-D float32 1024-d features, written only when
  the build holds 1024-d columns for them (`merr encode`); otherwise left out and said so. The original
  loads all three for every clip it lists, so a clip without one of them (no audio, say) refuses the
  export with the clips named, unless `drop_missing` leaves those clips out of every file.

Every name is checked against how the original reads it before anything is kept: the `.txt` is split on
spaces, files are `<folder>/<name>.npy`, and the transcript is found in the CSV as pandas reads it (a name
pandas reads as a number or as NaN is not found). A name that would be misread refuses the export with
the clips named; nothing is written then.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from merr_builder.finished_build import (
    ExportError,
    check_sources_outside,
    clip_list,
    fresh_folder,
    labelled_rows,
    link_or_copy,
    member,
    reading_build,
    source_file,
)
from merr_builder.facs import AU_PRESENCE_THRESHOLD
from merr_builder.names import ID_RULE, id_problem
from merr_builder.speech import subtitle

# Emotion-LLaMA feature folder → the shard column holding that encoder's 1024-d clip feature.
FEATURE_FOLDERS = {"mae_340_UTT": "feat_face", "maeV_399_UTT": "feat_video", "HL-UTT": "feat_audio"}
FEATURE_DIM = 1024
TEXT_COLUMNS = [
    "source_path", "duration_s", "fps", "coarse_caption", "fine_caption", "fine_status", *subtitle.COLUMNS, "pseudo_label",
    "visual_objective_description", "visual_expression_description", "audio_tone_description", "peak_frame_index", "aus_peak",
]  # fmt: skip


@dataclass
class EmotionLlamaExport:
    folder: Path
    coarse: int
    fine: int
    unlabelled: int
    without_peak_frame: list[str] = field(default_factory=list)
    features: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # clips left out for a missing feature (drop_missing)
    notes: list[str] = field(default_factory=list)


def misread_names(names: list[str]) -> dict[str, str]:
    """Names the original loader would misread, with why: it splits each `.txt` line on spaces (`t[0]` is
    the name) and opens `<folder>/<name>.npy` and `video/<name>.mp4`; an id outside the id grammar
    (names.py) is refused for what the grammar says of it."""
    why = {}
    for name in names:
        if any(c.isspace() for c in name):
            why[name] = "has white space (the .txt line is split on ' ')"
        elif problem := id_problem(name):
            why[name] = f"{problem} ({ID_RULE})"
    return why


def _names_pandas_misreads(csv_path: Path, names: list[str]) -> dict[str, str]:
    """Names that `pd.read_csv(transcription_en_all.csv)['name']` does not give back as written (a number,
    NaN), so `df.loc[df['name'] == name]` finds nothing in the original loader."""
    import pandas as pd

    read = pd.read_csv(csv_path)["name"].tolist()
    return {n: f"is read back by pandas as {r!r}" for n, r in zip(names, read) if not (isinstance(r, str) and r == n)}


def export_emotion_llama(out_dir: Path, to: Path, drop_missing: bool = False, copy_videos: bool = False) -> EmotionLlamaExport:
    with reading_build(out_dir, to):
        return _export(out_dir, Path(to).absolute(), drop_missing, copy_videos)


def _export(out_dir: Path, to: Path, drop_missing: bool, copy_videos: bool) -> EmotionLlamaExport:
    rows, unlabelled = labelled_rows(out_dir, ["source_path_bytes"] + TEXT_COLUMNS + ["peak_frame_jpeg"] + list(FEATURE_FOLDERS.values()))
    check_sources_outside(rows, to)
    features = {folder: column for folder, column in FEATURE_FOLDERS.items() if any(r[column] is not None for r in rows)}
    coarse = [r for r in rows if r["coarse_caption"]]
    for folder, column in features.items():
        bad = [r["clip_id"] for r in coarse if r[column] is not None and len(r[column]) != FEATURE_DIM]
        if bad:
            raise ExportError(f"column {column} ({folder}) must hold {FEATURE_DIM} values; it does not for {clip_list(bad)}")
    missing = {r["clip_id"]: [f for f, c in features.items() if r[c] is None] for r in coarse}
    missing = {clip: folders for clip, folders in missing.items() if folders}
    if missing and not drop_missing:
        named = clip_list([f"{clip} ({', '.join(folders)})" for clip, folders in missing.items()])
        raise ExportError(f"{len(missing)} clips lack a feature the original loads for every clip it lists: {named}; "
                          "encode them, or export with --drop-missing to leave them out")  # fmt: skip
    coarse = [r for r in coarse if r["clip_id"] not in missing]
    fine = [r for r in coarse if r["fine_status"] == "kept" and r["fine_caption"]]
    misread = misread_names([r["clip_id"] for r in coarse])
    if misread:
        raise ExportError(_misread_message(misread))
    result = EmotionLlamaExport(Path(to), len(coarse), len(fine), unlabelled, dropped=sorted(missing))
    with fresh_folder(to, "emotion-llama") as folder:
        for name, chosen in (("coarse", coarse), ("fine", fine)):
            lines = [f"{r['clip_id']} {_frame_count(r)} {r['label']}\n" for r in chosen]
            (folder / f"MERR_{name}_grained.txt").write_text("".join(lines))
        _write_json(folder / "MERR_coarse_grained.json", {r["clip_id"]: _coarse_record(r) for r in coarse})
        _write_json(folder / "MERR_fine_grained.json", {r["clip_id"]: _fine_record(r) for r in fine})
        with (folder / "transcription_en_all.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "sentence"])
            writer.writerows([r["clip_id"], subtitle.spoken_sentence(r)] for r in coarse)
        misread = _names_pandas_misreads(folder / "transcription_en_all.csv", [r["clip_id"] for r in coarse])
        if misread:
            raise ExportError(_misread_message(misread))
        (folder / "video").mkdir()
        (folder / "peak_frames").mkdir()
        for r in coarse:
            suffix = ".avi" if r["source_path"].lower().endswith(".avi") else ".mp4"  # the two the trainer tries
            # relative to the final folder: the partial folder is its sibling, at the same depth
            link_or_copy(Path(source_file(r)), member(folder / "video", f"{r['clip_id']}{suffix}"), to / "video", copy_videos)
            if r["peak_frame_jpeg"]:
                member(folder / "peak_frames", f"{r['clip_id']}.jpg").write_bytes(r["peak_frame_jpeg"])
            else:
                result.without_peak_frame.append(r["clip_id"])
        for feature_folder, column in features.items():
            (folder / feature_folder).mkdir()
            written = [r for r in coarse if r[column] is not None]
            for r in written:
                np.save(member(folder / feature_folder, f"{r['clip_id']}.npy"), np.asarray(r[column], dtype=np.float32))
            result.features[feature_folder] = len(written)
    absent = sorted(set(FEATURE_FOLDERS) - set(features))
    if absent:
        result.notes.append(
            f"no 1024-d encoder features in this build, so {', '.join(absent)} were not written; "
            "run `merr encode` first for a layout the original trainer can load"
        )
    if result.dropped:
        result.notes.append(f"{len(result.dropped)} clips without every feature were left out: {clip_list(result.dropped)}")
    if result.without_peak_frame:
        result.notes.append(f"{len(result.without_peak_frame)} clips have no face, hence no peak frame image")
    return result


def _misread_message(misread: dict[str, str]) -> str:
    named = clip_list([f"{name!r} {why}" for name, why in misread.items()])
    return (f"{len(misread)} clip ids would be misread by the original Emotion-LLaMA loader: {named}; "
            "rename the source files (or give clip_id in a manifest) and build again")  # fmt: skip


def _frame_count(row: dict) -> int:
    return max(1, round(row["duration_s"] * row["fps"]))


def _present_aus(row: dict) -> list[str]:
    aus = row["aus_peak"] or {}
    return [au for au, value in aus.items() if value is not None and value >= AU_PRESENCE_THRESHOLD]


def _coarse_record(row: dict) -> dict:
    return {
        "caption": row["coarse_caption"],
        "label": row["label"],
        "pseu_emotion": row["pseudo_label"],
        "peak_index": row["peak_frame_index"],
        "peak_AU_list": _present_aus(row),
        "visual_prior_list": row["visual_expression_description"],
        "visual_objective": row["visual_objective_description"],
        "audio_prior_list": row["audio_tone_description"],
        "text": subtitle.spoken_sentence(row),
    }


def _fine_record(row: dict) -> dict:
    return {"smp_reason_caption": row["fine_caption"], "caption": row["coarse_caption"], "label": row["label"], "text": subtitle.spoken_sentence(row)}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
