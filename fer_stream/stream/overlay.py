"""Drawing predictions onto frames: box, label and confidence per face.

Each label starts with the face's track id (``#3 happy 87%``). Confident predictions get a solid
green box; flagged ones (under the threshold) a dashed amber box and a ``?`` after the label, so
they stay distinct without colour too; a new track not yet classified shows a grey ``face``; a face
too small, blurry or unsure to classify a thin grey box marked ``unusable``. With
``draw_rejected``, the boxes the face landmark model rejected as no face are drawn too: thin, dashed,
red, marked ``no face``. Line width and text size scale with the frame, from 360p to 4K.

>>> annotated = Overlay().draw(frame.image, faces)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer_stream import palette
from fer_stream.frames import Box, Face
from fer_stream.io.privacy import OFF, Privacy

RGB = tuple[int, int, int]
# The state colours of fer_stream.palette (shared with the report and the dashboard), as RGB.
CONFIDENT: RGB = palette.rgb(palette.CONFIDENT)
FLAGGED: RGB = palette.rgb(palette.FLAGGED)
UNCLASSIFIED: RGB = palette.rgb(palette.UNCLASSIFIED)
UNUSABLE: RGB = palette.rgb(palette.UNUSABLE)
REJECTED: RGB = (220, 40, 40)
TEXT: RGB = (0, 0, 0)


class Overlay:
    """Draws faces onto a copy of an RGB frame (``draw_rejected``: rejected boxes too). ``privacy``
    says what the pictures may show: the pipeline hides the faces with it before drawing."""

    def __init__(self, confident: RGB = CONFIDENT, flagged: RGB = FLAGGED, *, draw_rejected: bool = False, privacy: Privacy = OFF) -> None:
        self.confident = confident
        self.flagged = flagged
        self.draw_rejected = draw_rejected
        self.privacy = privacy

    def draw(self, image: np.ndarray, faces: Sequence[Face], rejected: Sequence[Box] = ()) -> np.ndarray:
        """A copy of ``image`` with every face (and, with ``draw_rejected``, every ``rejected`` box) drawn on it."""
        out = image.copy()
        rejected = rejected if self.draw_rejected else ()
        if not faces and not rejected:
            return out
        scale = min(out.shape[:2]) / 720.0
        thickness = max(1, round(2.0 * scale))
        font_scale = max(0.4, 0.7 * scale)
        for box in rejected:
            _dashed_rect(out, box, REJECTED, max(1, thickness // 2))
            _label(out, box, "no face", REJECTED, font_scale * 0.8, max(1, thickness // 2))
        for face in faces:
            p = face.prediction
            tag = f"#{face.track} " if face.track is not None else ""
            if not face.usable:
                color, text, dashed = UNUSABLE, f"{tag}unusable", True
            elif p is None:
                color, text, dashed = UNCLASSIFIED, f"{tag}face", False
            elif p.flagged:
                color, text, dashed = self.flagged, f"{tag}{p.label}? {p.confidence:.0%}", True
            else:
                color, text, dashed = self.confident, f"{tag}{p.label} {p.confidence:.0%}", False
            if dashed:
                _dashed_rect(out, face.box, color, thickness)
            else:
                b = face.box
                cv2.rectangle(out, (b.x, b.y), (b.x + b.w - 1, b.y + b.h - 1), color, thickness, cv2.LINE_AA)
            _label(out, face.box, text, color, font_scale, thickness)
        return out


def _dashed_rect(img: np.ndarray, b: Box, color: RGB, thickness: int) -> None:
    dash = max(4, 4 * thickness)
    x0, y0, x1, y1 = b.x, b.y, b.x + b.w - 1, b.y + b.h - 1
    segments = []
    for a, c, fixed, horizontal in ((x0, x1, y0, True), (x0, x1, y1, True), (y0, y1, x0, False), (y0, y1, x1, False)):
        starts = np.arange(a, c, 2 * dash)
        ends = np.minimum(starts + dash, c)
        for s, e in zip(starts.tolist(), ends.tolist()):
            segments.append(np.array([[s, fixed], [e, fixed]] if horizontal else [[fixed, s], [fixed, e]], np.int32))
    cv2.polylines(img, segments, False, color, thickness, cv2.LINE_AA)


def _label(img: np.ndarray, b: Box, text: str, color: RGB, font_scale: float, thickness: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    text_thickness = max(1, thickness // 2 + 1)
    (tw, th), base = cv2.getTextSize(text, font, font_scale, text_thickness)
    pad = max(2, thickness)
    height = th + base + 2 * pad
    top = b.y - height if b.y - height >= 0 else b.y  # above the box, or inside it at the top edge
    left = min(max(0, b.x), max(0, img.shape[1] - tw - 2 * pad))
    cv2.rectangle(img, (left, top), (left + tw + 2 * pad, top + height), color, cv2.FILLED)
    cv2.putText(img, text, (left + pad, top + pad + th), font, font_scale, TEXT, text_thickness, cv2.LINE_AA)
