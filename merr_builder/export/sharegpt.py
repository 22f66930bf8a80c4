"""`merr export sharegpt`: instruction samples for LLaMA-Factory, in its ShareGPT multimodal format.

Writes FILE (a JSON list), a media folder beside it (`<stem>_media/images/<clip>.jpg`: the peak frame;
`<stem>_media/videos/<clip>.<ext>`: the source clip, a relative link or with `copy_videos` a copy;
`<stem>_media/audios/<clip>.wav`: the clip's 16 kHz mono audio, decoded as the build decodes it) and
registers the dataset in `dataset_info.json` beside FILE (merged with one already there), so
`dataset_dir` = FILE's folder works as it is. `modalities` chooses what is attached: LLaMA-Factory
refuses `<audio>` for every template without an audio tower (qwen2_vl, llava_next_video, …), so
`image,video` is what most vision-language templates take. Each sample:

    {"conversations": [{"from": "human", "value": "<image><video><audio>The person in video says: …. [task] …"},
                       {"from": "gpt", "value": target}],
     "images": [peak frame], "videos": [source clip], "audios": [wav], "clip_id": …, "task": …}

LLaMA-Factory's rule: as many `<image>` / `<video>` / `<audio>` tokens as paths in the matching list.
Media paths are relative to FILE's folder. Tasks, pools and
target normalisation are Emotion-LLaMA's (`merr_builder.tasks`); one sample per clip and task.
"""

from __future__ import annotations

import json
import random
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from merr_builder.atomic import write_bytes_atomic
from merr_builder.finished_build import (
    ExportError,
    check_ids,
    check_sources_outside,
    fresh_folder,
    labelled_rows,
    link_or_copy,
    member,
    reading_build,
    source_file,
)
from merr_builder.media import AUDIO_SAMPLE_RATE, ClipAudio
from merr_builder.quarantine import ClipError
from merr_builder.speech import subtitle
from merr_builder.tasks import TASKS, instruction, target


@dataclass
class ShareGPTExport:
    file: Path
    samples: int
    by_task: dict[str, int]
    clips: int
    unlabelled: int


MODALITIES = ("image", "video", "audio")  # LLaMA-Factory's <image>, <video>, <audio> with images, videos, audios


def export_sharegpt(out_dir: Path, to: Path, tasks: tuple[str, ...] = tuple(TASKS), seed: int = 0, name: str = "merr",
                    modalities: tuple[str, ...] = MODALITIES, copy_videos: bool = False) -> ShareGPTExport:  # fmt: skip
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ExportError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    odd = [m for m in modalities if m not in MODALITIES]
    if odd or not modalities:
        raise ExportError(f"unknown modality {', '.join(odd) or '(none given)'}; choose one or more of {', '.join(MODALITIES)}")
    to = Path(to).absolute()
    if to.is_dir():
        raise ExportError(f"{to} is a folder; --to names the JSON file to write (its media go beside it)")
    if to.exists() and not _an_earlier_export(to):
        raise ExportError(f"{to} exists and is not a ShareGPT export (a JSON list of conversations); choose another file")
    media_name = f"{to.stem}_media"
    with reading_build(out_dir, to, to.parent / media_name, to.parent / "dataset_info.json"):
        return _export(out_dir, to, media_name, tasks, seed, name, modalities, copy_videos)


def _export(out_dir: Path, to: Path, media_name: str, tasks: tuple[str, ...], seed: int, name: str, modalities: tuple[str, ...],
            copy_videos: bool) -> ShareGPTExport:  # fmt: skip
    rows, unlabelled = labelled_rows(out_dir, ["source_path", "source_path_bytes", *subtitle.COLUMNS, "coarse_caption", "fine_caption",
                                               "peak_frame_jpeg", "has_audio", "duration_s"])  # fmt: skip
    check_ids(rows)
    check_sources_outside(rows, to, to.parent / media_name)
    rng = random.Random(seed)
    samples: list[dict] = []
    by_task = {t: 0 for t in tasks}
    to.parent.mkdir(parents=True, exist_ok=True)
    with fresh_folder(to.parent / media_name, "sharegpt") as media:
        for modality in modalities:
            (media / f"{modality}s").mkdir()
        for row in rows:
            # fine_caption is null unless the caption was kept, so reason_v2 goes only to checked captions
            answers = {t: a for t in tasks if (a := target(t, row))}
            if not answers:
                continue
            tokens, extra = "", {}
            if "image" in modalities and row["peak_frame_jpeg"]:
                member(media / "images", f"{row['clip_id']}.jpg").write_bytes(row["peak_frame_jpeg"])
                tokens += "<image>"
                extra["images"] = [f"{media_name}/images/{row['clip_id']}.jpg"]
            if "video" in modalities:
                video = f"{row['clip_id']}{Path(row['source_path']).suffix.lower()}"
                link_or_copy(Path(source_file(row)), member(media / "videos", video), to.parent / media_name / "videos", copy_videos)
                tokens += "<video>"
                extra["videos"] = [f"{media_name}/videos/{video}"]
            # a clip whose source no longer decodes keeps its video slot and loses the audio one
            if "audio" in modalities and row["has_audio"] and _write_wav(member(media / "audios", f"{row['clip_id']}.wav"), ClipAudio(source_file(row), row["duration_s"])):
                tokens += "<audio>"
                extra["audios"] = [f"{media_name}/audios/{row['clip_id']}.wav"]
            for task, answer in answers.items():
                human = tokens + instruction(task, subtitle.spoken_sentence(row), rng, with_slots=False)
                conversation = [{"from": "human", "value": human}, {"from": "gpt", "value": answer}]
                samples.append({"conversations": conversation, **extra, "clip_id": row["clip_id"], "task": task})
                by_task[task] += 1
    write_bytes_atomic(to, (json.dumps(samples, ensure_ascii=False, indent=1) + "\n").encode())
    _register(to, name, modalities)
    return ShareGPTExport(to, len(samples), by_task, len({s["clip_id"] for s in samples}), unlabelled)


def _write_wav(path: Path, audio: ClipAudio) -> bool:
    """16-bit PCM WAV of the clip's audio, written block by block; False (and no file) when it does not decode."""
    try:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(AUDIO_SAMPLE_RATE)
            for block in audio.blocks():
                out.writeframes((np.clip(block, -1.0, 1.0) * 32767).astype("<i2").tobytes())
    except ClipError:
        path.unlink(missing_ok=True)
        return False
    return True


def _an_earlier_export(file: Path) -> bool:
    try:
        samples = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(samples, list) and all(isinstance(s, dict) and "conversations" in s for s in samples)


def _register(file: Path, name: str, modalities: tuple[str, ...]) -> None:
    """Add (or replace) this dataset in `dataset_info.json` beside the file, as LLaMA-Factory reads it."""
    info_path = file.parent / "dataset_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    except (OSError, ValueError) as exc:
        raise ExportError(f"{info_path} cannot be read as LLaMA-Factory's dataset_info.json ({exc}); move it away") from None
    if not isinstance(info, dict):
        raise ExportError(f"{info_path} is not LLaMA-Factory's dataset_info.json (not a JSON object); move it away")
    info[name] = {
        "file_name": file.name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", **{f"{m}s": f"{m}s" for m in modalities}},
    }
    write_bytes_atomic(info_path, (json.dumps(info, indent=2) + "\n").encode())
