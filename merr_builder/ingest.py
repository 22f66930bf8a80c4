"""Ingest: find clips (folder, manifest CSV or MER2023 layout), join sidecar text and labels, probe, fingerprint.

Discovery is cheap and global (it must see every clip to reject duplicate ids); probing and hashing run per
partition as the first stage.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from merr_builder.assets import sha256_file
from merr_builder.config import BuildConfig, IngestConfig
from merr_builder.labels import UnknownLabelError, normalize_label
from merr_builder.names import ID_RULE, id_problem, path_bytes, path_text, safe_id
from merr_builder.quarantine import ClipError, ErrorKind, QuarantineRecord, StageResult, map_clips
from merr_builder.records import ClipInfo, ClipSource, Discovery
from merr_builder.schema import INGEST_SCHEMA
from merr_builder.stage import PartitionBatch, StageDefaults
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
    return _read_csv_text(path)[0]


def _read_csv_text(path: Path) -> tuple[list[dict[str, str]], str]:
    """The rows of a CSV (keys lower case, values stripped) and the encoding it was read in."""
    try:
        decoded = decode_text(path.read_bytes(), path)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc
    except TextDecodeError as exc:
        raise InputError(str(exc)) from exc
    reader = csv.DictReader(io.StringIO(decoded.text, newline=""), restkey=_EXTRA_FIELDS)  # (quoted newlines kept)
    rows = []
    for row in reader:
        if _EXTRA_FIELDS in row:  # an unquoted comma: every later field would be read into the wrong column
            raise InputError(f"{path}, line {reader.line_num}: {len(reader.fieldnames or []) + len(row[_EXTRA_FIELDS])} fields "
                             f"where the header has {len(reader.fieldnames or [])}; quote fields that hold a comma")  # fmt: skip
        rows.append({(k or "").strip().lower(): (v or "").strip() for k, v in row.items()})
    return rows, decoded.encoding


_EXTRA_FIELDS = "\0extra"  # csv.DictReader's key for the fields past the header's (a name no header can have)


def _column(rows: list[dict[str, str]], path: Path, *names: str, required: bool = True) -> str | None:
    header = rows[0].keys() if rows else []
    for name in names:
        if name in header:
            return name
    if required:
        raise InputError(f"{path}: needs a column named {' or '.join(names)}; found {', '.join(header) or 'none'}")
    return None


def _read_keyed(path: Path, key_names: tuple[str, ...], value_names: tuple[str, ...]) -> tuple[dict[str, str], str]:
    rows, encoding = _read_csv_text(path)
    if not rows:
        return {}, encoding
    key = _column(rows, path, *key_names)
    value = _column(rows, path, *value_names)
    return {row[key]: row[value] for row in rows if row.get(key)}, encoding


def _read_labels(path: Path) -> dict[str, str]:
    return _read_keyed(path, ("name", "clip_id"), ("label", "discrete", "emotion"))[0]


def _read_transcripts(path: Path) -> tuple[dict[str, str], str]:
    return _read_keyed(path, ("name", "clip_id"), ("sentence", "transcript", "text"))


@dataclass(frozen=True)
class _Found:
    """A clip as listed: its id, its file, the name its label and transcript rows use, a manifest label."""

    clip_id: str
    path: Path
    name: str
    given: bool = False  # the id was given in a manifest (not taken from the file name)
    label: str | None = None


def _from_manifest(path: Path) -> list[_Found]:
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
        given = (row.get(id_col) if id_col else "") or ""
        label = (row.get(label_col) or None) if label_col else None
        entries.append(_Found(given, clip, given, True, label) if given else _Found(safe_id(clip.stem), clip, clip.stem, False, label))
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

    if layout == "manifest":
        found = _from_manifest(input_path)
    else:
        root = input_path / MER2023_VIDEO_DIR if layout == "mer2023" else input_path
        if not root.is_dir():
            raise InputError(f"input {root} is not a folder of clips")
        found = [_Found(safe_id(p.stem), p, p.stem) for p in _walk_videos(root, config.extensions)]

    transcripts_file = config.transcripts_file
    if transcripts_file is None and layout == "mer2023":
        transcripts_file = input_path / MER2023_TRANSCRIPTS
    transcripts, transcripts_encoding = _read_transcripts(transcripts_file) if transcripts_file else ({}, None)
    labels = _read_labels(config.labels_file) if config.labels_file else {}

    by_id: dict[str, list[ClipSource | QuarantineRecord]] = defaultdict(list)
    for entry in found:
        clip_id, path = entry.clip_id, str(entry.path)
        problem = id_problem(clip_id) if entry.given else None
        if problem:
            message = f"{path_text(path)}: the clip id {path_text(clip_id)!r} given in {input_path} {problem}; {ID_RULE}"
            by_id[clip_id].append(QuarantineRecord(clip_id, path, IngestStage.name, ErrorKind.INVALID_CLIP_ID, message))
            continue
        # label and transcript files name a clip by its file stem (or by its id, where they differ)
        keys = [k for k in dict.fromkeys((entry.name, clip_id)) if k]
        raw_label = next((labels[k] for k in keys if k in labels), None) or entry.label
        label_src = str(config.labels_file) if any(k in labels for k in keys) else (str(input_path) if raw_label else None)
        try:
            label = normalize_label(raw_label) if raw_label else None
        except UnknownLabelError as exc:
            by_id[clip_id].append(
                QuarantineRecord(clip_id, str(path), IngestStage.name, ErrorKind.UNKNOWN_LABEL, f"{exc} (from {label_src})")
            )
            continue
        sentence = next((transcripts[k] for k in keys if k in transcripts), None)
        by_id[clip_id].append(
            ClipSource(
                clip_id=clip_id,
                source_path=str(path),
                sidecar_transcript=sentence,
                sidecar_source=str(transcripts_file) if sentence is not None else None,
                sidecar_encoding=transcripts_encoding if sentence is not None else None,
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
            message = f"clip id {path_text(clip_id)!r} is used by {len(paths)} files: {', '.join(map(path_text, paths))}"
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
    shown = path_text(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(ErrorKind.NOT_FOUND, f"{shown}: cannot be opened ({exc.strerror})") from exc
    if size == 0:
        raise ClipError(ErrorKind.EMPTY_FILE, f"{shown}: the file is empty (0 bytes)")
    info = run_ffprobe(path)
    streams = info.get("streams", [])
    videos = [s for s in streams if s.get("codec_type") == "video"]
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    chosen = config.video_stream if config.video_stream is not None else next((i for i, s in enumerate(videos) if not _is_cover_art(s)), None)
    if chosen is None:
        raise ClipError(ErrorKind.NO_VIDEO_STREAM, f"{shown}: has no video stream" + (" (only cover art)" if videos else ""))
    if chosen >= len(videos):
        raise ClipError(ErrorKind.NO_VIDEO_STREAM, f"{shown}: has {len(videos)} video streams; ingest.video_stream asks for v:{chosen}")
    video = videos[chosen]
    if audio is None and config.require_audio:
        raise ClipError(ErrorKind.NO_AUDIO_STREAM, f"{shown}: has no audio stream (speech and tone need one)")
    duration = _duration(info, video)
    if duration <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{shown}: the container declares no duration")
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{shown}: the video stream v:{chosen} has no frame size")
    if rotation in (90, 270):
        width, height = height, width
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if fps <= 0:
        raise ClipError(ErrorKind.UNREADABLE_CONTAINER, f"{shown}: the video stream v:{chosen} declares no frame rate")
    return ClipInfo(
        clip_id=source.clip_id,
        source_path=path_text(path),
        source_path_bytes=path_bytes(path),
        fingerprint=sha256_file(path),  # content identity: renames and touches keep the cache
        size_bytes=size,
        duration_s=duration,
        video_duration_s=_stream_duration(video) or duration,
        video_stream=chosen,
        video_streams=len(videos),
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
        sidecar_encoding=source.sidecar_encoding,
        label=source.label,
        label_source=source.label_source,
    )


def _is_cover_art(stream: dict) -> bool:
    return bool((stream.get("disposition") or {}).get("attached_pic"))


def _stream_duration(stream: dict) -> float | None:
    """The stream's own duration: ffprobe's, else Matroska's DURATION tag ("00:00:02.400000000")."""
    try:
        value = float(stream.get("duration") or 0)
    except ValueError:
        value = 0.0
    tag = next((v for k, v in (stream.get("tags") or {}).items() if k.upper() == "DURATION"), None)
    if not value and tag:
        try:
            h, m, s = tag.split(":")
            value = int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            value = 0.0
    return value if value > 0 else None


def _duration(info: dict, video: dict) -> float:
    """The clip's duration: that of the video stream read (audio may outlast it), else the container's."""
    own = _stream_duration(video)
    if own:
        return own
    try:
        value = float((info.get("format") or {}).get("duration") or 0)
    except ValueError:
        return 0.0
    return value if value > 0 else 0.0


class IngestStage(StageDefaults):  # (no models: ffmpeg only)
    """Probe and fingerprint a partition of discovered clips."""

    name = "ingest"
    version = "2"  # 2: safe ids, source_path_bytes, the video stream read (duration, v:N), sidecar_encoding
    config_section = "ingest"
    output_schema = INGEST_SCHEMA

    def __init__(self, config: IngestConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: BuildConfig) -> "IngestStage":
        return cls(config.ingest)

    def run(self, batch: PartitionBatch) -> StageResult[ClipInfo]:
        return map_clips(
            self.name, batch.sources, lambda s: probe(s, self.config), lambda s: (s.clip_id, s.source_path)
        )
