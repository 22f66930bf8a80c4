"""Speech: transcripts (ASR or sidecar files) and audio tone cues."""
