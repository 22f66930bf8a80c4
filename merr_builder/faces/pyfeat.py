"""py-feat backend (optional extra: `pip install merr_builder[pyfeat]`), written against py-feat 2.x.

Never part of the default environment: py-feat 2.1.5 pulls a torchvision that breaks transformers beside
torch 2.13 CPU, and its detectors fetch weights from the Hugging Face hub, which an offline machine must
have in its cache already (HF_HUB_OFFLINE=1 stays set). py-feat's AU models give presence probabilities
(0-1) rather than intensities; they are put on the 0-5 scale linearly, and its AU43 (eyes closed)
stands for AU45.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from merr_builder.facs import AU_INTENSITY_MAX, AU_NAMES
from merr_builder.faces.protocol import Face, FrameFaces
from merr_builder.records import ClipInfo
from merr_builder.media import Frame

# Our AU → py-feat's column (py-feat reports AU43 "eyes closed" where OpenFace reports AU45 "blink").
PYFEAT_COLUMN = {au: ("AU43" if au == "AU45" else au) for au in AU_NAMES}


class PyFeatUnavailable(RuntimeError):
    """py-feat or its model weights are not installed."""


class PyFeatExtractor:
    name = "pyfeat"
    needs_frames = True
    follows_faces = False  # every frame is read on its own
    person_normalised = False  # per frame; the stage removes the person's resting face

    def __init__(self, device: str = "cpu") -> None:
        try:
            from feat import Detectorv1
        except Exception as exc:  # ImportError, or a broken torchvision beside this torch
            raise PyFeatUnavailable(
                f"py-feat cannot be imported ({type(exc).__name__}: {exc}); install the extra with "
                "`pip install merr_builder[pyfeat]` in an environment whose torchvision matches torch"
            ) from exc
        try:
            self._detector = Detectorv1(device=device)
        except Exception as exc:  # weights missing from the local hub cache (no download offline)
            raise PyFeatUnavailable(f"py-feat's model weights are not in the local Hugging Face cache: {exc}") from exc

    def analyse(self, clip: ClipInfo | None, frames: Iterable[Frame]) -> list[FrameFaces]:
        import torch

        out = []
        for frame in frames:
            tensor = torch.from_numpy(np.ascontiguousarray(frame.rgb)).permute(2, 0, 1).unsqueeze(0)
            fex = self._detector.detect(tensor, data_type="tensor", progress_bar=False)
            faces = []
            for _, row in fex.iterrows():
                if not np.isfinite(row.get("FaceScore", np.nan)):
                    continue
                aus = np.array(
                    [min(AU_INTENSITY_MAX, float(row.get(PYFEAT_COLUMN[au], 0.0)) * AU_INTENSITY_MAX) for au in AU_NAMES],
                    dtype=np.float32,
                )
                pose = tuple(float(row[k]) for k in ("Yaw", "Pitch", "Roll")) if "Yaw" in row else None
                faces.append(
                    Face(
                        box=(float(row["FaceRectX"]), float(row["FaceRectY"]), float(row["FaceRectWidth"]), float(row["FaceRectHeight"])),
                        confidence=float(row["FaceScore"]),
                        aus=aus,
                        head_pose=pose,  # type: ignore[arg-type]
                    )
                )
            out.append(FrameFaces(frame.index, frame.time_s, faces))
        return out
