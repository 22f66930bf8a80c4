"""The peak is an expression: blinks play no part, a one-frame landmark spike cannot win, a held one does.

The clips are made here with ffmpeg from real frames of one person (WolfgangLanger_Pexels.mp4): the calmest
and the most expressive of a few frames the extractor itself scored.
"""

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from merr_builder.config import BuildConfig
from merr_builder.faces.peak import au_weights, best_positions, frame_scores, held_scores, hold_frames
from merr_builder.faces.stage import FaceAnalyser
from merr_builder.facs import AU_NAMES
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import iter_frames_between

FPS = 25
SECONDS = 2.4
EXPRESSION_AT = 25  # frame 25 = 1.0 s, a frame the 5 fps sampling analyses


def test_blinks_play_no_part_in_the_peak_by_default():
    config = BuildConfig().faces
    series = np.zeros((4, len(AU_NAMES)))
    series[1, AU_NAMES.index("AU45")] = 5.0  # a full blink
    series[2, AU_NAMES.index("AU12")] = 1.5  # a slight smile
    weights = au_weights(series, config.peak_method, config.most_frequent_k, config.exclude_aus)
    assert weights[AU_NAMES.index("AU45")] == 0
    assert best_positions(frame_scores(series, weights), 1) == [2]


def test_a_held_score_is_the_lowest_over_the_window():
    assert hold_frames(30, 0.1) == 1 and hold_frames(25, 0.1) == 1 and hold_frames(120, 0.1) == 6 and hold_frames(30, 0) == 0
    held = held_scores([10, 11, 12, 13, 14, 20], [1.0, 9.0, 1.0, 5.0, 5.0, 7.0], 1)
    assert held[1] == 1.0  # the spike at 11 holds nothing
    assert held[4] == 5.0 and held[5] == 7.0  # no neighbour known: its own score
    assert np.isnan(held_scores([1, 2], [3.0, float("nan")], 1)[0])  # the face lost next to it


@pytest.fixture(scope="module")
def analyser():
    config = BuildConfig()
    return FaceAnalyser(config.faces, config.media)  # the default backend


@pytest.fixture(scope="module")
def calm_and_strong(shared_data, analyser) -> tuple[np.ndarray, np.ndarray]:
    source = shared_data / "WolfgangLanger_Pexels.mp4"
    clip = probe(ClipSource(source.stem, str(source)), BuildConfig().ingest)
    weights = au_weights(np.zeros((1, len(AU_NAMES))), "sum", 3, ("AU45",))
    scored = []
    for t in np.arange(0.5, 19.0, 1.5):
        frame = list(iter_frames_between(clip, t, t + 0.02))[0]
        faces = analyser.extractor.faces_in(frame.rgb)
        if len(faces) == 1:
            scored.append((float(faces[0].aus @ weights), frame.rgb))
    scored.sort(key=lambda item: item[0])
    assert scored[-1][0] > scored[0][0] + 3.0  # the two differ clearly
    return scored[0][1], scored[-1][1]


def _clip_of(frames: list[np.ndarray], path: Path):
    folder = path.with_suffix("")
    folder.mkdir()
    for i, rgb in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-framerate", str(FPS), "-i", str(folder / "%04d.png"),
         "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-shortest", "-vf", "scale=trunc(iw/4)*2:trunc(ih/4)*2",
         "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)],
        check=True,
    )  # fmt: skip
    return probe(ClipSource(path.stem, str(path)), BuildConfig().ingest)


def test_a_one_frame_spike_does_not_win_but_the_same_expression_held_does(analyser, calm_and_strong, tmp_path):
    calm, strong = calm_and_strong
    n = int(SECONDS * FPS)
    spike = [strong if i == EXPRESSION_AT else calm for i in range(n)]
    held = [strong if EXPRESSION_AT <= i < EXPRESSION_AT + FPS // 2 else calm for i in range(n)]

    spiked = analyser.analyse(_clip_of(spike, tmp_path / "spike.mp4"), None)
    assert spiked["peak_frame_index"] != EXPRESSION_AT

    kept = analyser.analyse(_clip_of(held, tmp_path / "held.mp4"), None)
    assert EXPRESSION_AT <= kept["peak_frame_index"] < EXPRESSION_AT + FPS // 2
    assert kept["pseudo_label"] != "neutral" and kept["au_match"]
