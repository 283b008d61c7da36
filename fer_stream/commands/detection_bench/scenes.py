"""Still frames with known faces: heads shrunk so the face is 16 to 300 px tall, placed at known,
non-overlapping places on 720p and 1080p canvases over a mosaic of face-free background pieces."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .pieces import Patch
from .scoring import SIZES

CANVASES = {"720p": (1280, 720), "1080p": (1920, 1080)}
CELL = 160  # px: a mosaic tile's side


@dataclass(frozen=True)
class Scene:
    """A canvas and the faces placed on it, as ``x0, y0, x1, y1`` boxes."""

    image: np.ndarray
    boxes: np.ndarray
    resolution: str


def mosaic(size: tuple[int, int], pieces: Sequence[np.ndarray], rng: random.Random) -> np.ndarray:
    """A ``width x height`` RGB canvas tiled with ``pieces`` (each resized to a cell, half of them mirrored)."""
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    for y in range(0, height, CELL):
        for x in range(0, width, CELL):
            piece = cv2.resize(pieces[rng.randrange(len(pieces))], (CELL, CELL), interpolation=cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            canvas[y : y + CELL, x : x + CELL] = piece[: height - y, : width - x]
    return canvas


def make_scenes(
    heads: Sequence[Patch],
    backgrounds: Sequence[np.ndarray],
    *,
    sizes: Sequence[int] = SIZES,
    canvases_per_size: int = 3,
    faces_per_canvas: int = 6,
    seed: int = 0,
) -> list[Scene]:
    """Canvases at 720p and 1080p with up to ``faces_per_canvas`` faces of each height in ``sizes``."""
    rng = random.Random(seed)
    scenes = []
    for resolution, (width, height) in CANVASES.items():
        for face_h in sizes:
            for _ in range(canvases_per_size):
                canvas = mosaic((width, height), backgrounds, rng)
                placed: list[tuple[int, int, int, int]] = []
                boxes: list[list[float]] = []
                for _ in range(faces_per_canvas * 20):
                    if len(boxes) >= faces_per_canvas:
                        break
                    head = heads[rng.randrange(len(heads))]
                    assert head.face is not None
                    fx0, fy0, fx1, fy1 = head.face
                    scale = face_h / (fy1 - fy0)
                    ph, pw = round(head.image.shape[0] * scale), round(head.image.shape[1] * scale)
                    if pw >= width or ph >= height or pw < 4 or ph < 4:
                        continue
                    x, y = rng.randint(0, width - pw), rng.randint(0, height - ph)
                    if any(x < px + qw and px < x + pw and y < py + qh and py < y + ph for px, py, qw, qh in placed):
                        continue
                    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                    canvas[y : y + ph, x : x + pw] = cv2.resize(head.image, (pw, ph), interpolation=interp)
                    placed.append((x, y, pw, ph))
                    boxes.append([x + fx0 * scale, y + fy0 * scale, x + fx1 * scale, y + fy1 * scale])
                scenes.append(Scene(canvas, np.asarray(boxes, np.float32).reshape(-1, 4), resolution))
    return scenes
