import hashlib
import os
import shutil
from pathlib import Path

import cv2
import pandas as pd
import pytest

from merr_builder.config import IngestConfig, load_config
from merr_builder.ingest import ClipSource, InputError, discover, probe
from merr_builder.quarantine import ClipError, ErrorKind

# What each sample clip is (shared/data/PROVENANCE.md and the stream headers):
# width, height, fps, duration_s (of the video stream: the container's may be longer, its audio outlasting it), video codec, audio codec
SAMPLES = {
    "WolfgangLanger_Pexels.mp4": (640, 360, 23.976, 19.685, "h264", "aac"),
    "single_face.mp4": (640, 360, 30.0, 2.4, "h264", "mp3"),
    "no_face.mp4": (960, 540, 23.67, 3.945, "h264", "aac"),
    "face_noface.mov": (960, 540, 26.40, 6.40, "hevc", "aac"),
    "noface_face.mov": (960, 540, 26.49, 6.38, "hevc", "aac"),
    "mer2023_sample/video/sample_00000338.mp4": (672, 378, 25.0, 4.56, "h264", "aac"),
    "mer2023_sample/video/sample_00000669.mp4": (720, 404, 25.0, 7.44, "h264", "aac"),
    "mer2023_sample/video/sample_00000727.mp4": (856, 480, 24.0, 10.708, "h264", "aac"),
    "mer2023_sample/video/samplenew_00061200.mp4": (1920, 808, 25.0, 2.4, "h264", "aac"),
}


def _source(path: Path) -> ClipSource:
    return ClipSource(clip_id=path.stem, source_path=str(path))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_sample_clip_is_probed_correctly(shared_data: Path, name: str):
    path = shared_data / name
    width, height, fps, duration, vcodec, acodec = SAMPLES[name]
    info = probe(_source(path), IngestConfig())
    assert (info.width, info.height) == (width, height)
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.duration_s == pytest.approx(duration, abs=0.01)
    assert (info.video_codec, info.audio_codec, info.has_audio) == (vcodec, acodec, True)
    assert info.rotation == 0
    # Independent checks: OpenCV's decoder agrees on the frame size; the fingerprint is the file's sha256.
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[:2] == (height, width)
    assert info.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()


def test_rotation_metadata_swaps_the_displayed_size(clips):
    info = probe(_source(clips.rotated_90), IngestConfig())
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (360, 640)


@pytest.mark.parametrize(
    ("fixture", "kind", "says"),
    [
        ("zero_bytes", ErrorKind.EMPTY_FILE, "empty"),
        ("text_as_mp4", ErrorKind.UNREADABLE_CONTAINER, "holds text, not video"),
        ("truncated", ErrorKind.UNREADABLE_CONTAINER, "truncated"),
        ("no_audio", ErrorKind.NO_AUDIO_STREAM, "no audio stream"),
    ],
)
def test_bad_files_raise_a_reason_naming_the_file(clips, fixture, kind, says):
    path = getattr(clips, fixture)
    with pytest.raises(ClipError) as err:
        probe(_source(path), IngestConfig())
    assert err.value.kind == kind
    assert str(path) in err.value.message and says in err.value.message


def test_no_audio_is_accepted_when_not_required(clips):
    info = probe(_source(clips.no_audio), IngestConfig(require_audio=False))
    assert info.has_audio is False and info.audio_codec is None


def test_mer2023_layout_joins_transcripts(mer2023_sample: Path):
    discovery = discover(mer2023_sample, IngestConfig())
    assert discovery.layout == "mer2023"
    expected = pd.read_csv(mer2023_sample / "transcription_en_all.csv").set_index("name")["sentence"].to_dict()
    assert {c.clip_id: c.sidecar_transcript for c in discovery.clips} == expected
    assert all(c.sidecar_source.endswith("transcription_en_all.csv") for c in discovery.clips)


def test_mer2023_label_file_is_normalised(mer2023_sample: Path, tmp_path: Path):
    labels = tmp_path / "labels.csv"
    labels.write_text("name,discrete\nsample_00000338,Worried\nsample_00000669,ANG\nsample_00000727,sad\n")
    discovery = discover(mer2023_sample, load_config(None, [f"ingest.labels_file={labels}"]).ingest)
    got = {c.clip_id: c.label for c in discovery.clips}
    assert got == {"sample_00000338": "worried", "sample_00000669": "angry", "sample_00000727": "sad",
                   "samplenew_00061200": None}  # fmt: skip


def test_gbk_encoded_transcripts_are_read(mer2023_sample: Path, tmp_path: Path):
    sidecar = tmp_path / "zh.csv"
    sidecar.write_bytes("name,sentence\nsample_00000338,我的手机和钱包都在包里\n".encode("gbk"))
    discovery = discover(mer2023_sample, IngestConfig(transcripts_file=sidecar))
    by_id = {c.clip_id: c.sidecar_transcript for c in discovery.clips}
    assert by_id["sample_00000338"] == "我的手机和钱包都在包里"


def test_duplicate_clip_ids_are_rejected_naming_both_paths(shared_data: Path, tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(shared_data / "single_face.mp4", tmp_path / "a" / "clip.mp4")
    shutil.copy(shared_data / "no_face.mp4", tmp_path / "b" / "clip.mp4")
    shutil.copy(shared_data / "single_face.mp4", tmp_path / "b" / "other.mp4")
    discovery = discover(tmp_path, IngestConfig())
    assert [c.clip_id for c in discovery.clips] == ["other"]
    assert len(discovery.rejected) == 2
    for record in discovery.rejected:
        assert record.error_kind == ErrorKind.DUPLICATE_CLIP_ID
        assert str(tmp_path / "a" / "clip.mp4") in record.message
        assert str(tmp_path / "b" / "clip.mp4") in record.message


def test_manifest_csv_with_ids_labels_and_relative_paths(shared_data: Path, tmp_path: Path):
    os.symlink(shared_data / "single_face.mp4", tmp_path / "smile.mp4")
    manifest = tmp_path / "clips.csv"
    manifest.write_text(
        f"path,clip_id,label\nsmile.mp4,c1,happy\n{shared_data / 'no_face.mp4'},,\n"
        f"{shared_data / 'face_noface.mov'},c3,bored\n"
    )
    discovery = discover(manifest, IngestConfig())
    assert discovery.layout == "manifest"
    assert [(c.clip_id, c.label) for c in discovery.clips] == [("c1", "happy"), ("no_face", None)]
    assert discovery.clips[0].source_path == str(tmp_path / "smile.mp4")
    [rejected] = discovery.rejected
    assert rejected.clip_id == "c3" and rejected.error_kind == ErrorKind.UNKNOWN_LABEL and "bored" in rejected.message


def test_a_symlink_loop_in_the_input_folder_ends(shared_data: Path, tmp_path: Path):
    shutil.copy(shared_data / "single_face.mp4", tmp_path / "one.mp4")
    os.symlink(tmp_path, tmp_path / "loop")
    discovery = discover(tmp_path, IngestConfig())
    assert [c.clip_id for c in discovery.clips] == ["one"]


def test_missing_input_and_bad_manifest_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match="does not exist"):
        discover(tmp_path / "nope", IngestConfig())
    manifest = tmp_path / "m.csv"
    manifest.write_text("file\nx.mp4\n")
    with pytest.raises(InputError, match="needs a column named path"):
        discover(manifest, IngestConfig())
