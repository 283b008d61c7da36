"""Hard-negative clips: frames with no face at all, made of what surrounds faces.

Each clip's backdrop is one of the covered pictures (filling the frame) or a background mosaic,
seen by a slowly moving camera; on it lie up to ``pieces`` hard-negative pieces
(:func:`~.pieces.hard_negatives`), none overlapping: a piece cut around a covered face is sized
so that the face it hid would be 24 to 300 px tall, any other piece is 12 to 50 % of the frame's
height. They drift by up to 2 px per frame, zoom by up to 5 % and turn a few degrees, so that a
detector that follows faces gets the chance to follow a false one. Every box found is false.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from .motion import BACKDROP, Motion, Sprite, Take, camera_path, overlaps
from .pieces import Negatives, Patch
from .scenes import CANVASES, mosaic
from .scoring import SIZES

NEGATIVE_FRAMES = 10
TRIES = 20  # places tried for each piece


def negative_clips(
    negatives: Negatives,
    backgrounds: Sequence[np.ndarray],
    *,
    resolution: str,
    count: int,
    frames: int = NEGATIVE_FRAMES,
    pieces: int = 8,
    rng: random.Random,
) -> Iterator[Take]:
    """``count`` clips of ``frames`` face-free frames at ``resolution`` (module docstring)."""
    size = CANVASES[resolution]
    w, h = size
    backdrop_size = (round(w * BACKDROP), round(h * BACKDROP))
    for _ in range(count):
        if negatives.pictures and rng.random() < 0.5:
            backdrop = _filling(negatives.pictures[rng.randrange(len(negatives.pictures))], backdrop_size)
        else:
            backdrop = mosaic(backdrop_size, backgrounds, rng)
        sprites: list[Sprite] = []
        for _ in range(pieces * TRIES):
            if len(sprites) >= pieces or not negatives.pieces:
                break
            piece = negatives.pieces[rng.randrange(len(negatives.pieces))]
            ph, pw = piece.image.shape[:2]
            hidden = piece.face_height
            target = rng.choice([s for s in SIZES if s >= 24]) / hidden if hidden else rng.uniform(0.12, 0.5) * h / ph
            zoom = rng.uniform(0.95, 1.05)
            top = target * max(1.0, zoom)
            if pw * top >= w or ph * top >= h or min(pw, ph) * top < 8:
                continue
            tilt = rng.uniform(-8, 8)
            drift = rng.uniform(0, 2.0)
            direction = rng.uniform(0, 2 * np.pi)
            motion = Motion(
                start=(rng.uniform(0, w), rng.uniform(0, h)),
                velocity=(drift * np.cos(direction), drift * np.sin(direction)),
                scale=(1 / max(1.0, zoom), zoom / max(1.0, zoom)),
                angle=(tilt, tilt + rng.uniform(-3, 3)),
            )
            sprite = Sprite(Patch(piece.scaled(top).image), motion)  # no face: the hidden one's box only sized it
            if not any(overlaps(sprite, other, frames) for other in sprites):
                sprites.append(sprite)
        yield Take(resolution, size, backdrop, camera_path(size, frames, rng, pan=0.03, zoom=0.03, roll=1.0), tuple(sprites), frames)


def _filling(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``picture`` scaled to cover ``size`` (``width, height``) and cut to it about its centre."""
    w, h = size
    ph, pw = picture.shape[:2]
    f = max(w / pw, h / ph)
    big = cv2.resize(picture, (max(w, round(pw * f)), max(h, round(ph * f))), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y : y + h, x : x + w])
