import numpy as np
import pytest

from merr_builder.faces.expression import NO_MOVEMENT, describe_expression, pseudo_label
from merr_builder.facs import (
    AU_NAMES, AU_PHRASES, AU_SCALE, BLENDSHAPE_NAMES, BLENDSHAPE_REST, BLENDSHAPE_TO_AU, EMOTION_PROTOTYPES,
)  # fmt: skip
from merr_builder.faces.face_mesh import blendshapes_to_aus
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
    for label, proto in EMOTION_PROTOTYPES.items():
        units = {au for group in proto.core for au in group} | set(proto.support) | set(proto.contradicts)
        assert units <= set(AU_NAMES) and proto.core and proto.source, label
        assert not set(proto.contradicts) & {au for group in proto.core for au in group}, label
    assert set(AU_SCALE) == set(AU_NAMES) and all(0 < scale <= 1 and why for scale, why in AU_SCALE.values())
    assert set(BLENDSHAPE_REST) <= set(BLENDSHAPE_NAMES)


def _at(au: str, share: float) -> dict[str, float]:
    """Blendshapes moving `au`'s shapes by `share` of its full-intensity change above the resting face."""
    shapes = [t.partition("*")[0] for t in BLENDSHAPE_TO_AU[au][0] if not t.startswith("-")]
    return {name: BLENDSHAPE_REST.get(name, 0.0) + share * AU_SCALE[au][0] for name in shapes}


def test_blendshapes_map_onto_the_0_to_5_scale_above_the_resting_face():
    # The population's resting face reads no AU, though it scores eyeSquint ≈ 0.25.
    assert not blendshapes_to_aus(dict(BLENDSHAPE_REST)).any()
    for au in ("AU12", "AU26", "AU04", "AU01", "AU02", "AU45"):
        assert blendshapes_to_aus(_at(au, 0.6))[AU_NAMES.index(au)] == pytest.approx(3.0, abs=1e-4), au
    assert blendshapes_to_aus(_at("AU12", 2.0))[AU_NAMES.index("AU12")] == 5.0  # clipped to the scale
    # One side is enough (FACS codes unilateral AUs): left and right combine by max.
    one_side = blendshapes_to_aus({"mouthSmileLeft": 0.6 * AU_SCALE["AU12"][0]})
    assert one_side[AU_NAMES.index("AU12")] == pytest.approx(3.0, abs=1e-4)
    # Narrowed eyes are AU06 with a full smile, AU07 without one.
    squint = {"eyeSquintLeft": BLENDSHAPE_REST["eyeSquintLeft"] + 0.6, "eyeSquintRight": BLENDSHAPE_REST["eyeSquintRight"] + 0.6}
    smiling = blendshapes_to_aus({**squint, "mouthSmileLeft": AU_SCALE["AU12"][0]})
    frowning = blendshapes_to_aus(squint)
    assert smiling[AU_NAMES.index("AU06")] == pytest.approx(3.0, abs=1e-4) and smiling[AU_NAMES.index("AU07")] == 0
    assert frowning[AU_NAMES.index("AU07")] == pytest.approx(3.0, abs=1e-4) and frowning[AU_NAMES.index("AU06")] == 0


# One AU vector per label, its prototype's core and support at a marked intensity.
REACHES = {
    "happy": aus_of(AU06=2.5, AU12=3.0),
    "sad": aus_of(AU01=2.0, AU04=2.0, AU15=2.0),
    "angry": aus_of(AU04=2.5, AU05=1.2, AU07=2.0, AU23=2.0),
    "surprise": aus_of(AU01=1.5, AU02=1.5, AU05=2.0, AU26=3.0),
    "fear": aus_of(AU01=2.0, AU02=2.0, AU04=2.0, AU05=2.0, AU20=2.0, AU25=1.5),
    "contempt": aus_of(AU12=2.0, AU14=2.0),
    "worried": aus_of(AU01=2.0, AU04=2.0, AU20=2.0),
    "doubt": aus_of(AU04=2.0, AU17=2.0, AU07=1.5),
    "neutral": aus_of(AU45=4.0),
}


@pytest.mark.parametrize("label", sorted(REACHES))
def test_each_label_is_reached_by_its_prototype(label):
    result = pseudo_label(REACHES[label])
    assert result.label == label
    assert result.au_match == (label != "neutral")
    if label != "neutral":
        core = {au for group in EMOTION_PROTOTYPES[label].core for au in group}
        assert set(result.matched) & core  # the evidence names the AUs that matched


@pytest.mark.parametrize("label", sorted(EMOTION_PROTOTYPES))
def test_a_contradicting_au_keeps_a_label_away(label):
    for au in EMOTION_PROTOTYPES[label].contradicts:
        aus = REACHES[label].copy()
        aus[AU_NAMES.index(au)] = 3.0
        result = pseudo_label(aus)
        assert result.label != label and result.scores[label] == 0.0, (label, au)


def test_surprise_needs_wide_eyes_or_a_dropped_jaw_with_the_brow_raise():
    assert pseudo_label(aus_of(AU01=3.0, AU02=3.0)).label == "neutral"  # raised brows alone
    assert pseudo_label(aus_of(AU01=3.0, AU02=3.0, AU26=2.0)).label == "surprise"
    assert pseudo_label(aus_of(AU01=3.0, AU02=3.0, AU26=2.0, AU07=2.5)).label != "surprise"  # lids tightened


def test_expression_words_strongest_first_without_blinks():
    assert describe_expression(aus_of(AU05=1.5, AU26=3.0, AU45=4.0)) == "Wide-mouthed, Eyes widened"
    assert describe_expression(aus_of(AU12=0.5)) == NO_MOVEMENT
