"""The detector modes compared: each kind (``short``, ``full``, ``tiled``) three ways.

- ``follow`` (named by the kind alone, e.g. ``tiled``): the default detector, the face landmark
  model verifying every box and following faces from frame to frame (:class:`~fer_stream.model.mesh.MeshDetector`);
- ``verify-only`` (``tiled/verify-only``): every box verified, the detector run on every frame;
- ``plain`` (``tiled/plain``): the detector alone, as with ``--no-verify`` (the tiled detector's
  own check of small faces with the short-range model included).

:class:`LandmarkClock` times the landmark model inside a mode's detector: seconds spent and crops
run, hence its cost per face.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from fer_stream.build import make_detector
from fer_stream.config import Config
from fer_stream.model.detector import Detector
from fer_stream.model.landmarks import FaceLandmarker, Landmarks, Roi
from fer_stream.model.mesh import MeshDetector

VARIANTS = ("follow", "verify-only", "plain")


@dataclass(frozen=True)
class Mode:
    """A detector kind and how its boxes are checked (module docstring)."""

    kind: str
    variant: str = "follow"

    @property
    def name(self) -> str:
        return self.kind if self.variant == "follow" else f"{self.kind}/{self.variant}"

    @property
    def verify(self) -> bool:
        return self.variant != "plain"

    @property
    def follow(self) -> bool:
        return self.variant == "follow"


def modes(kinds: Sequence[str], variants: Sequence[str] = VARIANTS) -> list[Mode]:
    """Every kind in each variant, kind by kind."""
    return [Mode(k, v) for k in dict.fromkeys(kinds) for v in VARIANTS if v in variants]


class LandmarkClock:
    """A face landmark model that counts the crops it runs and the seconds they take."""

    def __init__(self, landmarker: FaceLandmarker) -> None:
        self.inner = landmarker
        self.crops = 0
        self.seconds = 0.0

    def run(self, image: np.ndarray, rois: Sequence[Roi]) -> list[Landmarks]:
        if not rois:
            return []
        started = time.perf_counter()
        out = self.inner.run(image, rois)
        self.seconds += time.perf_counter() - started
        self.crops += len(rois)
        return out

    def close(self) -> None:
        self.inner.close()

    def figures(self) -> dict[str, float | int | None]:
        ms = round(1e3 * self.seconds / self.crops, 3) if self.crops else None
        return {"crops": self.crops, "seconds": round(self.seconds, 3), "ms_per_face": ms}


def open_mode(cfg: Config, mode: Mode) -> tuple[Detector, LandmarkClock | None]:
    """The mode's detector, built from the settings, and the clock on its landmark model (None: plain)."""
    detector = make_detector(cfg, kind=mode.kind, verify=mode.verify, follow=mode.follow)
    if not isinstance(detector, MeshDetector):
        return detector, None
    clock = LandmarkClock(detector.landmarker)
    detector.landmarker = cast(FaceLandmarker, clock)  # it has what MeshDetector uses: run and close
    return detector, clock
