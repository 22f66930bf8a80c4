"""Ingest: find clips (folder, manifest CSV or MER2023 layout), join sidecar text and labels, probe, fingerprint.

Discovery is cheap and global (it must see every clip to reject duplicate ids); probing and hashing run per
partition as the first stage.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

from merr_builder.assets import sha256_file
from merr_builder.config import BuildConfig, IngestConfig
from merr_builder.labels import UnknownLabelError, normalize_label
from merr_builder.quarantine import ClipError, ErrorKind, QuarantineRecord, StageResult, map_clips
from merr_builder.records import ClipInfo, ClipSource, Discovery
from merr_builder.schema import INGEST_SCHEMA
from merr_builder.stage import PartitionBatch
from merr_builder.text import TextDecodeError, decode_text

MER2023_TRANSCRIPTS = "transcription_en_all.csv"
MER2023_VIDEO_DIR = "video"


class InputError(ValueError):
    """The build input itself (not one clip) is unusable: fail before any work."""


# --- discovery -------------------------------------------------------------------------------


def _walk_videos(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Every video under `root`, following links but never a directory twice (symlink loops)."""
    wanted = {e.lower() for e in extensions}
    seen_dirs: set[str] = set()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if Path(name).suffix.lower() in wanted and not name.startswith("."):
                found.append(Path(dirpath) / name)
    return found


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        text = decode_text(path.read_bytes(), path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except TextDecodeError as exc:
        raise InputError(str(exc)) from exc
    rows = list(csv.DictReader(text.splitlines()))
    return [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in rows]


def _column(rows: list[dict[str, str]], path: Path, *names: str, required: bool = True) -> str | None:
    header = rows[0].keys() if rows else []
    for name in names:
        if name in header:
            return name
    if required:
        raise InputError(f"{path}: needs a column named {' or '.join(names)}; found {', '.join(header) or 'none'}")
    return None


def _read_keyed(path: Path, key_names: tuple[str, ...], value_names: tuple[str, ...]) -> dict[str, str]:
    rows = _read_csv(path)
    if not rows:
        return {}
    key = _column(rows, path, *key_names)
    value = _column(rows, path, *value_names)
    return {row[key]: row[value] for row in rows if row.get(key)}


def _read_labels(path: Path) -> dict[str, str]:
    return _read_keyed(path, ("name", "clip_id"), ("label", "discrete", "emotion"))


def _read_transcripts(path: Path) -> dict[str, str]:
    return _read_keyed(path, ("name", "clip_id"), ("sentence", "transcript", "text"))


def _from_manifest(path: Path) -> list[tuple[str, Path, str | None]]:
    rows = _read_csv(path)
    if not rows:
        raise InputError(f"manifest {path} lists no clips")
    path_col = _column(rows, path, "path", "source_path", "video")
    id_col = _column(rows, path, "clip_id", "name", required=False)
    label_col = _column(rows, path, "label", required=False)
    entries = []
    for row in rows:
        clip = Path(row[path_col])
        if not clip.is_absolute():
            clip = path.parent / clip
        clip_id = (row.get(id_col) if id_col else "") or clip.stem
        entries.append((clip_id, clip, (row.get(label_col) or None) if label_col else None))
    return entries


def detect_layout(input_path: Path, config: IngestConfig) -> str:
    if config.layout != "auto":
        return config.layout
    if input_path.is_file() and input_path.suffix.lower() == ".csv":
        return "manifest"
    if (input_path / MER2023_VIDEO_DIR).is_dir() and (input_path / MER2023_TRANSCRIPTS).is_file():
        return "mer2023"
    return "folder"


def check_input(input_path: Path, config: IngestConfig) -> None:
    """Cheap checks of the build input, run before any orchestration starts; raise InputError."""
    input_path = Path(input_path).expanduser().absolute()
    if not input_path.exists():
        raise InputError(f"input {input_path} does not exist")
    layout = detect_layout(input_path, config)
    if layout == "manifest" and not input_path.is_file():
        raise InputError(f"input {input_path} is not a manifest CSV file")
    if layout in ("folder", "mer2023") and not input_path.is_dir():
        raise InputError(f"input {input_path} is not a folder of clips")
    for name, path in (("transcripts_file", config.transcripts_file), ("labels_file", config.labels_file)):
        if path is not None and not Path(path).is_file():
            raise InputError(f"ingest.{name} {path} does not exist")


def discover(input_path: Path, config: IngestConfig) -> Discovery:
    """List the clips of a build input; clips that share an id are rejected, all of them, naming each path."""
    check_input(input_path, config)
    input_path = Path(input_path).expanduser().absolute()
    layout = detect_layout(input_path, config)

    labels_from_manifest: dict[int, str | None] = {}
    if layout == "manifest":
        entries = _from_manifest(input_path)
        found = [(cid, p) for cid, p, _ in entries]
        labels_from_manifest = {i: lab for i, (_, _, lab) in enumerate(entries)}
    else:
        root = input_path / MER2023_VIDEO_DIR if layout == "mer2023" else input_path
        if not root.is_dir():
            raise InputError(f"input {root} is not a folder of clips")
        found = [(p.stem, p) for p in _walk_videos(root, config.extensions)]

    transcripts_file = config.transcripts_file
    if transcripts_file is None and layout == "mer2023":
        transcripts_file = input_path / MER2023_TRANSCRIPTS
    transcripts = _read_transcripts(transcripts_file) if transcripts_file else {}
    labels = _read_labels(config.labels_file) if config.labels_file else {}

    by_id: dict[str, list[ClipSource | QuarantineRecord]] = defaultdict(list)
    for index, (clip_id, path) in enumerate(found):
        raw_label = labels.get(clip_id) or labels_from_manifest.get(index)
        label_src = str(config.labels_file) if clip_id in labels else (str(input_path) if raw_label else None)
        try:
            label = normalize_label(raw_label) if raw_label else None
        except UnknownLabelError as exc:
            by_id[clip_id].append(
                QuarantineRecord(clip_id, str(path), IngestStage.name, ErrorKind.UNKNOWN_LABEL, f"{exc} (from {label_src})")
            )
            continue
        sentence = transcripts.get(clip_id)
        by_id[clip_id].append(
            ClipSource(
                clip_id=clip_id,
                source_path=str(path),
                sidecar_transcript=sentence,
                sidecar_source=str(transcripts_file) if sentence is not None else None,
                label=label,
                label_source=label_src if label else None,
            )
        )

    clips: list[ClipSource] = []
    rejected: list[QuarantineRecord] = []
    for clip_id in sorted(by_id):
        group = by_id[clip_id]
        if len(group) > 1:
            paths = [g.source_path for g in group]
            message = f"clip id {clip_id!r} is used by {len(paths)} files: {', '.join(paths)}"
            rejected += [QuarantineRecord(clip_id, p, IngestStage.name, ErrorKind.DUPLICATE_CLIP_ID, message) for p in paths]
        elif isinstance(group[0], QuarantineRecord):
            rejected.append(group[0])
        else:
            clips.append(group[0])
    return Discovery(clips=clips, rejected=rejected, layout=layout)


# --- probing ---------------------------------------------------------------------------------


def _rate(text: str | None) -> float:
    try:
        value = Fraction(text or "0")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(value) if value > 0 else 0.0


def _rotation(stream: dict) -> int:
    degrees = 0.0
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            degrees = float(side["rotation"])
    if not degrees and "rotate" in (stream.get("tags") or {}):
        degrees = float(stream["tags"]["rotate"])
    # Display-matrix rotation is counter-clockwise and may be negative; report it as 0/90/180/270.
    return int(round(degrees / 90.0)) * 90 % 360


def run_ffprobe(path: str | Path) -> dict:
    cmd = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_format", "-show_streams", str(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        reason = "; ".join(filter(None, [_sniff(Path(path)), _ffmpeg_messages(proc.stderr)]))
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{path}: not a readable video file ({reason})")
    return json.loads(proc.stdout or "{}")


_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _sniff(path: Path) -> str | None:
    """A plain-words guess at what an unreadable file is, from its first bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return None
    if head[4:8] in _ISO_BOXES:
        return "an MP4/MOV whose index is missing or cut off: the file is truncated or was never finished"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "the file holds text, not video"
    return None


def _ffmpeg_messages(stderr: str) -> str:
    """ffmpeg's error lines without object addresses and the repeated path."""
    lines: list[str] = []
    for line in stderr.strip().splitlines():
        message = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line).split(": ", 1)[-1].strip()
        if message and message not in lines:
            lines.append(message)
    return "; ".join(lines) or "ffprobe failed without a message"


