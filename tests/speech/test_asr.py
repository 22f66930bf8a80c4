"""ASR on real speech: espeak-ng sentences muxed onto the sample clips, and the MER2023 clips."""

import re

import numpy as np
import pytest

from merr_builder.media import AUDIO_SAMPLE_RATE, decode_audio
from merr_builder.speech.faster_whisper import FasterWhisperASR
from merr_builder.speech.windows import WindowedTranscript, audio_windows, window_bounds
from merr_builder.speech.flags import LOW_LANGUAGE_PROBABILITY, REPETITION, _repeats

MER_CLIPS = ["sample_00000338", "sample_00000669", "sample_00000727", "samplenew_00061200"]


@pytest.fixture(scope="module")
def asr():
    return FasterWhisperASR()


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("’", "'")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


@pytest.mark.parametrize("name", ["speech_en_happy", "speech_en_angry", "speech_en_calm"])
def test_english_speech_is_transcribed_with_low_word_error(asr, clips, name):
    transcript = asr.transcribe(decode_audio(str(clips.speech[name])), None, "transcribe")
    reference = clips.texts[name][1]
    wer = word_error_rate(reference, transcript.text)
    assert transcript.language == "en"
    assert wer <= 0.2, f"WER {wer:.2f}: {transcript.text!r} vs {reference!r}"
    assert transcript.words and all(w.start <= w.end for w in transcript.words)


def test_mandarin_speech_is_detected_as_chinese(asr, clips):
    transcript = asr.transcribe(decode_audio(str(clips.speech["speech_zh_sad"])), None, "transcribe")
    assert transcript.language == "zh" and transcript.language_probability > 0.8
    assert re.search(r"[\u4e00-\u9fff]", transcript.text)


def test_mer2023_clips_are_chinese_with_the_language_forced(asr, mer2023_sample):
    for name in MER_CLIPS:
        transcript = asr.transcribe(decode_audio(str(mer2023_sample / "video" / f"{name}.mp4")), "zh", "transcribe")
        assert transcript.language == "zh" and re.search(r"[\u4e00-\u9fff]", transcript.text), name


def test_a_wrong_language_guess_is_flagged(asr, mer2023_sample):
    # Whisper base hears this Mandarin clip as Korean with low confidence when left to detect.
    transcript = asr.transcribe(decode_audio(str(mer2023_sample / "video" / "sample_00000727.mp4")), None, "transcribe")
    assert transcript.language != "zh"
    assert LOW_LANGUAGE_PROBABILITY in transcript.flags


def test_translation_gives_english_close_to_the_subtitles(asr, mer2023_sample):
    import pandas as pd

    subtitles = pd.read_csv(mer2023_sample / "transcription_en_all.csv").set_index("name")["sentence"]
    for name in ("sample_00000338", "sample_00000669"):
        transcript = asr.transcribe(decode_audio(str(mer2023_sample / "video" / f"{name}.mp4")), "zh", "translate")
        assert transcript.task == "translate" and transcript.text.isascii()
        shared = set(words(transcript.text)) & set(words(subtitles[name])) - {"a", "the", "is", "are", "to", "i", "my", "in"}
        assert len(shared) >= 2, (transcript.text, subtitles[name])  # e.g. phone, wallet, bag


def test_a_sine_tone_and_silence_give_no_text(asr, clips):
    tone = decode_audio(str(clips.good_synthetic))
    assert asr.transcribe(tone, None, "transcribe").text == ""
    silence = np.zeros(3 * AUDIO_SAMPLE_RATE, dtype=np.float32)
    transcript = asr.transcribe(silence, None, "transcribe")
    assert transcript.text == "" and REPETITION not in transcript.flags


def test_repetition_detection():
    assert _repeats("哈哈啊啊啊啊啊啊啊啊啊") and _repeats("you, you, you, you, I said")
    assert _repeats("I don't want to die. I don't want to die. I don't want to die.")
    assert not _repeats("今天天天气很好") and not _repeats("") and not _repeats("hello hello world")


class _CountingEncoder:
    """Wraps the CTranslate2 Whisper model and counts encoder passes; everything else goes through."""

    def __init__(self, model) -> None:
        self.model, self.encodes = model, 0

    def encode(self, *args, **kwargs):
        self.encodes += 1
        return self.model.encode(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_language_detection_shares_the_decoding_encoder_pass(clips):
    from faster_whisper import WhisperModel

    asr = FasterWhisperASR()
    counting = asr.model.model = _CountingEncoder(asr.model.model)
    audio = decode_audio(str(clips.speech["speech_zh_sad"]))  # one 30 s window
    ours = asr.transcribe(audio, None, "transcribe")
    assert counting.encodes == 1  # plain faster-whisper 1.2 encodes this window twice

    # The same words, language and timings as faster-whisper's own pipeline.
    plain = WhisperModel(str(asr.model_dir), device=asr.device, compute_type=asr.compute_type)
    segments, info = plain.transcribe(audio, **asr.options(None, "transcribe"))  # the stage's settings, defined once
    segments = list(segments)
    assert info.language == ours.language and abs(info.language_probability - ours.language_probability) < 0.05
    assert [s.text.strip() for s in segments] == [s.text for s in ours.segments]
    assert [w.start for s in segments for w in s.words] == [w.start for w in ours.words]


def test_a_transcript_joined_across_windows_keeps_every_sentence_in_place(asr, clips):
    names = ["speech_en_happy", "speech_en_angry", "speech_en_calm"]
    gap = np.zeros(2 * AUDIO_SAMPLE_RATE, dtype=np.float32)
    pieces, starts, t = [], [], 0.0
    for name in names:
        speech = decode_audio(str(clips.speech[name]))
        pieces += [speech, gap]
        starts.append(t)
        t += (len(speech) + len(gap)) / AUDIO_SAMPLE_RATE
    audio = np.concatenate(pieces)
    window_s = 7.0  # cuts this 19 s recording into three windows
    assert len(window_bounds(audio, AUDIO_SAMPLE_RATE, window_s)) >= 3

    joined = WindowedTranscript(asr, None, "transcribe")
    for offset, samples in audio_windows([audio], AUDIO_SAMPLE_RATE, window_s):
        joined.add(offset / AUDIO_SAMPLE_RATE, samples)
    transcript = joined.result()
    reference = " ".join(clips.texts[n][1] for n in names)
    assert transcript.language == "en"
    assert word_error_rate(reference, transcript.text) <= 0.2, transcript.text
    times = [w.start for w in transcript.words]
    assert times == sorted(times) and 0 <= times[0] and transcript.words[-1].end <= len(audio) / AUDIO_SAMPLE_RATE
    # Each sentence's first word is heard where that sentence was placed, in clip time.
    for name, start in zip(names, starts):
        first = clips.texts[name][1].split()[0].lower().strip(",.?'")
        heard = [w.start for w in transcript.words if w.word.lower().strip(",.?'").startswith(first[:3])]
        assert any(abs(h - start) < 1.5 for h in heard), (name, start, heard)
