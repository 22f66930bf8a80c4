"""A second opinion on the peak face: facex 1.1.0's facial-expression classifier (TFLite, MIT).

It reads a 200x200 grey face crop as three equal channels scaled to 0-1 and returns the probabilities of
seven classes. Its training set is not documented, so it never labels a clip: it is stored beside the AU
pseudo-label, and `label_agreement` says whether the two agree (a setting can require that they do).
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from merr_builder.assets import FACE_EXPRESSION_CLASSIFIER, locate
from merr_builder.facs import EXPRESSION_CLASSES, EXPRESSION_TO_LABEL

INPUT_SIDE = 200


class ExpressionClassifier:
    def __init__(self, model_path: Path | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.model_file = locate(FACE_EXPRESSION_CLASSIFIER, model_path)
        self._interpreter = Interpreter(model_path=str(self.model_file), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._lock = threading.Lock()  # one interpreter, its tensors are not shared between threads

    def scores(self, face_rgb: np.ndarray) -> dict[str, float]:
        """Class → probability for a square RGB face crop."""
        grey = cv2.cvtColor(face_rgb, cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (INPUT_SIDE, INPUT_SIDE), interpolation=cv2.INTER_AREA)
        image = np.repeat((grey.astype(np.float32) / 255.0)[None, :, :, None], 3, axis=3)
        with self._lock:
            self._interpreter.set_tensor(self._input, image)
            self._interpreter.invoke()
            out = self._interpreter.get_tensor(self._output)[0]
        return {name: round(float(p), 4) for name, p in zip(EXPRESSION_CLASSES, out)}


def classifier_label(scores: dict[str, float]) -> str | None:
    """The MERR label of the most probable class (None for disgust)."""
    return EXPRESSION_TO_LABEL[max(scores, key=lambda name: scores[name])]
