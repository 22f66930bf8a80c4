"""Decoding text files users hand us (transcripts, labels, manifests, subtitles).

UTF-8 is read as it is; a byte-order mark names UTF-8, UTF-16 or UTF-32. Anything else is given to
charset-normalizer, limited to the encodings such corpora ship in (Chinese corpora often come as
GB18030/GBK or Big5, Western ones as Windows-1252, Windows tools write UTF-16 without a mark). A short
text often reads equally well in several: then the reading that glues fewer CJK characters to Latin
letters wins ("Ça va très" read as GB18030 is "莂 va tr鑣"), then the earlier in FALLBACK_ENCODINGS.
Where a corpus is known to be in one encoding, naming it (`encoding=`) skips the guess. Text that still holds control
characters (NUL, …) is no text: the error names the file and the cause instead of garbage in the dataset.
The encoding found is returned, so rows can record it.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

from merr_builder.names import path_text

FALLBACK_ENCODINGS: tuple[str, ...] = ("gb18030", "big5", "cp1252", "utf_16_le", "utf_16_be")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf_32"), (codecs.BOM_UTF32_BE, "utf_32"),  # before UTF-16: the same first two bytes
    (codecs.BOM_UTF8, "utf_8_sig"), (codecs.BOM_UTF16_LE, "utf_16"), (codecs.BOM_UTF16_BE, "utf_16"),
)  # fmt: skip
_ALLOWED_CONTROLS = {"\t", "\n", "\r"}


class TextDecodeError(ValueError):
    """A text file in none of the accepted encodings, or holding control characters."""


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # Python's codec name: utf_8, utf_8_sig, gb18030, …


def decode_text(data: bytes, path: str | Path, encoding: str | None = None) -> DecodedText:
    """The text of a file's bytes, in `encoding` when given (else the one found), checked."""
    encoding = encoding or _encoding(data, path)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:  # (a named encoding, or one a byte-order mark named, that the bytes break)
        raise TextDecodeError(f"{path_text(path)}: not text in {encoding} (byte {exc.start}: {exc.reason})") from None
    controls = sorted({c for c in text if (ord(c) < 32 or 127 <= ord(c) < 160) and c not in _ALLOWED_CONTROLS})
    if controls:
        line = next(i for i, row in enumerate(text.splitlines() or [text], 1) if any(c in row for c in controls))
        named = ", ".join(f"U+{ord(c):04X}" for c in controls[:5])
        raise TextDecodeError(f"{path_text(path)}: holds control characters ({named}; first on line {line}) read as {encoding}: "
                              "not a text file, or in an encoding not recognised; re-save it as UTF-8")  # fmt: skip
    return DecodedText(text.replace("\r\n", "\n"), encoding)


def _encoding(data: bytes, path: str | Path) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if b"\x00" not in data:  # (UTF-8 allows NUL; text with NULs is UTF-16 or not text)
        try:
            data.decode("utf_8")
            return "utf_8"
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    # UTF-16 without a mark reads almost any even number of bytes: it is believed only where some bytes are
    # NUL (Latin text in UTF-16); other UTF-16 needs its mark, or the encoding named
    wanted = [e for e in FALLBACK_ENCODINGS if b"\x00" in data or not e.startswith("utf_16")]
    matches = from_bytes(data, cp_isolation=wanted)
    ranked = sorted(matches, key=lambda m: (round(m.chaos, 3), _cjk_glued_to_latin(str(m)), _rank(m.encoding)))
    if ranked:
        return ranked[0].encoding
    if _decodes(data, "utf_8"):
        return "utf_8"  # with NULs: refused for its control characters, which says more
    raise TextDecodeError(f"{path_text(path)}: not text in UTF-8 or any of {', '.join(FALLBACK_ENCODINGS)}; re-save it as UTF-8")


def _cjk_glued_to_latin(text: str) -> int:
    """How many CJK characters touch an ASCII letter: rare in real text, common in a misread."""
    cjk = [0x2E80 <= ord(c) <= 0x9FFF or 0xAC00 <= ord(c) <= 0xD7AF or 0xF900 <= ord(c) <= 0xFAFF for c in text]
    latin = [c.isascii() and c.isalpha() for c in text]
    return sum(1 for i, is_cjk in enumerate(cjk) if is_cjk and ((i > 0 and latin[i - 1]) or (i + 1 < len(text) and latin[i + 1])))


def _rank(encoding: str) -> int:
    name = codecs.lookup(encoding).name.replace("-", "_")
    normalised = [codecs.lookup(e).name.replace("-", "_") for e in FALLBACK_ENCODINGS]
    return normalised.index(name) if name in normalised else len(normalised)


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True
