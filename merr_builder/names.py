"""Clip ids and file names: the one grammar a clip id follows, and how names outside it are carried.

A clip id is written into file names (`video/<id>.mp4`, `<folder>/<id>.npy`), into space-separated
`name frames label` lines, into CSV cells and JSON keys. It carries unchanged through all of them when it
holds only letters and digits (of any script), `_`, `-`, `.` and `+`, starts with a letter, digit or `_`
(never `.` or `-`: a hidden file, a command-line option), is in Unicode normal form C (the form a name
is compared in) and is at most ID_MAX_CHARS characters (file names stay far under 255 bytes).

- An id taken from a file stem outside the grammar is mapped to a safe id, deterministically: the
  characters outside it become `_`, and a hash of the original name's bytes is appended so that two
  names never map to one id. The row keeps the original name in `source_path`.
- An id given in a manifest outside the grammar quarantines the clip with the reason: the user chose
  it, so it is not silently changed.
- A file name that is not valid UTF-8 (Python holds it with lone surrogates) is opened as found and
  recorded in text as `path_text` writes it: the undecodable bytes as `\\xNN`.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

ID_MAX_CHARS = 128
ID_RULE = (f"a clip id holds only letters, digits, '_', '-', '.' and '+', starts with a letter, digit or '_' "
           f"and has at most {ID_MAX_CHARS} characters")  # fmt: skip
_ID_CHARS = r"\w.+-"  # \w: letters and digits of every script, and `_`
_VALID_ID = re.compile(rf"\w[{_ID_CHARS}]*")  # first: a letter, digit or `_`
_OUTSIDE = re.compile(rf"[^{_ID_CHARS}]+")
_HASH_CHARS = 8
_STEM_CHARS = ID_MAX_CHARS - _HASH_CHARS - 1


def id_problem(clip_id: str) -> str | None:
    """Why `clip_id` is outside the grammar (a phrase for a message), or None when it is a valid id."""
    if not clip_id:
        return "is empty"
    if path_text(clip_id) != clip_id:
        return "is not valid UTF-8"
    if len(clip_id) > ID_MAX_CHARS:
        return f"is longer than {ID_MAX_CHARS} characters"
    if unicodedata.normalize("NFC", clip_id) != clip_id:
        return "is not in Unicode normal form C"
    if _VALID_ID.fullmatch(clip_id) is None:
        odd = sorted({c for c in clip_id if _OUTSIDE.fullmatch(c)})
        if odd:
            return "holds " + ", ".join(repr(c) if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in odd)
        return "starts with '.' or '-'"
    return None


def is_valid_id(clip_id: str) -> bool:
    return id_problem(clip_id) is None


def safe_id(name: str) -> str:
    """`name` itself when it is a valid id; else the same name with every run of characters outside the
    grammar replaced by `_` and `-<hash of the name's bytes>` appended."""
    if is_valid_id(name):
        return name
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:_HASH_CHARS]
    text = unicodedata.normalize("NFC", os.fsencode(name).decode("utf-8", "replace"))  # undecodable bytes: U+FFFD
    stem = _OUTSIDE.sub("_", text).lstrip(".-+")[:_STEM_CHARS].rstrip("_")
    return f"{stem}-{digest}" if stem else f"clip-{digest}"


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def path_text(path: str | os.PathLike) -> str:
    """A path (or any text from the file system) as text every format can hold: unchanged when valid
    UTF-8, else with each byte that does not decode written `\\xNN`."""
    text = os.fspath(path)
    if _is_utf8(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def path_bytes(path: str | os.PathLike) -> bytes | None:
    """The raw bytes of a path whose name is not valid UTF-8 (kept beside `path_text` so the file can be
    opened again); None for every other path."""
    text = os.fspath(path)
    return None if _is_utf8(text) else os.fsencode(text)


def openable(text: str, raw: bytes | None) -> str:
    """The path to open, from its stored text and raw bytes (`path_text`, `path_bytes`)."""
    return os.fsdecode(raw) if raw else text
