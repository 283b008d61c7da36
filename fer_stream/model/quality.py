"""Is a face good enough to classify? Size, sharpness and detector score, against minimums.

A classifier trained on clear 48-224 px faces answers confidently on a 12 px smudge too; such
answers are noise. Each detected face gets a :class:`~fer_stream.frames.Quality`: its size (the
shorter side of its box) in pixels, its sharpness (variance of the Laplacian of its grey crop, resized to 64x64 so that the
figure does not depend on the face's size) and the detector's score. A face under any minimum is
*unusable*: drawn grey, not classified, counted apart.

>>> q = QualityGate(min_size=24, min_sharpness=20.0, min_score=0.6).assess(crop, box, 0.93)   # doctest: +SKIP
>>> q.usable, q.reason                                                                      # doctest: +SKIP
(True, None)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fer_stream.frames import Box, Pose, Quality

SHARPNESS_SIZE = 64  # crops are compared at this size


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of ``crop`` (RGB) in grey, resized to 64x64: higher is sharper."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    if grey.shape[:2] != (SHARPNESS_SIZE, SHARPNESS_SIZE):
        interp = cv2.INTER_AREA if min(grey.shape[:2]) > SHARPNESS_SIZE else cv2.INTER_LINEAR
        grey = cv2.resize(grey, (SHARPNESS_SIZE, SHARPNESS_SIZE), interpolation=interp)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


@dataclass(frozen=True)
class QualityGate:
    """The minimums a face must meet to be classified (0 switches a check off); ``max_yaw``: a face
    whose head ``pose`` is turned further than this (degrees) is a ``profile`` (0: no check)."""

    min_size: int = 0
    min_sharpness: float = 0.0
    min_score: float = 0.0
    max_yaw: float = 0.0

    def assess(self, crop: np.ndarray, box: Box, score: float, pose: Pose | None = None) -> Quality:
        size = min(box.w, box.h)
        sharp = sharpness(crop) if crop.size else 0.0
        reason = None
        if size < self.min_size:
            reason = "small"
        elif sharp < self.min_sharpness:
            reason = "blurry"
        elif score < self.min_score:
            reason = "low_score"
        elif pose is not None and self.max_yaw and abs(pose.yaw) > self.max_yaw:
            reason = "profile"
        return Quality(size_px=size, sharpness=round(sharp, 2), score=round(float(score), 4), reason=reason, pose=pose)
