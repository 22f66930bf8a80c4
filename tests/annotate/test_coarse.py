import pytest

from merr_builder.annotate.coarse import coarse_caption, objective_description, resolve_label
from merr_builder.annotate.objective import MEASURED
from merr_builder.config import load_config
from merr_builder.corpus.base import StepContext
from merr_builder.corpus.coarse import CoarseStep
from merr_builder.corpus.objective import ObjectiveStep
from merr_builder.facs import AU_NAMES
from merr_builder.layout import BuildLayout


def _aus(**values: float) -> dict[str, float]:
    return {au: values.get(au, 0.0) for au in AU_NAMES}


def test_the_template_is_the_papers_sentence():
    # The paper's own example (Figure "example"), rebuilt from its four clues.
    row = {
        "visual_objective_description": "talking to a man, possibly discussing something important",
        "visual_expression_description": "Eyes widened, Wide-mouthed",
        "audio_tone_description": "excited",
        "transcript": "哦，天哪。",
        "transcript_en": "Oh my.",
        "transcript_flags": [],
    }
    # (The paper prints "eyes widened, Wide-mouthed": the AU phrases joined as written; here each is a word
    # inside the sentence.)
    assert coarse_caption(row) == (
        "This person in the video is talking to a man, possibly discussing something important. "
        "The person's expression and actions include eyes widened, wide-mouthed, and the person's tone is "
        "excited. Saying: Oh my."
    )


def test_missing_clues_are_said_plainly_never_invented():
    caption = coarse_caption({"visual_objective_description": "alone in the frame", "transcript": ""})
    assert caption == ("This person in the video is alone in the frame. The person's expression and actions include no clear "
                       "facial movement, and the person does not speak.")


def test_doubtful_or_untranslated_words_are_not_quoted():
    row = {"visual_objective_description": "alone in the frame", "visual_expression_description": "Lips parted",
           "audio_tone_description": "loud", "transcript": "아니 아니 아니 아니", "transcript_en": "No, no, no, no",
           "transcript_flags": ["repetition", "low_language_probability"]}  # fmt: skip
    caption = coarse_caption(row)
    assert caption.endswith("include lips parted, and the person's tone is loud.") and "Saying" not in caption
    untranslated = {**row, "transcript": "我不进去了", "transcript_en": None, "transcript_flags": []}
    assert coarse_caption(untranslated) == caption
    no_asr = {**untranslated, "audio_tone_description": "no audible speech"}  # a sidecar's words, ASR off
    assert coarse_caption(no_asr).endswith("include lips parted.")
    assert coarse_caption({**no_asr, "transcript_en": "I'm not going in."}).endswith("include lips parted. Saying: I'm not going in.")


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"n_faces": 1, "face_box_peak": {"x": 0.3, "y": 0.2, "w": 0.1, "h": 0.15}}, "alone in the frame, seen on the left in a wide shot"),
        ({"n_faces": 2, "face_box_peak": {"x": 0.45, "y": 0.1, "w": 0.2, "h": 0.5}, "head_pose_peak": {"yaw": 2, "pitch": 20, "roll": 0}},
         "with another person in the frame, seen in the centre in a close-up, head lowered"),
    ],
)
def test_the_objective_description_states_measured_facts(row, says):
    assert objective_description(row) == says


def test_a_given_label_is_checked_against_the_face():
    smiling = {"label": "happy", "label_source": "labels.csv", "aus_peak": _aus(AU06=2.5, AU12=3.0)}
    label, source = resolve_label(smiling)
    assert label == "happy" and "agrees with the AU evidence" in source
    frowning = {**smiling, "aus_peak": _aus(AU04=3.0, AU15=2.0)}
    assert "disagrees with the AU evidence" in resolve_label(frowning)[1]


def test_without_a_given_label_the_pseudo_label_is_used(tmp_path):
    row = {"pseudo_label": "surprise", "pseudo_label_score": 0.8, "aus_peak": _aus(AU05=2, AU26=3)}
    assert resolve_label(row) == ("surprise", "AU pseudo-label (score 0.80)")
    row = {**row, "clip_id": "c", "n_faces": 1, "face_box_peak": {"x": 0.4, "y": 0.2, "w": 0.2, "h": 0.3}, "head_pose_peak": None}
    context = StepContext(BuildLayout(tmp_path))
    [objective] = ObjectiveStep.from_config(load_config()).run([row], context)  # the measured sentence (no VLM)
    [annotation] = CoarseStep().run([{**row, **objective}], context)
    assert objective["objective_source"] == MEASURED
    assert annotation["label"] == "surprise" and annotation["coarse_caption"].startswith("This person in the video is alone")
