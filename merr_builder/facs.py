"""FACS tables: the one definition of the AUs measured, how MediaPipe's blendshapes stand for them, the
phrases that describe them, and the AU prototypes of the nine MERR labels.

Sources are the research notes in shared/research/emotion_llama_merr_facts.md (§1.3-1.4): the Emotion-LLaMA
repository and its issues (OLD-MERR, DOCS-SITE, FIG), MER-Factory (MERF), and FACS itself.
"""

from __future__ import annotations

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

# AU prototypes of the nine MERR labels, with where each comes from. `neutral` has none: it is the label
# when no prototype is matched. `doubt` has no published MERR prototype; ours is marked as our choice.
EMOTION_PROTOTYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "happy": (("AU06", "AU12"), "DOCS-SITE construction.md; author in issue #12 (AU06, AU12)"),
    "sad": (("AU01", "AU04", "AU15"), "DOCS-SITE construction.md"),
    "angry": (("AU04", "AU05", "AU07", "AU23"), "DOCS-SITE construction.md"),
    "surprise": (("AU01", "AU02", "AU05", "AU26"), "MERF EMOTION_TO_AU_MAP; OLD-MERR gives AU05 + AU26"),
    "fear": (("AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"), "MERF EMOTION_TO_AU_MAP (EMFACS fear)"),
    "contempt": (("AU12", "AU14"), "EMFACS contempt (unilateral AU12 + AU14); MERF adds AU10, AU17"),
    "worried": (("AU01", "AU04", "AU20"), "our choice: brows drawn up and together with stretched lips (MERF's AU20 + AU28 rarely fires)"),
    "doubt": (("AU04", "AU07", "AU14"), "our choice: brows lowered, lids tightened, one-sided mouth; no MERR source"),
}  # fmt: skip
