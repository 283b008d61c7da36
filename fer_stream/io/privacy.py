"""Faces hidden in every picture fer-stream makes (``--privacy blur|pixelate``, ``--no-face-images``).

The pipeline applies :meth:`Privacy.apply` to each result before anything draws or writes it, so
the annotated MP4, the MJPEG preview, the dashboard's and report's thumbnails and the review
store's pictures all come from the hidden frame; the boxes, labels and records stay as they are
(the classifier saw the real face first). Each face's box, grown by :data:`MARGIN` on every side
(hair, ears, the edge of the chin), is

* ``blur``: shrunk to 1/16 of its size, blurred and scaled back: no feature survives;
* ``pixelate``: 8x8 blocks over the face;
* with ``face_images`` off (``--no-face-images``): filled grey, and every face crop dropped (no
  thumbnails, no review pictures).

>>> Privacy("blur").active, Privacy().active
(True, False)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from fer_stream.frames import Box, Face, FrameResult

MODES = ("off", "blur", "pixelate")
MARGIN = 0.15
BLOCKS = 8  # pixelate: blocks across a face
FILL = 128  # --no-face-images: the grey a face is painted


@dataclass(frozen=True)
class Privacy:
    """How faces are hidden (see the module's text)."""

    mode: str = "off"
    face_images: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"privacy must be one of {', '.join(MODES)}, not {self.mode!r}")

    @property
    def active(self) -> bool:
        return self.mode != "off" or not self.face_images

    def hide(self, image: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """A copy of ``image`` (H x W x 3) with every box hidden."""
        out = image.copy()
        h, w = out.shape[:2]
        for box in boxes:
            b = box.expand(MARGIN).clip(w, h)
            if b.w < 2 or b.h < 2:
                continue
            region = out[b.y : b.y + b.h, b.x : b.x + b.w]
            region[:] = self._hidden(region)
        return out

    def hide_crop(self, crop: np.ndarray | None) -> np.ndarray | None:
        """A face crop hidden whole (None without face images)."""
        if crop is None or not self.face_images:
            return None
        return self._hidden(crop) if crop.size else crop

    def _hidden(self, region: np.ndarray) -> np.ndarray:
        h, w = region.shape[:2]
        if not self.face_images:
            return np.full_like(region, FILL)
        if self.mode == "pixelate":
            bw, bh = max(1, min(BLOCKS, w)), max(1, min(BLOCKS, h))
            small = cv2.resize(region, (bw, bh), interpolation=cv2.INTER_AREA)
            return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
        sw, sh = max(1, w // 16), max(1, h // 16)
        small = cv2.GaussianBlur(cv2.resize(region, (sw, sh), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)

    def apply(self, result: FrameResult) -> FrameResult:
        """``result`` with its frame's faces hidden and its faces' crops hidden (or dropped)."""
        if not self.active:
            return result
        boxes = [f.box for f in result.faces] + list(result.rejected)
        frame = dataclasses.replace(result.frame, image=self.hide(result.frame.image, boxes))
        faces = tuple(_with_crop(f, self.hide_crop(f.crop)) for f in result.faces)
        return FrameResult(frame, faces, None, result.rejected)


def _with_crop(face: Face, crop: np.ndarray | None) -> Face:
    return dataclasses.replace(face, crop=crop)


OFF = Privacy()
