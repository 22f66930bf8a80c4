"""FACS action-unit tables: the one definition of which AUs the build measures."""

from __future__ import annotations

# The AUs OpenFace 2 reports (17 intensities `_r` plus AU28 presence only), which MERR's AU analysis
# used (facts file §1.3-1.4). Every AU column in the shards follows this order.
AU_NAMES: tuple[str, ...] = (
    "AU01",
    "AU02",
    "AU04",
    "AU05",
    "AU06",
    "AU07",
    "AU09",
    "AU10",
    "AU12",
    "AU14",
    "AU15",
    "AU17",
    "AU20",
    "AU23",
    "AU25",
    "AU26",
    "AU28",
    "AU45",
)

# OpenFace's intensity scale, which every backend's intensities are expressed on.
AU_INTENSITY_MAX = 5.0