def probe(source: ClipSource, config: IngestConfig) -> ClipInfo:
    """ffprobe one clip; raise ClipError with a reason a person understands when it is unusable."""
    path = Path(source.source_path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(ErrorKind.NOT_FOUND, f"{path}: cannot be opened ({exc.strerror})") from exc
    if size == 0:
        raise ClipError(ErrorKind.EMPTY_FILE, f"{path}: the file is empty (0 bytes)")
    info = run_ffprobe(path)
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise ClipError(ErrorKind.NO_VIDEO_STREAM, f"{path}: has no video stream")
    if audio is None and config.require_audio:
        raise ClipError(ErrorKind.NO_AUDIO_STREAM, f"{path}: has no audio stream (speech and tone need one)")
    duration = _duration(info, video)
    if duration <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{path}: the container declares no duration")
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{path}: the video stream has no frame size")
    if rotation in (90, 270):
        width, height = height, width
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if fps <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{path}: the video stream declares no frame rate")
    return ClipInfo(
        clip_id=source.clip_id,
        source_path=str(path),
        fingerprint=sha256_file(path),  # content identity: renames and touches keep the cache
        size_bytes=size,
        duration_s=duration,
        video_duration_s=_stream_duration(video) or duration,
        audio_duration_s=(_stream_duration(audio) or duration) if audio else None,
        fps=fps,
        width=width,
        height=height,
        rotation=rotation,
        video_codec=video.get("codec_name", "unknown"),
        audio_codec=audio.get("codec_name") if audio else None,
        has_audio=audio is not None,
        sidecar_transcript=source.sidecar_transcript,
        sidecar_source=source.sidecar_source,
        label=source.label,
        label_source=source.label_source,
    )


def _is_cover_art(stream: dict) -> bool:
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _stream_duration(stream: dict) -> float | None:
    try:
        value = float(stream.get("duration") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def _duration(info: dict, video: dict) -> float:
    for text in ((info.get("format") or {}).get("duration"), video.get("duration")):
        try:
            if text is not None and float(text) > 0:
                return float(text)
        except ValueError:
            continue
    return 0.0


class IngestStage:
    """Probe and fingerprint a partition of discovered clips."""

    name = "ingest"
    version = "1"
    config_section = "ingest"
    output_schema = INGEST_SCHEMA

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    @classmethod
    def models(cls, config: BuildConfig) -> dict[str, dict[str, str]]:
        return {}  # ffmpeg only

    @classmethod
    def from_config(cls, config: BuildConfig) -> "IngestStage":
        return cls(config.ingest)

    def run(self, batch: PartitionBatch) -> StageResult[ClipInfo]:
        return map_clips(
            self.name, batch.sources, lambda s: probe(s, self.config), lambda s: (s.clip_id, s.source_path)
        )
