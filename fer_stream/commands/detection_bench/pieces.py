"""What the benchmark's frames are made of, cut from the sampled shots.

- **heads**: head and shoulders around a shot's reference face (the face's box known in it);
  any other face found inside is covered;
- **backgrounds**: squares of the videos' frames clear of every face found (each grown by half its
  size): real walls, clothes and light, not a flat colour that nothing could mistake for a face;
- **hard negatives**: pieces of the shots with every face covered (:mod:`.masking`): head and
  shoulders without a face (hair, neck, shoulders, raised hands), random squares, and whole pictures.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_stream.model.blazeface import ios_matrix, iou_matrix

from .footage import Shot
from .masking import cover, faceless, one_per_face


@dataclass(frozen=True)
class Patch:
    """A picture to place on a frame (RGB) and the box of the face in it (``x0, y0, x1, y1``), or
    of the covered face a hard-negative piece was cut around, or None."""

    image: np.ndarray
    face: tuple[float, float, float, float] | None = None

    @property
    def face_height(self) -> float | None:
        return None if self.face is None else self.face[3] - self.face[1]

    def scaled(self, factor: float) -> Patch:
        """This patch resized by ``factor`` (area averaging when shrinking: no aliasing), its face box too."""
        h, w = self.image.shape[:2]
        size = (max(2, round(w * factor)), max(2, round(h * factor)))
        image = cv2.resize(self.image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        if self.face is None:
            return Patch(image)
        sx, sy = size[0] / w, size[1] / h
        x0, y0, x1, y1 = self.face
        return Patch(image, (x0 * sx, y0 * sy, x1 * sx, y1 * sy))


def _around(image: np.ndarray, box: np.ndarray, side: float, above: float, below: float) -> Patch:
    """The part of ``image`` around ``box`` with margins of ``side``, ``above`` and ``below`` times its size."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    cx0, cy0 = max(0, round(x0 - bw * side)), max(0, round(y0 - bh * above))
    cx1, cy1 = min(w, round(x1 + bw * side)), min(h, round(y1 + bh * below))
    return Patch(image[cy0:cy1, cx0:cx1].copy(), (x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0))


def heads(shots: Sequence[Shot]) -> list[Patch]:
    """Head and shoulders around each reference face (margins: 0.6 of the face each side and above, 0.9 below)."""
    out = []
    for shot in shots:
        if shot.reference is None:
            continue
        ref = shot.faces[shot.reference]
        same = (iou_matrix(shot.faces, ref[None]) > 0.3) | (ios_matrix(shot.faces, ref[None]) > 0.7)
        others = one_per_face(shot.faces[~same[:, 0]])
        image = cover(shot.image, others) if len(others) else shot.image
        out.append(_around(image, ref, 0.6, 0.6, 0.9))
    return out


def backgrounds(shots: Sequence[Shot], rng: random.Random, tries: int = 8) -> list[np.ndarray]:
    """Squares of the shots (a fifth to a third of their short side) that stay clear of every face."""
    out = []
    for shot in shots:
        h, w = shot.image.shape[:2]
        f = shot.faces
        grown = np.concatenate([f[:, :2] - (f[:, 2:] - f[:, :2]) / 2, f[:, 2:] + (f[:, 2:] - f[:, :2]) / 2], axis=1)
        for _ in range(tries):
            side = rng.randint(min(h, w) // 5, min(h, w) // 3)
            x, y = rng.randint(0, w - side), rng.randint(0, h - side)
            clear = (x + side <= grown[:, 0]) | (grown[:, 2] <= x) | (y + side <= grown[:, 1]) | (grown[:, 3] <= y)
            if clear.all():
                out.append(shot.image[y : y + side, x : x + side].copy())
    return out


@dataclass(frozen=True)
class Negatives:
    """Hard negatives: the covered pictures themselves, and pieces cut from them."""

    pictures: list[np.ndarray]
    pieces: list[Patch]


def hard_negatives(shots: Sequence[Shot], rng: random.Random, squares: int = 3) -> Negatives:
    """Each shot with its faces covered (close-ups left out); from each, head and shoulders around
    every covered face (margins: 1.0 of the face each side, 0.8 above, 2.0 below: shoulders, arms
    and raised hands), ``squares`` random squares (a third to two thirds of the short side) and
    the whole picture."""
    pictures, pieces = [], []
    for shot in shots:
        image = faceless(shot)
        if image is None:
            continue
        pictures.append(image)
        for box in one_per_face(shot.faces):
            pieces.append(_around(image, box, 1.0, 0.8, 2.0))
        h, w = image.shape[:2]
        for _ in range(squares):
            side = rng.randint(min(h, w) // 3, 2 * min(h, w) // 3)
            x, y = rng.randint(0, w - side), rng.randint(0, h - side)
            pieces.append(Patch(image[y : y + side, x : x + side].copy()))
        pieces.append(Patch(image))
    return Negatives(pictures, pieces)
