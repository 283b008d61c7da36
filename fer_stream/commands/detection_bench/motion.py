"""Moving pictures with known faces: a camera moving over a backdrop, patches moving across it, and
where each face is in every frame.

A :class:`Take` is the plan of a clip, cheap to hold; :func:`render` makes its frames. The camera
pans, zooms slowly and rolls a little over a backdrop larger than the frame; each patch (:class:`Sprite`)
moves at a constant velocity while its scale and angle change linearly. A face's true box in a
frame is its box in the patch, scaled, centred where the patch's anchor (the face's centre) is:
a face wholly inside the frame is a true face; one partly outside (entering or leaving) is
*ignored* (neither a face to find nor a false box when found).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .pieces import Patch

Point = tuple[float, float]


@dataclass(frozen=True)
class Motion:
    """A path over ``frames``: the centre starts at ``start`` and moves ``velocity`` px per frame;
    scale and angle (degrees) go linearly from their first value to their second."""

    start: Point
    velocity: Point
    scale: tuple[float, float] = (1.0, 1.0)
    angle: tuple[float, float] = (0.0, 0.0)

    def at(self, i: int, frames: int) -> tuple[float, float, float, float]:
        """Centre x, y, scale and angle (radians) in frame ``i`` of ``frames``."""
        u = i / max(frames - 1, 1)
        s = self.scale[0] + (self.scale[1] - self.scale[0]) * u
        a = self.angle[0] + (self.angle[1] - self.angle[0]) * u
        return self.start[0] + self.velocity[0] * i, self.start[1] + self.velocity[1] * i, s, math.radians(a)


@dataclass(frozen=True)
class Sprite:
    """A patch and its path; the path moves the face's centre (or the patch's, without a face)."""

    patch: Patch
    motion: Motion

    @property
    def anchor(self) -> Point:
        f = self.patch.face
        if f is None:
            h, w = self.patch.image.shape[:2]
            return w / 2, h / 2
        return (f[0] + f[2]) / 2, (f[1] + f[3]) / 2

    def matrix(self, i: int, frames: int) -> np.ndarray:
        """The ``2 x 3`` map from patch to frame pixels in frame ``i``."""
        cx, cy, s, a = self.motion.at(i, frames)
        rot = s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        return np.concatenate([rot, (np.array([cx, cy]) - rot @ np.array(self.anchor))[:, None]], axis=1)

    def extent(self, i: int, frames: int) -> tuple[float, float, float, float]:
        """The axis-aligned box around the moved patch in frame ``i``."""
        h, w = self.patch.image.shape[:2]
        corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64) @ self.matrix(i, frames).T
        return corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()

    def face_box(self, i: int, frames: int) -> tuple[float, float, float, float] | None:
        """The face's true box in frame ``i``: its size in the patch, scaled, centred on the anchor."""
        f = self.patch.face
        if f is None:
            return None
        cx, cy, s, _ = self.motion.at(i, frames)
        hw, hh = (f[2] - f[0]) * s / 2, (f[3] - f[1]) * s / 2
        return cx - hw, cy - hh, cx + hw, cy + hh


@dataclass(frozen=True)
class Take:
    """The plan of one clip: frame size, the backdrop and the camera's path over it (its centre on
    the backdrop, zoom as scale, roll as angle), the sprites, and how many frames."""

    resolution: str
    size: tuple[int, int]
    backdrop: np.ndarray
    camera: Motion
    sprites: tuple[Sprite, ...]
    frames: int


@dataclass(frozen=True)
class Clip:
    """Frames to detect in order, with each frame's true and ignored face boxes (``x0, y0, x1, y1``).
    ``moving``: the frames follow on from one another; otherwise each is an unrelated picture."""

    resolution: str
    frames: Sequence[np.ndarray]
    truth: Sequence[np.ndarray]
    ignore: Sequence[np.ndarray]
    moving: bool


