"""Long clips in windows: cuts at quiet points and averaged functionals (the joined transcript: test_asr)."""

import itertools

import numpy as np
import pytest

from merr_builder.media import AUDIO_SAMPLE_RATE as SR
from merr_builder.media import ClipAudio, decode_audio
from merr_builder.speech.tone import egemaps
from merr_builder.speech.windows import WindowedMean, audio_windows, window_bounds


def test_windows_cover_the_audio_and_cut_in_the_quiet():
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.3, 150 * SR).astype(np.float32)  # loud everywhere …
    for quiet_s in (57.0, 116.5):  # … but for two 200 ms gaps within 5 s of each 60 s limit
        audio[int(quiet_s * SR) : int((quiet_s + 0.2) * SR)] = 0.0
    bounds = window_bounds(audio, SR, 60.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(audio)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous
    assert all(0 < end - start <= 60 * SR for start, end in bounds)
    cuts = [end / SR for _, end in bounds[:-1]]
    assert len(cuts) == 2 and 57.0 <= cuts[0] <= 57.2 and 116.5 <= cuts[1] <= 116.7
    assert window_bounds(audio[: 30 * SR], SR, 60.0) == [(0, 30 * SR)]


def test_functionals_of_one_window_are_the_clips_own_and_longer_clips_average(clips):
    audio = decode_audio(str(clips.speech["speech_en_happy"]))

    def values(a, sr):
        return egemaps(a, sr)[0]

    def windowed(samples, window_s):
        mean = WindowedMean(values, SR)
        for _, window in audio_windows([samples], SR, window_s):
            mean.add(window)
        return mean.result()

    assert windowed(audio, 60.0) == values(audio, SR)
    doubled = np.concatenate([audio, np.zeros(len(audio), dtype=np.float32), audio])
    window_s = len(audio) / SR * 1.2
    bounds = window_bounds(doubled, SR, window_s)
    assert len(bounds) >= 2
    expected = sum((b - a) * np.array(values(doubled[a:b], SR)) for a, b in bounds) / len(doubled)
    assert windowed(doubled, window_s) == pytest.approx(expected.tolist())


def test_windows_from_a_stream_of_blocks_are_those_of_the_whole(clips):
    audio = ClipAudio(str(clips.speech["speech_en_calm"]))
    whole = decode_audio(audio.path)
    streamed = list(audio_windows(audio.blocks(block_s=0.7), SR, 2.0))
    assert [(o, o + len(w)) for o, w in streamed] == window_bounds(whole, SR, 2.0)
    np.testing.assert_array_equal(np.concatenate([w for _, w in streamed]), whole)
    assert [(o, len(w)) for o, w in audio_windows([], SR)] == [(0, 0)]  # no audio: one empty window
