import re

import pytest

from merr_builder.annotate.checks import KEPT, NearDuplicates, check_answer, full_sentences, said_labels
from merr_builder.annotate.fine import fine_annotations, select
from merr_builder.annotate.llm.protocol import Completion
from merr_builder.config import AnnotateConfig

GOOD = (
    "In the video, the woman's eyes widen and her mouth falls open while she exclaims about her bag, "
    "so the clues point to surprise at a sudden discovery."
)


def done(text: str, reason: str = "stop") -> Completion:
    return Completion(text, reason, len(text.split()))


@pytest.mark.parametrize(
    ("completion", "label", "verdict"),
    [
        (done(GOOD), "surprise", KEPT),
        (done(""), "surprise", "rejected: empty answer"),
        (done(GOOD.removesuffix("."), "length"), "surprise", "rejected: truncated at the token limit (no full sentences that reason)"),
        (done("She is surprised."), "surprise", "rejected: too short to reason"),
        (done("She feels very sad because her phone is lost and nobody will help her find it at all."), "surprise",
         "rejected: does not state surprise (nor a word of its lexicon)"),
        (done("The tone is flat and the face is still. The tone is flat and the face is still. It means surprise here."),
         "surprise", "rejected: repeats a sentence"),
    ],
)
def test_answers_are_kept_or_rejected_with_a_reason(completion, label, verdict):
    assert check_answer(completion, label)[0] == verdict


# Answers of the kind SmolLM2-135M gave on the sample build for a clip labelled happy (issue 18).
HAPPY_KEPT = (
    "The person in the video smiles broadly, her cheeks raised and her lip corners pulled up, and she speaks in a "
    "bright, lively voice. These clues point to happiness: she is pleased with the news she shares."
)
HAPPY_UNHAPPINESS = (
    "The person's raised cheeks and pulled lip corners suggest a smile, but the flat tone reveals a sense of "
    "unhappiness. She may feel happy on the surface while hiding her real feelings."
)
HAPPY_DISTRESS = (
    "The person in the video is experiencing emotional distress. Her lips are stretched and her tone is loud, which "
    "shows how happy she pretends to be while she struggles inside."
)
HAPPY_CUT = (
    "The person in the video smiles broadly and her cheeks are raised, which shows that she feels happy about the "
    "news. Her bright tone adds to this impression, and the words she says"
)
HAPPY_REPEATING = (
    "The person smiles and her cheeks are raised, so she feels happy. The person smiles and her cheeks are raised, "
    "so she feels happy. Her tone is bright."
)


@pytest.mark.parametrize(
    ("completion", "verdict"),
    [
        (done(HAPPY_KEPT), KEPT),
        (done(HAPPY_UNHAPPINESS), "rejected: states sad, the opposite kind of happy"),
        (done(HAPPY_DISTRESS), "rejected: states sad, worried, the opposite kind of happy"),
        (done("She smiles broadly. Her cheeks are raised, her tone is bright, and the words she says about the", "length"),
         "rejected: truncated at the token limit (no full sentences that reason)"),
        (done(HAPPY_REPEATING), "rejected: repeats a sentence"),
    ],
)
def test_a_happy_answer_must_state_happiness_and_no_unpleasant_emotion(completion, verdict):
    assert check_answer(completion, "happy")[0] == verdict


def test_an_answer_cut_at_the_limit_keeps_its_full_sentences():
    verdict, caption = check_answer(done(HAPPY_CUT, "length"), "happy")
    assert verdict == KEPT and caption == HAPPY_CUT.split(". Her bright")[0] + "."
    assert full_sentences('She said "Oh my!" and smiled. Then she') == 'She said "Oh my!" and smiled.'


def test_negated_and_quoted_emotion_words_are_not_stated_of_the_person():
    text = 'She shows no sign of anger and does not seem sad; she laughs and says "I am so worried" in jest, clearly joyful.'
    assert said_labels(text)[0] == {"happy"}  # stated
    assert check_answer(done(text), "happy") == (KEPT, text)


