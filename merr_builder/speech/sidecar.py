"""Sidecar transcripts: a `.srt`, `.vtt` or `.txt` file beside a clip (same stem, the extension in lower
or upper case), or a CSV row joined at ingest (MER2023's `transcription_en_all.csv`).

A sidecar is checked before it is believed: at most `speech.sidecar_max_bytes`, text in an encoding
`merr_builder.text` recognises (the one found is recorded) without control characters, and an SRT or
WebVTT file that its format's parser (`srt`, `webvtt-py`) reads; only the cues' words are kept. A sidecar
that fails a check is this clip's error, naming the file and the cause (never timing lines or garbage in
a transcript).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from merr_builder.names import path_text
from merr_builder.quarantine import ClipError, ErrorKind
from merr_builder.text import TextDecodeError, decode_text

SIDECAR_EXTENSIONS = (".srt", ".vtt", ".txt")  # in this order of preference
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")  # HTML-like styling (<i>, <font …>) and ASS overrides ({\an8})


@dataclass(frozen=True)
class Sidecar:
    text: str
    source: str  # file path
    encoding: str | None = None  # the encoding the file was read in


def subtitle_text(raw: str, suffix: str, path: Path | str = "") -> str:
    """The spoken text of an SRT/VTT/plain file: the cues' words, styling removed, in one line."""
    if suffix == ".txt":
        return " ".join(line.strip() for line in raw.splitlines() if line.strip())
    try:
        if suffix == ".srt":
            import srt

            cues = [cue.content for cue in srt.parse(raw)]
        else:
            import webvtt

            cues = [cue.text for cue in webvtt.from_buffer(io.StringIO(raw))]
    except Exception as exc:  # srt.SRTParseError, webvtt.MalformedFileError, … : each parser's own
        raise ClipError(ErrorKind.UNREADABLE_SIDECAR, f"{path_text(path)}: not a valid {suffix[1:].upper()} file ({_first_line(exc)})") from None
    lines = (_TAGS.sub("", line).strip() for cue in cues for line in cue.splitlines())
    return " ".join(line for line in lines if line)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0][:200] if text else type(exc).__name__) or type(exc).__name__


def find_sidecar(source_path: str) -> Path | None:
    """The sidecar beside a clip: the same stem, one of SIDECAR_EXTENSIONS in lower or upper case (`.SRT`
    from a Windows tool). (Looked up by name, not by listing the folder: a folder holds thousands of clips.)"""
    clip = Path(source_path)
    for suffix in SIDECAR_EXTENSIONS:
        for written in (suffix, suffix.upper()):
            candidate = clip.with_name(clip.stem + written)
            if candidate.is_file():
                return candidate
    return None


def read_sidecar(path: Path, max_bytes: int, encoding: str | None = None) -> Sidecar:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ClipError(ErrorKind.UNREADABLE_SIDECAR, f"{path_text(path)}: {size:,} bytes, more than the {max_bytes:,} a "
                            "transcript may have (speech.sidecar_max_bytes): not this clip's subtitles?")  # fmt: skip
        decoded = decode_text(path.read_bytes(), path, encoding)
    except TextDecodeError as exc:
        raise ClipError(ErrorKind.UNREADABLE_SIDECAR, str(exc)) from exc
    except OSError as exc:
        raise ClipError(ErrorKind.UNREADABLE_SIDECAR, f"{path_text(path)}: cannot be read ({exc.strerror})") from exc
    return Sidecar(subtitle_text(decoded.text, path.suffix.lower(), path), path_text(path), decoded.encoding)