def camera_matrix(take: Take, i: int) -> np.ndarray:
    """The ``2 x 3`` map from frame pixels to backdrop pixels in frame ``i``."""
    cx, cy, zoom, a = take.camera.at(i, take.frames)
    w, h = take.size
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / zoom
    return np.concatenate([rot, (np.array([cx, cy]) - rot @ np.array([w / 2, h / 2]))[:, None]], axis=1)


def camera_fits(take: Take) -> bool:
    """Whether the frame stays on the backdrop in every frame."""
    w, h = take.size
    bh, bw = take.backdrop.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], np.float64)
    for i in range(take.frames):
        q = corners @ camera_matrix(take, i).T
        if q.min() < 0 or (q[:, 0] > bw).any() or (q[:, 1] > bh).any():
            return False
    return True


def overlaps(a: Sprite, b: Sprite, frames: int) -> bool:
    """Whether the two sprites' patches overlap in any frame."""
    for i in range(frames):
        ax0, ay0, ax1, ay1 = a.extent(i, frames)
        bx0, by0, bx1, by1 = b.extent(i, frames)
        if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
            return True
    return False


def render(take: Take) -> Clip:
    """The take's frames and, in each, the boxes of the faces wholly inside it (truth) and partly inside (ignored)."""
    w, h = take.size
    frames, truth, ignore = [], [], []
    for i in range(take.frames):
        frame = cv2.warpAffine(
            take.backdrop, camera_matrix(take, i), (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT
        )
        seen, partly = [], []
        for sprite in take.sprites:
            _paste(frame, sprite, i, take.frames)
            box = sprite.face_box(i, take.frames)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
                seen.append(box)
            elif x0 < w and y0 < h and x1 > 0 and y1 > 0:
                partly.append(box)
        frames.append(frame)
        truth.append(np.asarray(seen, np.float32).reshape(-1, 4))
        ignore.append(np.asarray(partly, np.float32).reshape(-1, 4))
    return Clip(take.resolution, frames, truth, ignore, moving=True)


def _paste(frame: np.ndarray, sprite: Sprite, i: int, frames: int) -> None:
    """Draw the sprite onto ``frame`` (in place), only over the part of the frame it covers."""
    h, w = frame.shape[:2]
    ex0, ey0, ex1, ey1 = sprite.extent(i, frames)
    x0, y0 = max(0, math.floor(ex0)), max(0, math.floor(ey0))
    x1, y1 = min(w, math.ceil(ex1)), min(h, math.ceil(ey1))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return
    m = sprite.matrix(i, frames)
    m[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    picture = cv2.warpAffine(sprite.patch.image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    ph, pw = sprite.patch.image.shape[:2]
    alpha = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    a = alpha.astype(np.float32)[..., None] / 255
    region = frame[y0:y1, x0:x1]
    region[:] = (a * picture + (1 - a) * region).astype(np.uint8)


BACKDROP = 1.35  # the backdrop's size over the frame's


def camera_path(size: tuple[int, int], frames: int, rng: random.Random, pan: float = 0.1, zoom: float = 0.1, roll: float = 3.0) -> Motion:
    """A camera path over a ``BACKDROP``-sized backdrop: a pan of up to ``pan`` of the frame's
    size, a zoom in of up to ``zoom``, a roll of up to ``roll`` degrees; it stays on the backdrop."""
    w, h = size
    bw, bh = w * BACKDROP, h * BACKDROP
    for _ in range(50):
        dx, dy = rng.uniform(-pan, pan) * w, rng.uniform(-pan, pan) * h
        motion = Motion(
            start=(bw / 2 - dx / 2, bh / 2 - dy / 2),
            velocity=(dx / max(frames - 1, 1), dy / max(frames - 1, 1)),
            scale=(1.0, 1.0 + rng.uniform(0, zoom)),
            angle=(0.0, rng.uniform(-roll, roll)),
        )
        probe = Take("", size, np.zeros((round(bh), round(bw), 1), np.uint8), motion, (), frames)
        if camera_fits(probe):
            return motion
    return Motion((bw / 2, bh / 2), (0.0, 0.0))  # a still camera always fits
