import pytest

from merr_builder.annotate.checks import KEPT, NearDuplicates, asserted_labels, check_answer
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
        (done(GOOD, "length"), "surprise", "rejected: truncated at the token limit"),
        (done("She is surprised."), "surprise", "rejected: too short to reason"),
        (done("She feels very sad because her phone is lost and nobody will help her find it at all. " * 1), "surprise",
         "rejected: asserts sad instead of surprise"),
        (done("The tone is flat and the face is still. The tone is flat and the face is still. It means surprise here."),
         "surprise", "rejected: repeats a sentence"),
    ],
)
def test_answers_are_kept_or_rejected_with_a_reason(completion, label, verdict):
    assert check_answer(completion, label) == verdict


def test_a_label_mentioned_alongside_others_is_not_a_contradiction():
    text = "She seems afraid at first, but her widened eyes and open mouth show surprise at the sudden news."
    assert asserted_labels(text) == {"fear", "surprise"}
    assert check_answer(done(text), "surprise") == KEPT


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
        "a": (None, "not generated: no LLM backend (annotate.fine_backend none)")
    }
