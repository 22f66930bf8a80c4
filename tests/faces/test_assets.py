from pathlib import Path

import pytest

from merr_builder.assets import FACE_DETECTOR_FULL_RANGE, FACE_LANDMARKER, AssetError, locate
from merr_builder.faces.mediapipe import MediaPipeExtractor
from merr_builder.quarantine import ClipError


def test_the_pinned_models_are_found_and_verified():
    assert locate(FACE_LANDMARKER).name == "face_landmarker.task"
    assert locate(FACE_DETECTOR_FULL_RANGE).name == "face_detection_full_range_sparse.tflite"


def test_a_wrong_hash_is_refused(tmp_path: Path):
    fake = tmp_path / "face_landmarker.task"
    fake.write_bytes(b"not the model")
    with pytest.raises(AssetError, match="not the pinned") as err:
        locate(FACE_LANDMARKER, fake)
    assert str(fake) in str(err.value)


def test_a_missing_file_says_where_it_looked_and_what_to_install(tmp_path: Path, monkeypatch):
    # Only the lookup's environment is changed; the asset code under test runs as is.
    monkeypatch.setenv("MERR_FACE_DETECTOR", str(tmp_path / "absent.tflite"))
    with pytest.raises(AssetError) as err:
        locate(FACE_DETECTOR_FULL_RANGE)
    message = str(err.value)
    assert "absent.tflite" in message and "scripts/install.sh" in message and "MERR_FACE_DETECTOR" in message


def test_an_unreadable_frame_is_a_clear_error():
    import numpy as np

    extractor = MediaPipeExtractor()
    with pytest.raises(ClipError, match="unreadable frame"):
        extractor.faces_in(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ClipError, match="unreadable frame"):
        extractor.faces_in(np.zeros((10, 10, 3), dtype=np.float32))
