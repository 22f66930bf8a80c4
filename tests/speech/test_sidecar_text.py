"""Sidecar and CSV text: the encoding found (or named), control characters refused, SRT/VTT through their
parsers, the extension matched in either case."""

import re

import pytest

from merr_builder.quarantine import ClipError
from merr_builder.speech.sidecar import find_sidecar, read_sidecar, subtitle_text
from merr_builder.text import TextDecodeError, decode_text


@pytest.mark.parametrize(
    ("text", "written_in", "read_as"),
    [
        ("Hello, café 你好", "utf-8", "utf_8"),
        ("Hello there.\n", "utf-8-sig", "utf_8_sig"),
        ("Hello there.\n", "utf-16", "utf_16"),
        ("Hello there, my name is Anna.\n", "utf-16-le", "utf_16_le"),
        ("Hello there, my name is Anna.\n", "utf-16-be", "utf_16_be"),
        ("你好，我叫安娜。", "gbk", "gb18030"),
        ("今天天气很好，我们去公园散步吧。", "gb18030", "gb18030"),
        ("iPhone手机很好用。", "gbk", "gb18030"),
        ("我真的不想再進去了", "big5", "big5"),
        ("Ça va très bien, merci.\n", "cp1252", "cp1252"),
        ("Grüße aus München, schön!", "cp1252", "cp1252"),
        ("café", "cp1252", "cp1252"),
    ],
)
def test_text_is_read_in_the_encoding_it_was_written_in(text, written_in, read_as):
    decoded = decode_text(text.encode(written_in), "sub.txt")
    assert (decoded.text, decoded.encoding) == (text, read_as)


@pytest.mark.parametrize(("data", "match"), [(b"Hello\x00\x01 there", "U+0000, U+0001"), (b"a bell\x07\n", "U+0007"),
                                             (b"ok \x81\x30\xc0\xc1\xff\x81\xff", "not text in UTF-8 or any of")])  # fmt: skip
def test_control_characters_and_undecodable_bytes_are_refused_naming_the_file(data, match):
    with pytest.raises(TextDecodeError, match=rf"^sub\.txt: .*{re.escape(match)}"):
        decode_text(data, "sub.txt")


def test_a_named_encoding_is_used_as_it_is():
    assert decode_text("谢谢".encode("gbk"), "x.txt", "gb18030").text == "谢谢"  # (as UTF-8 these bytes read "лл")
    with pytest.raises(TextDecodeError, match="not text in utf-8"):
        decode_text(b"\xff\xfe\xfd", "x.txt", "utf-8")


def test_a_malformed_subtitle_is_an_error_not_timing_lines_in_the_transcript():
    with pytest.raises(ClipError, match=r"a\.srt: not a valid SRT file"):
        subtitle_text("1\n00:00:00,000 -> 00:00:02,000\nHello\n\n2\nno timing\n", ".srt", "a.srt")
    with pytest.raises(ClipError, match=r"a\.vtt: not a valid VTT file"):
        subtitle_text("00:00.000 --> 00:02.000\nHello\n", ".vtt", "a.vtt")  # no WEBVTT header


def test_sidecars_are_found_in_either_case_and_refused_when_too_large(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "clip.SRT").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    found = find_sidecar(str(tmp_path / "clip.mp4"))
    assert found == tmp_path / "clip.SRT" and read_sidecar(found, 1000).text == "Hi"
    with pytest.raises(ClipError, match=r"clip\.SRT: 35 bytes, more than the 10 a transcript may have \(speech\.sidecar_max_bytes\)"):
        read_sidecar(found, 10)
