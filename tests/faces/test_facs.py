import numpy as np
import pytest

from merr_builder.faces.expression import NO_MOVEMENT, describe_expression, pseudo_label
from merr_builder.facs import (
    AU_NAMES, AU_PHRASES, BLENDSHAPE_NAMES, BLENDSHAPE_TO_AU, EMOTION_PROTOTYPES,
)  # fmt: skip
from merr_builder.faces.mediapipe import blendshapes_to_aus
from merr_builder.labels import MERR_LABELS


def aus_of(**values: float) -> np.ndarray:
    vector = np.zeros(len(AU_NAMES), dtype=np.float32)
    for au, value in values.items():
        vector[AU_NAMES.index(au)] = value
    return vector


def test_tables_cover_every_au_and_label():
    assert set(BLENDSHAPE_TO_AU) == set(AU_NAMES) == set(AU_PHRASES)
    for au, (terms, why) in BLENDSHAPE_TO_AU.items():
        assert why
        for term in terms:
            assert term.lstrip("-").partition("*")[0] in BLENDSHAPE_NAMES, (au, term)
    assert set(EMOTION_PROTOTYPES) | {"neutral"} == set(MERR_LABELS)
    assert all(set(units) <= set(AU_NAMES) and source for units, source in EMOTION_PROTOTYPES.values())


def test_blendshapes_map_onto_the_0_to_5_scale_left_right_by_max():
    aus = blendshapes_to_aus({"mouthSmileLeft": 0.8, "mouthSmileRight": 0.2, "jawOpen": 0.5, "mouthClose": 0.1})
    assert aus[AU_NAMES.index("AU12")] == pytest.approx(4.0)
    assert aus[AU_NAMES.index("AU26")] == pytest.approx(2.5)
    assert aus[AU_NAMES.index("AU25")] == pytest.approx(2.0)
    squint = {"eyeSquintLeft": 0.6, "eyeSquintRight": 0.6}
    smiling = blendshapes_to_aus({**squint, "mouthSmileLeft": 1.0})
    frowning = blendshapes_to_aus(squint)
    assert smiling[AU_NAMES.index("AU06")] == pytest.approx(3.0) and smiling[AU_NAMES.index("AU07")] == 0
    assert frowning[AU_NAMES.index("AU07")] == pytest.approx(3.0) and frowning[AU_NAMES.index("AU06")] == 0


@pytest.mark.parametrize(
    ("aus", "label"),
    [
        (aus_of(), "neutral"),
        (aus_of(AU06=2.5, AU12=3.0), "happy"),
        (aus_of(AU05=2.0, AU26=3.0, AU01=1.5, AU02=1.5), "surprise"),
        (aus_of(AU01=2.0, AU04=2.0, AU15=2.0), "sad"),
        (aus_of(AU04=2.5, AU05=1.2, AU07=2.0, AU23=2.0), "angry"),
        (aus_of(AU12=2.0, AU14=2.0), "contempt"),
        (aus_of(AU45=4.0), "neutral"),
    ],
)
def test_pseudo_labels_from_prototypes(aus, label):
    assert pseudo_label(aus).label == label


def test_expression_words_strongest_first_without_blinks():
    assert describe_expression(aus_of(AU05=1.5, AU26=3.0, AU45=4.0)) == "Wide-mouthed, Eyes widened"
    assert describe_expression(aus_of(AU12=0.5)) == NO_MOVEMENT
