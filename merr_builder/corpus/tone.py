"""Tone: the audio tone description of every clip, in words relative to the whole build's statistics."""

from __future__ import annotations

from merr_builder.corpus.base import StepContext, StepDefaults, output_schema
from merr_builder.speech.tone import corpus_stats, cue_values, describe_tone, egemaps_names


def tone_cues(speech_row: dict) -> dict[str, float | None] | None:
    """The tone cues of a clip with speech; None without speech."""
    if not speech_row.get("has_speech"):
        return None
    return cue_values(speech_row["egemaps"], egemaps_names(), speech_row["speech_rate"], speech_row["pause_ratio"])


class ToneStep(StepDefaults):
    name = "tone"
    version = "2"  # 2: "moderate" before a lone clause ("the person's tone is moderate, with long pauses")
    scope = "build"  # the words compare each clip with the build's own statistics
    reads = {"speech": ("has_speech", "egemaps", "speech_rate", "pause_ratio")}
    writes = ("audio_tone_description",)
    output_schema = output_schema(name, writes)

    def run(self, rows: list[dict], context: StepContext) -> list[dict]:
        cues = [tone_cues(row) for row in rows]
        stats = corpus_stats([c for c in cues if c is not None])
        return [{"clip_id": row["clip_id"], "audio_tone_description": describe_tone(c, stats)} for row, c in zip(rows, cues)]
