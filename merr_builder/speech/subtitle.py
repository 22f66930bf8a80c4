"""What a clip's person is quoted as saying: the one rule every caption, prompt, export and the trainer use.

MERR quotes English subtitles (the authors' `transcription_en_all.csv`). A row's words are quoted only
when they are English (`transcript_en`) and the transcript is not doubtful: a transcript that repeats
itself, whose language was a guess, that Whisper thought was no speech, or whose words it decoded below its
own fallback confidence (average log-probability under -1) is kept in the row with its flags but is put in
nobody's mouth: on MER2023's samplenew_00061200 Whisper base's low-confidence words translate to "I don't
believe it, right?" where the clip's subtitle is "I'm not going in anymore, scared.". Where nothing can be quoted, the text says so plainly, the same
everywhere (the original loader formats "The person in video says: {sentence}. " for every clip, so the
sentence is never empty):

- no speech (no transcript, or an empty one): SILENT_SENTENCE, "The person in video says: nothing.";
- speech that cannot be quoted (doubtful, or not in English): UNQUOTED_SENTENCE,
  "The person in video says: [unclear speech]."

A quote is at most QUOTE_MAX_CHARS long: longer words are cut at the last word boundary before it and end
in CUT_MARK, and the row says so (`subtitle_cut`). So no row's text can make a prompt too long for the
LLM step (a 10 MB transcript would be 10 MB of prompt), and every caption, prompt and export quotes the
same cut words. (MERR's subtitles are one or two sentences; a 30-second monologue is about 500 characters.)
"""

from __future__ import annotations

from merr_builder.speech.flags import LOW_CONFIDENCE, LOW_LANGUAGE_PROBABILITY, NO_SPEECH, REPETITION

DOUBTFUL_FLAGS = (REPETITION, LOW_LANGUAGE_PROBABILITY, NO_SPEECH, LOW_CONFIDENCE)  # a transcript with one is never quoted
QUOTE_MAX_CHARS = 1000
CUT_MARK = " [...]"
SILENT_SENTENCE = "nothing"
UNQUOTED_SENTENCE = "[unclear speech]"
COLUMNS = ("transcript", "transcript_en", "transcript_flags")  # what the rule reads from a row


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""  # (null, or NaN where pandas read the row)


def doubtful(row: dict) -> bool:
    flags = row.get("transcript_flags")
    return flags is not None and any(f in DOUBTFUL_FLAGS for f in flags)


def speaks(row: dict) -> bool:
    """Whether the row has a transcript with words in it (in any language, doubtful or not)."""
    return bool(_text(row.get("transcript")))


def quotable(row: dict) -> str | None:
    """The English words the row's person may be quoted as saying (cut to QUOTE_MAX_CHARS), or None."""
    english = _text(row.get("transcript_en"))
    if not speaks(row) or not english or doubtful(row):
        return None
    return cut(english)


def cut(text: str) -> str:
    """`text` when it has at most QUOTE_MAX_CHARS characters; else its words up to that length and CUT_MARK."""
    if len(text) <= QUOTE_MAX_CHARS:
        return text
    head = text[: QUOTE_MAX_CHARS - len(CUT_MARK) + 1]
    return (head.rsplit(None, 1)[0] if " " in head.strip() else head[:-1]).rstrip() + CUT_MARK


def quote_cut(row: dict) -> bool:
    """Whether the row's quoted words were cut to QUOTE_MAX_CHARS."""
    words = quotable(row)
    return words is not None and len(_text(row.get("transcript_en"))) > QUOTE_MAX_CHARS


def spoken_sentence(row: dict) -> str:
    """The text after "says: " for this row: its quotable words, else the documented placeholder."""
    words = quotable(row)
    if words is not None:
        return words  # as written: the original loader and ours format the CSV sentence unchanged
    return UNQUOTED_SENTENCE if speaks(row) else SILENT_SENTENCE
