"""The speech stage per clip: sidecars, missing audio, tone words, and the openai-whisper backend."""

from pathlib import Path

import pytest

from merr_builder.assets import AssetError
from merr_builder.config import IngestConfig, SpeechConfig
from merr_builder.ingest import ClipSource, probe
from merr_builder.media import ClipAudio, decode_audio
from merr_builder.quarantine import ClipError, ErrorKind
from merr_builder.speech.sidecar import subtitle_text
from merr_builder.speech.stage import SpeechAnalyser, make_asr
from merr_builder.speech.tone import NO_SPEECH, corpus_stats, describe_tone, zscores
from merr_builder.corpus.tone import tone_cues


@pytest.fixture(scope="module")
def analyser():
    config = SpeechConfig()
    return SpeechAnalyser(config, make_asr(config))


def _clip(path: Path, **ingest):
    return probe(ClipSource(path.stem, str(path)), IngestConfig(**ingest))


def test_srt_and_vtt_give_their_spoken_text():
    srt = "1\n00:00:01,000 --> 00:00:02,000\nHello <i>there</i>\n\n2\n00:00:02,500 --> 00:00:04,000\nfriend\n"
    vtt = "WEBVTT\n\nNOTE a comment\n\ncue-1\n00:01.000 --> 00:02.000 align:start\nHi <v Bob>you</v>\n"
    assert subtitle_text(srt, ".srt") == "Hello there friend"
    assert subtitle_text(vtt, ".vtt") == "Hi you"


def test_a_gbk_sidecar_beside_the_clip_wins_over_asr(analyser, clips, tmp_path):
    video = tmp_path / "clip.mp4"
    video.symlink_to(clips.speech["speech_en_happy"])
    (tmp_path / "clip.txt").write_bytes("我今天很高兴".encode("gbk"))
    clip = _clip(video)
    row = analyser.analyse(clip, ClipAudio(str(video)))
    assert row["transcript"] == "我今天很高兴" and row["transcript_language"] == "zh"
    assert row["transcript_source"] == f"sidecar:{tmp_path / 'clip.txt'}"
    assert "happiest day" in row["asr_text"]  # ASR still ran: its words time the speech rate
    ignoring = SpeechAnalyser(analyser.config.model_copy(update={"sidecar": "ignore"}), analyser.asr)
    assert "happiest day" in ignoring.analyse(clip, ClipAudio(str(video)))["transcript"]


def test_an_undecodable_sidecar_is_this_clips_error(analyser, clips, tmp_path):
    video = tmp_path / "clip.mp4"
    video.symlink_to(clips.speech["speech_en_happy"])
    (tmp_path / "clip.srt").write_bytes(b"\xff\xfe\x00\xd8 broken \x80\x81\xfe")
    with pytest.raises(ClipError) as err:
        analyser.analyse(_clip(video), None)
    assert err.value.kind == ErrorKind.UNREADABLE_SIDECAR and "clip.srt" in err.value.message


def test_no_audio_stream_gives_a_null_transcript_with_a_reason(analyser, clips):
    clip = _clip(clips.no_audio, require_audio=False)
    row = analyser.analyse(clip, None)
    assert row["transcript"] is None and "no audio stream" in row["transcript_error"]
    assert row["has_speech"] is False and row["egemaps"] is None
    assert describe_tone(tone_cues(row), corpus_stats([{}] * 5)) == NO_SPEECH


def test_a_tone_without_words_is_no_audible_speech(analyser, clips):
    row = analyser.analyse(_clip(clips.good_synthetic), ClipAudio(str(clips.good_synthetic)))
    assert row["transcript"] == "" and row["has_speech"] is False and len(row["egemaps"]) == 88
    assert tone_cues(row) is None


def test_louder_faster_speech_moves_the_tone_words(analyser, clips):
    rows = {name: analyser.analyse(_clip(path), ClipAudio(str(path))) for name, path in clips.speech.items()}
    cues = {name: tone_cues(row) for name, row in rows.items()}
    stats = corpus_stats(list(cues.values()))
    calm, fast = zscores(cues["speech_en_calm"], stats), zscores(cues["speech_en_fast_loud"], stats)
    assert fast["loudness"] > calm["loudness"] and fast["speech_rate"] > calm["speech_rate"]
    fast_words = describe_tone(cues["speech_en_fast_loud"], stats)
    calm_words = describe_tone(cues["speech_en_calm"], stats)
    assert "fast" in fast_words and "loud" in fast_words, fast_words
    assert "fast" not in calm_words and "loud" not in calm_words, calm_words


def test_openai_whisper_backend_loads_a_checkpoint_through_its_own_code_path(tmp_path, clips):
    import torch
    import whisper

    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51865, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = whisper.model.Whisper(dims)
    checkpoint = tmp_path / "tiny-random.pt"
    torch.save({"dims": dims.__dict__, "model_state_dict": model.state_dict()}, checkpoint)
    asr = make_asr(SpeechConfig(backend="openai_whisper", openai_model=str(checkpoint), beam_size=1))
    transcript = asr.transcribe(decode_audio(str(clips.speech["speech_en_happy"]))[:32000], "en", "transcribe")
    assert transcript.language == "en" and isinstance(transcript.text, str)  # random weights: any text
    with pytest.raises(AssetError, match="nothing is downloaded"):
        make_asr(SpeechConfig(backend="openai_whisper", openai_model="tiny", openai_download_root=tmp_path))
