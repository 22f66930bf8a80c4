"""Sidecar transcripts: a `.srt`, `.vtt` or `.txt` file beside a clip (same stem), or a CSV row joined at
ingest (MER2023's `transcription_en_all.csv`). Text files may be UTF-8 (with or without BOM) or
GB18030/GBK; anything else is a per-clip error naming the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from merr_builder.quarantine import ClipError, ErrorKind
from merr_builder.text import TextDecodeError, decode_text

SIDECAR_EXTENSIONS = (".srt", ".vtt", ".txt")

_TIMING = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2})?[.,]\d{1,3}\s*-->")
_CUE_NUMBER = re.compile(r"^\s*\d+\s*$")
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Sidecar:
    text: str
    source: str  # file path


def subtitle_text(raw: str, suffix: str) -> str:
    """The spoken text of an SRT/VTT/plain file: headers, cue ids, timings and tags removed."""
    if suffix == ".txt":
        return " ".join(line.strip() for line in raw.splitlines() if line.strip())
    texts = []
    for block in re.split(r"\n\s*\n", raw.replace("\r\n", "\n").strip()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if not lines or lines[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            continue
        timing = next((i for i, line in enumerate(lines) if _TIMING.match(line)), None)
        body = lines[timing + 1 :] if timing is not None else [ln for ln in lines if not _CUE_NUMBER.match(ln)]
        texts += [t for t in (_TAGS.sub("", line).strip() for line in body) if t]
    return " ".join(texts)


def find_sidecar(source_path: str) -> Path | None:
    clip = Path(source_path)
    for suffix in SIDECAR_EXTENSIONS:
        candidate = clip.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> Sidecar:
    try:
        raw = decode_text(path.read_bytes(), path)
    except TextDecodeError as exc:
        raise ClipError(ErrorKind.UNREADABLE_SIDECAR, str(exc)) from exc
    except OSError as exc:
        raise ClipError(ErrorKind.UNREADABLE_SIDECAR, f"{path}: cannot be read ({exc.strerror})") from exc
    return Sidecar(subtitle_text(raw, path.suffix.lower()), str(path))
