"""Sequences: clips of moving faces, so that following faces from frame to frame is measured.

Each sequence puts up to ``faces`` heads of different sizes (face heights dealt from
:data:`~.scoring.SIZES`, from 20 px, so that every size comes up about equally often) on a
moving camera's view of a background mosaic. Every head moves on its own: a drift of 1 to 5 %
of its face's height per frame (plus up to 1.5 px), a slow zoom (its size changes by -20 % to
+25 % over the clip) and a small rotation (a tilt of up to 12 degrees, changing by up to 8).
One head enters the frame (from outside, wholly in by a third of the clip) and one leaves it
(wholly out by two thirds); the others stay wholly inside. Patches never overlap.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np

from .motion import BACKDROP, Motion, Sprite, Take, camera_path, overlaps
from .pieces import Patch
from .scenes import CANVASES, mosaic
from .scoring import SIZES

TRIES = 40  # places tried for each head


def face_sequences(
    heads: Sequence[Patch],
    backgrounds: Sequence[np.ndarray],
    *,
    resolution: str,
    count: int,
    frames: int,
    faces: int = 6,
    rng: random.Random,
) -> Iterator[Take]:
    """``count`` sequences of ``frames`` frames at ``resolution`` (module docstring)."""
    size = CANVASES[resolution]
    w, h = size
    deck: list[int] = []
    for _ in range(count):
        backdrop = mosaic((round(w * BACKDROP), round(h * BACKDROP)), backgrounds, rng)
        heights = sorted(_deal(deck, faces, rng), reverse=True)
        # The heads that enter and leave: two of the middle sizes (a 300 px face crossing the edge
        # would have to move a tenth of the frame per frame).
        middle = [i for i, s in enumerate(heights) if 32 <= s <= 160]
        roles = dict(zip(rng.sample(middle, min(2, len(middle))), ("enter", "leave")))
        sprites: list[Sprite] = []
        for i, face_h in enumerate(heights):
            for _ in range(TRIES):
                sprite = _sprite(heads[rng.randrange(len(heads))], face_h, roles.get(i, "stay"), size, frames, rng)
                if sprite is not None and not any(overlaps(sprite, other, frames) for other in sprites):
                    sprites.append(sprite)
                    break
        yield Take(resolution, size, backdrop, camera_path(size, frames, rng), tuple(sprites), frames)


def _deal(deck: list[int], n: int, rng: random.Random) -> list[int]:
    """``n`` different face heights off ``deck`` (refilled with every size from 20 px, shuffled, when
    it runs short), so that a run's sequences hold every size about equally often."""
    if len(deck) < n:
        fresh = [s for s in SIZES if s >= 20 and s not in deck]
        rng.shuffle(fresh)
        deck[:0] = fresh  # dealt from the end: what was left goes first
    return [deck.pop() for _ in range(min(n, len(deck)))]


def _sprite(head: Patch, face_h: float, role: str, size: tuple[int, int], frames: int, rng: random.Random) -> Sprite | None:
    """A head whose face is ``face_h`` px tall at the start, moving as ``role`` says; None if it does not fit."""
    w, h = size
    assert head.face is not None
    zoom = rng.uniform(0.8, 1.25)
    scale = face_h / (head.face[3] - head.face[1])
    # Shrink the patch once to its largest size in the clip; the frames then scale it by at most 1.
    top = scale * max(1.0, zoom)
    ph, pw = head.image.shape[:2]
    if pw * top >= w or ph * top >= h:
        return None
    patch = head.scaled(top)
    scales = (1 / max(1.0, zoom), zoom / max(1.0, zoom))  # of the shrunk patch: first and last frame
    assert patch.face is not None
    fw, fh = (patch.face[2] - patch.face[0]) * scales[0], (patch.face[3] - patch.face[1]) * scales[0]  # in the first frame
    tilt = rng.uniform(-12, 12)
    angles = (tilt, tilt + rng.uniform(-8, 8))
    speed = rng.uniform(0.01, 0.05) * face_h + rng.uniform(0, 1.5)
    if role == "stay":
        direction = rng.uniform(0, 2 * np.pi)
        v = (speed * np.cos(direction), speed * np.sin(direction))
        start = (rng.uniform(fw / 2, w - fw / 2), rng.uniform(fh / 2, h - fh / 2))
    else:
        # Wholly outside at the start (enter) or by two thirds of the clip (leave), crossing the
        # left or right edge in a third of the clip.
        side = rng.choice((-1, 1))
        vx = -side * max(speed, 1.1 * fw * max(scales) / (frames / 3))
        v = (vx if role == "enter" else -vx, rng.uniform(-0.3, 0.3) * speed)
        outside = (-fw * max(scales) / 2 - 1) if side < 0 else (w + fw * max(scales) / 2 + 1)
        y = rng.uniform(fh, h - fh)
        if role == "enter":
            start = (outside, y)
        else:
            t = round(frames * 2 / 3)
            start = (outside - v[0] * t, y - v[1] * t)
    sprite = Sprite(patch, Motion(start, v, scales, angles))
    if role == "stay" and not _inside_throughout(sprite, size, frames):
        return None
    return sprite


def _inside_throughout(sprite: Sprite, size: tuple[int, int], frames: int) -> bool:
    w, h = size
    for i in range(frames):
        box = sprite.face_box(i, frames)
        if box is None or box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
            return False
    return True
