"""The clip id grammar (merr_builder/names.py) at ingest: ids from file names are mapped to safe ones,
ids a manifest gives outside it quarantine their clip, and a manifest line with extra fields is a clear
input error."""

import os

import pytest

from merr_builder.config import IngestConfig
from merr_builder.ingest import InputError, discover
from merr_builder.names import ID_MAX_CHARS, id_problem, is_valid_id, path_text, safe_id


@pytest.mark.parametrize("name", ["sample_00000727", "samplenew_00061200", "Wolfgang_Langer-Pexels.v2", "微笑的人_01", "café", "_x", "a+b"])
def test_ordinary_names_are_ids_as_they_are(name):
    assert is_valid_id(name) and safe_id(name) == name


@pytest.mark.parametrize("name", ["a b", "tab\there", "new\nline", "emoji😀", "../../escape_me", "a/b", "a\\b", ".hidden", "-opt",
                                  "", "e\u0301", os.fsdecode(b"caf\xe9"), "x" * (ID_MAX_CHARS + 1), "comma,id", 'quote"id'])  # fmt: skip
def test_hostile_names_are_mapped_to_valid_distinct_ids(name):
    assert id_problem(name) is not None
    mapped = safe_id(name)
    assert is_valid_id(mapped) and mapped == safe_id(name)  # deterministic
    assert safe_id(name + " ") != mapped  # the hash of the name's bytes keeps names apart
    assert not any(c in mapped for c in "/\\ \t\n,\"")


def test_names_that_are_not_utf8_are_written_with_their_bytes_escaped():
    name = os.fsdecode(b"/data/caf\xe9.mp4")
    assert path_text(name) == "/data/caf\\xe9.mp4" and path_text("/data/café.mp4") == "/data/café.mp4"


def test_manifest_ids_outside_the_grammar_are_quarantined_and_file_stems_mapped(tmp_path):
    for name in ("ok.mp4", "two words.mp4", "escape.mp4"):
        (tmp_path / name).write_bytes(b"not probed here")
    manifest = tmp_path / "clips.csv"
    manifest.write_text('path,clip_id\nok.mp4,good_id\nescape.mp4,../../../../escape_me\nok.mp4,"new\nline"\ntwo words.mp4,\n')
    found = discover(manifest, IngestConfig())
    assert sorted(c.clip_id for c in found.clips) == ["good_id", safe_id("two words")]
    rejected = {r.clip_id: r for r in found.rejected}
    assert set(rejected) == {"../../../../escape_me", "new\nline"}
    for record in rejected.values():
        assert record.error_kind == "invalid_clip_id" and str(manifest) in record.message and "a clip id holds only" in record.message
    assert "holds '/'" in rejected["../../../../escape_me"].message and "U+000A" in rejected["new\nline"].message


def test_labels_and_transcripts_are_joined_by_the_file_name_of_a_mapped_id(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "two words.mp4").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("name,label\ntwo words,happy\n")
    found = discover(tmp_path / "clips", IngestConfig(labels_file=tmp_path / "labels.csv"))
    assert [(c.clip_id, c.label) for c in found.clips] == [(safe_id("two words"), "happy")]


def test_a_manifest_line_with_extra_fields_is_an_input_error_naming_the_line(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("path,label\na.mp4,happy\na.mp4,happy,but, unquoted\n")
    with pytest.raises(InputError, match=r"clips.csv, line 3: 4 fields where the header has 2"):
        discover(manifest, IngestConfig())
