"""Decoding text files users hand us (transcripts, labels, manifests, subtitles).

Chinese corpora often ship GB18030/GBK files; anything that decodes as none of the accepted encodings is
a clear error naming the file rather than mojibake in the dataset.
"""

from __future__ import annotations

from pathlib import Path

# Tried in order. UTF-8 first (with and without BOM); GB18030 is a superset of GBK and GB2312.
TEXT_ENCODINGS: tuple[str, ...] = ("utf-8-sig", "gb18030")


class TextDecodeError(ValueError):
    """A text file in none of the accepted encodings."""


def decode_text(data: bytes, path: str | Path) -> str:
    for encoding in TEXT_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise TextDecodeError(f"{path}: not text in any of {', '.join(TEXT_ENCODINGS)}; re-save it as UTF-8")