def test_an_answer_that_also_denies_its_own_label_is_rejected():
    # Stated once and denied once: the caption contradicts the label it was asked to explain.
    text = ("Her cheeks are raised and her lip corners pulled up, so she looks happy at first, but her flat voice "
            "shows she is not really happy about the news.")  # fmt: skip
    assert check_answer(done(text), "happy") == ("rejected: also says the person is not happy", None)
    # Denying another emotion is no contradiction.
    text = "She smiles broadly and laughs, clearly happy, with no anger and no worry in her bright voice."
    assert check_answer(done(text), "happy") == (KEPT, text)


def test_near_duplicates_name_the_earliest_kept_clip():
    kept = NearDuplicates()
    assert kept.twin(GOOD) is None
    kept.add("clip_a", GOOD)
    kept.add("clip_b", GOOD.replace("bag", "purse"))
    assert kept.twin(GOOD.replace("sudden", "sudden,")) == "clip_a"
    assert kept.twin("A different answer entirely about anger and a raised voice in a quarrel.") is None


def test_selection_skips_disagreeing_labels_and_tops_up_neutral():
    rows = [{"clip_id": f"c{i}", "label": "happy", "label_source": "AU pseudo-label"} for i in range(10)]
    rows += [{"clip_id": "bad", "label": "sad", "label_source": "labels.csv (disagrees with the AU evidence, score 0.00)"}]
    rows += [{"clip_id": f"n{i}", "label": "neutral", "label_source": "AU pseudo-label"} for i in range(5)]
    rows += [{"clip_id": "none", "label": None, "label_source": "no label"}]
    status = select(rows, AnnotateConfig(neutral_fraction=0.2))
    assert status["bad"] == "not selected: the label disagrees with the AU evidence"
    assert status["none"] == "not selected: no label"
    assert sum(status[f"n{i}"] is None for i in range(5)) == 2  # 20% of the 10 others
    assert all(status[f"c{i}"] is None for i in range(10))


def test_without_a_backend_every_row_says_why(tmp_path):
    rows = [{"clip_id": "a", "coarse_caption": "x", "label": "happy", "label_source": "s"}]
    assert fine_annotations(rows, None, AnnotateConfig(fine_backend="none"), tmp_path / "c.sqlite") == {
        "a": (None, "not generated: no LLM backend (annotate.fine_backend none)", None)
    }


def test_the_same_answers_over_http_end_in_the_same_status_through_the_fine_step(tmp_path):
    """The happy answers above, returned by a small OpenAI-compatible server on loopback, through the fine
    step as a build runs it (config → backend → answer cache → checks)."""
    from serving import scripted_chat_server

    from merr_builder.config import load_config
    from merr_builder.corpus.base import StepContext
    from merr_builder.corpus.fine import FineStep
    from merr_builder.layout import BuildLayout

    answers = {
        "c_kept": (HAPPY_KEPT, "stop"),
        "c_unhappiness": (HAPPY_UNHAPPINESS, "stop"),
        "c_distress": (HAPPY_DISTRESS, "stop"),
        "c_cut_back": (HAPPY_CUT, "length"),
        "c_cut": ("She smiles broadly. Her cheeks are raised, her tone is bright, and the words she says about the", "length"),
        "c_repeating": (HAPPY_REPEATING, "stop"),
    }

    def answer(messages: list[dict]) -> tuple[str, str]:
        clip = re.search(r"\[(c_\w+)\]", messages[-1]["content"]).group(1)
        return answers[clip]

    rows = [{"clip_id": c, "coarse_caption": f"The person smiles [{c}].", "label": "happy", "label_source": "labels.csv"} for c in answers]
    with scripted_chat_server(answer) as url:
        config = load_config(None, ["annotate.fine_backend=openai", f"annotate.server_url={url}", "annotate.server_model=scripted"])
        out = FineStep.from_config(config).run(rows, StepContext(BuildLayout(tmp_path)))
    statuses = {r["clip_id"]: r["fine_status"] for r in out}
    direct = {c: check_answer(done(text, finish), "happy")[0] for c, (text, finish) in answers.items()}
    assert statuses == direct
    assert statuses["c_kept"] == statuses["c_cut_back"] == KEPT and statuses["c_cut"].startswith("rejected: truncated")
    captions = {r["clip_id"]: r["fine_caption"] for r in out}
    assert captions["c_cut_back"] == HAPPY_CUT.split(". Her bright")[0] + "." and captions["c_kept"] == HAPPY_KEPT
    assert {r["clip_id"]: r["fine_answer_cut"] for r in out}["c_cut_back"] is True
