"""FACS tables: the one definition of the AUs measured, how MediaPipe's blendshapes stand for them, the
phrases that describe them, and the AU prototypes of the nine MERR labels.

Sources are the research notes in shared/research/emotion_llama_merr_facts.md (§1.3-1.4): the Emotion-LLaMA
repository and its issues (OLD-MERR, DOCS-SITE, FIG), MER-Factory (MERF), and FACS itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# The AUs OpenFace 2 reports (17 intensities `_r`, plus AU28 as presence only), which MERR's AU analysis
# used. Every AU vector and AU column in this project follows this order.
AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU28", "AU45",
)  # fmt: skip

# OpenFace's intensity scale, which every backend's intensities are expressed on.
AU_INTENSITY_MAX = 5.0
# An AU counts as present at or above this intensity (OpenFace's `_c` flags fire around 1 on the `_r`
# scale; MER-Factory uses 0.8 as its "active" threshold).
AU_PRESENCE_THRESHOLD = 1.0

# MediaPipe FaceLandmarker blendshapes (ARKit names) → FACS AU. Each ARKit shape is defined as one facial
# movement; each row pairs the AU with the shape(s) of the movement it produces. Left and right are
# combined with max: FACS codes an AU when either side shows it (unilateral AU12/AU14 is contempt's sign),
# and a mean would halve it. Scores in [0, 1] are scaled linearly to OpenFace's 0-5.
# Notation: "-name" subtracts that score; "name*smile" / "name*nosmile" weights it by the smile score s =
# max(mouthSmileLeft, mouthSmileRight) or by 1 - s. The one ARKit shape for narrowing the eyes (eyeSquint,
# "contraction of the face around the eye", orbicularis oculi) stands for both AU06 (its orbital part,
# the Duchenne cheek raise) and AU07 (its lid part); MediaPipe's own cheekSquint hardly ever fires, so eye
# narrowing with a smile is read as AU06 and without one as AU07.
#   AU: (blendshapes, why)
BLENDSHAPE_TO_AU: dict[str, tuple[tuple[str, ...], str]] = {
    "AU01": (("browInnerUp",), "inner brow raiser lifts the inner brows"),
    "AU02": (("browOuterUpLeft", "browOuterUpRight"), "outer brow raiser lifts the outer brows"),
    "AU04": (("browDownLeft", "browDownRight"), "brow lowerer pulls the brows down and together"),
    "AU05": (("eyeWideLeft", "eyeWideRight"), "upper lid raiser widens the eye opening"),
    "AU06": (("cheekSquintLeft", "cheekSquintRight", "eyeSquintLeft*smile", "eyeSquintRight*smile"),
             "cheek raiser lifts the cheeks and narrows the eyes from below, with a smile"),
    "AU07": (("eyeSquintLeft*nosmile", "eyeSquintRight*nosmile"), "lid tightener narrows the lids, without a smile"),
    "AU09": (("noseSneerLeft", "noseSneerRight"), "nose wrinkler raises the nose sides"),
    "AU10": (("mouthUpperUpLeft", "mouthUpperUpRight"), "upper lip raiser lifts the upper lip"),
    "AU12": (("mouthSmileLeft", "mouthSmileRight"), "lip corner puller draws the corners up (smile)"),
    "AU14": (("mouthDimpleLeft", "mouthDimpleRight"), "dimpler pulls the corners back, dimpling"),
    "AU15": (("mouthFrownLeft", "mouthFrownRight"), "lip corner depressor pulls the corners down"),
    "AU17": (("mouthShrugLower",), "chin raiser pushes the lower lip up"),
    "AU20": (("mouthStretchLeft", "mouthStretchRight"), "lip stretcher pulls the lips sideways"),
    "AU23": (("mouthPressLeft", "mouthPressRight"), "lip tightener narrows and presses the lips (no tightener shape; press is nearest)"),
    "AU25": (("jawOpen", "-mouthClose"), "lips part: the jaw opens while the lips are not held closed"),
    "AU26": (("jawOpen",), "jaw drop opens the mouth"),
    "AU28": (("mouthRollLower", "mouthRollUpper"), "lip suck rolls the lips inwards"),
    "AU45": (("eyeBlinkLeft", "eyeBlinkRight"), "blink closes the lids"),
}  # fmt: skip

# The 52 MediaPipe blendshape categories, in the model's output order (`_neutral` first; no tongueOut).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)  # fmt: skip

# AU → a short phrase in MERR's style. AU05 "Eyes widened" and AU26 "Wide-mouthed" are the authors' own
# (FIG peak_frame_au_02); the rest follow FACS names in the same plain register.
AU_PHRASES: dict[str, str] = {
    "AU01": "Inner brows raised",
    "AU02": "Outer brows raised",
    "AU04": "Brows furrowed",
    "AU05": "Eyes widened",
    "AU06": "Cheeks raised",
    "AU07": "Eyelids tightened",
    "AU09": "Nose wrinkled",
    "AU10": "Upper lip raised",
    "AU12": "Lip corners pulled up",
    "AU14": "Cheeks dimpled",
    "AU15": "Lip corners pulled down",
    "AU17": "Chin raised",
    "AU20": "Lips stretched",
    "AU23": "Lips tightened",
    "AU25": "Lips parted",
    "AU26": "Wide-mouthed",
    "AU28": "Lips sucked in",
    "AU45": "Eyes closed",
}

# How MediaPipe's blendshapes become AU intensities (faces/mediapipe.py, faces/stage.py). Three steps:
# 1. The population's resting face is removed. BLENDSHAPE_REST is what the blendshape model reads on a
#    face with every AU at 0: py-feat 2.1.5's AU → FaceMesh model (`feat/resources/au_to_mesh_pls_v4.npz`,
#    learned on real AU-coded video) at all-zero AUs, fed to MediaPipe's own blendshape model
#    (`face_blendshapes.tflite` in face_landmarker.task), averaged over nine head poses and both sides
#    (scripts/derive_au_scale.py prints these numbers). A resting face reads eyeSquint ≈ 0.25: the reason
#    AU07 was "present" in 41 % of frames when scores × 5 were taken as intensities.
# 2. The scale: AU_SCALE[au] is the blendshape change taken to mean full intensity (OpenFace 5). The
#    same chain measures how far one AU alone at full intensity (py-feat 1.0) moves the AU's own
#    blendshape. That response is a lower bound: the chain's AU inputs were themselves predicted AUs,
#    whose errors flatten a fitted slope. The ARKit definition (the shape fully on is the movement at
#    its maximum, scale 1.0) is the upper bound. Where the chain's response reaches CHAIN_MIN_RESPONSE the
#    scale is the geometric mean of the two bounds; where it does not (the AU barely moves FaceMesh
#    geometry, or the regression spreads it over other shapes) the ARKit definition is kept. Each row says
#    which and why.
# 3. Per person (faces/stage.py): a low percentile of each AU over the clip's frames of that face is
#    subtracted, as OpenFace's person-specific offset correction does, capped so that an expression held
#    through the whole clip is not taken for the resting face (faces.baseline_percentile, baseline_max).
BLENDSHAPE_REST: dict[str, float] = {
    "browDownLeft": 0.048, "browDownRight": 0.048, "browOuterUpLeft": 0.053, "browOuterUpRight": 0.053,
    "eyeBlinkLeft": 0.070, "eyeBlinkRight": 0.070, "eyeSquintLeft": 0.249, "eyeSquintRight": 0.249,
    "mouthLowerDownLeft": 0.025, "mouthLowerDownRight": 0.025, "mouthPressLeft": 0.034, "mouthPressRight": 0.034,
    "mouthShrugUpper": 0.056, "mouthUpperUpLeft": 0.041, "mouthUpperUpRight": 0.041,
}  # fmt: skip
CHAIN_MIN_RESPONSE = 0.3
#   AU: (blendshape change at full intensity, how it was set)
AU_SCALE: dict[str, tuple[float, str]] = {
    "AU01": (0.610, "chain: browInnerUp +0.372 at AU01 = 1; sqrt(0.372 x 1.0)"),
    "AU02": (1.0, "ARKit definition; the chain moves browOuterUp by only +0.05 (AU02 spreads into browInnerUp)"),
    "AU04": (0.774, "chain: browDown +0.599 at AU04 = 1; sqrt(0.599 x 1.0)"),
    "AU05": (1.0, "ARKit definition; the chain moves eyeWide by +0.27 and the brows by +0.74 (AU05 co-occurs with brow raises)"),
    "AU06": (1.0, "ARKit definition; the chain moves cheekSquint/eyeSquint by +0.10 (AU06 co-occurs with AU12 in the data)"),
    "AU07": (1.0, "ARKit definition; the chain moves eyeSquint by only +0.15"),
    "AU09": (1.0, "ARKit definition; the chain does not move noseSneer"),
    "AU10": (1.0, "ARKit definition; the chain moves mouthUpperUp by only +0.09"),
    "AU12": (0.807, "chain: mouthSmile +0.652 at AU12 = 1; sqrt(0.652 x 1.0)"),
    "AU14": (1.0, "ARKit definition; the chain does not move mouthDimple"),
    "AU15": (1.0, "ARKit definition; the chain does not move mouthFrown"),
    "AU17": (1.0, "ARKit definition; the chain moves mouthShrugLower by +0.02"),
    "AU20": (1.0, "ARKit definition; the chain moves mouthStretch by +0.14 (and mouthLowerDown by +0.54)"),
    "AU23": (1.0, "ARKit definition; the chain does not move mouthPress"),
    "AU25": (1.0, "ARKit definition; the chain does not move jawOpen"),
    "AU26": (0.661, "chain: jawOpen +0.437 at AU26 = 1; sqrt(0.437 x 1.0)"),
    "AU28": (1.0, "ARKit definition; the chain moves mouthRoll by +0.11"),
    "AU45": (0.861, "chain: eyeBlink +0.742 at AU43 (eyes closed) = 1, py-feat has no AU45; sqrt(0.742 x 1.0)"),
}  # fmt: skip


@dataclass(frozen=True)
class Prototype:
    """A label's AU prototype. Every group of `core` needs one present AU; `support` adds to the score;
    a present `contradicts` AU lowers it (at full intensity to nothing)."""

    core: tuple[tuple[str, ...], ...]
    support: tuple[str, ...]
    contradicts: tuple[str, ...]
    source: str


# AU prototypes of the eight MERR labels that have one (neutral is the absence of a match). EMFACS: Friesen
# & Ekman's emotion prototypes (e.g. surprise 1+2+5B+26, 1+2+26, 5B+26; anger 4+5+7+23; sadness 1+4+15;
# fear 1+2+4+5+20+26; contempt unilateral 12+14). OLD-MERR/FIG: the MERR write-up and figures (AU05 + AU26
# for surprise; AU06 + AU12 for happy). MERF: MER-Factory's EMOTION_TO_AU_MAP.
EMOTION_PROTOTYPES: dict[str, Prototype] = {
    "happy": Prototype((("AU12",),), ("AU06", "AU25"), ("AU15",),
                       "EMFACS happiness 6+12; author in issue #12 and DOCS-SITE (AU06, AU12); MERF"),
    "sad": Prototype((("AU15", "AU17"), ("AU01", "AU04")), ("AU06",), ("AU12", "AU02"),
                     "EMFACS sadness 1+4+15 (and 1+4+15+17); DOCS-SITE construction.md (AU01, AU04, AU15)"),
    "angry": Prototype((("AU04",), ("AU05", "AU07", "AU23")), ("AU10", "AU17", "AU26"), ("AU12", "AU01", "AU02"),
                       "EMFACS anger 4+5+7+23 (with 10, 17, 26 variants); DOCS-SITE construction.md"),
    "surprise": Prototype((("AU01",), ("AU02",), ("AU05", "AU26")), ("AU25",), ("AU04", "AU07"),
                          "EMFACS surprise 1+2+5B+26; OLD-MERR and FIG give AU05 + AU26; MERF"),
    "fear": Prototype((("AU01", "AU02"), ("AU04",), ("AU05", "AU20", "AU26")), ("AU07", "AU25"), ("AU12",),
                      "EMFACS fear 1+2+4+5+20+26; MERF EMOTION_TO_AU_MAP"),
    "contempt": Prototype((("AU14",),), ("AU12", "AU10"), ("AU06", "AU15"),
                          "EMFACS contempt (unilateral 12+14); MERF adds AU10, AU17"),
    "worried": Prototype((("AU01",), ("AU04",)), ("AU20", "AU23", "AU28"), ("AU12", "AU15"),
                         "ours, because MERR publishes none: the worried brow (inner brows drawn up and together, "
                         "1+4 without the sad mouth) with stretched or pressed lips; MERF's AU20 + AU28 rarely fires"),
    "doubt": Prototype((("AU04",), ("AU14", "AU17", "AU28")), ("AU07", "AU23"), ("AU05", "AU12", "AU01"),
                       "ours, because MERR publishes none: lowered brows with a pushed-up or one-sided mouth "
                       "(chin raise, dimpler, lips sucked in), eyes narrowed"),
}  # fmt: skip


# The facex facial-expression classifier's classes in its output order (facex/core.py), and the MERR label
# each one is (faces/classifier.py). Disgust has no MERR label.
EXPRESSION_CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sadness", "surprised")
EXPRESSION_TO_LABEL: dict[str, str | None] = {
    "anger": "angry", "disgust": None, "fear": "fear", "happy": "happy", "neutral": "neutral",
    "sadness": "sad", "surprised": "surprise",
}  # fmt: skip
