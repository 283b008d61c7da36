"""Faces covered with their own surroundings: the pictures hard negatives are cut from.

Each face box, grown ``GROW`` times about its centre (forehead, chin and ears go too), is painted
over from what lies around it: inpainted at low resolution (hair, walls and collars flow in; a
flat patch would be an easy tell), blurred, and blended in with a soft edge. What is left of the
person (hair, neck, shoulders, arms and hands) stays: a head with its face covered is what a
hard negative is (the detectors can take the covered blob for a face: the landmark model must
not). A picture whose covers would hide more than ``MAX_COVERED`` of it (a close-up) is not used.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from fer_stream.model.blazeface import ios_matrix, iou_matrix

from .footage import Shot

GROW = 1.6
MAX_COVERED = 0.5
INPAINT_SIDE = 32  # px: a covered place's side when it is inpainted


def cover(image: np.ndarray, boxes: Iterable[np.ndarray], grow: float = GROW) -> np.ndarray:
    """A copy of ``image`` (RGB) with each ``x0, y0, x1, y1`` box, grown ``grow`` times, painted over from its surroundings."""
    out = image.copy()
    height, width = image.shape[:2]
    for x0, y0, x1, y1 in boxes:
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * grow / 2
        if half < 1:
            continue
        # The place to cover and a window around it with half its size of context on each side.
        px0, py0, px1, py1 = (round(v) for v in (cx - half, cy - half, cx + half, cy + half))
        wx0, wy0 = max(0, round(cx - 2 * half)), max(0, round(cy - 2 * half))
        wx1, wy1 = min(width, round(cx + 2 * half)), min(height, round(cy + 2 * half))
        if wx1 - wx0 < 2 or wy1 - wy0 < 2:
            continue
        window = out[wy0:wy1, wx0:wx1]
        place = np.zeros(window.shape[:2], np.uint8)
        place[max(0, py0 - wy0) : max(0, py1 - wy0), max(0, px0 - wx0) : max(0, px1 - wx0)] = 255
        if not place.any():
            continue
        out[wy0:wy1, wx0:wx1] = _paint_over(window, place, 2 * half)
    return out


def _paint_over(window: np.ndarray, place: np.ndarray, side: float) -> np.ndarray:
    f = min(1.0, INPAINT_SIDE / side)
    h, w = window.shape[:2]
    small_size = (max(2, round(w * f)), max(2, round(h * f)))
    small = cv2.resize(window, small_size, interpolation=cv2.INTER_AREA)
    small_place = cv2.dilate(cv2.resize(place, small_size, interpolation=cv2.INTER_NEAREST), np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_place, 3, cv2.INPAINT_TELEA)
    big = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32), (0, 0), max(1.0, side / 16))
    # Fully covered inside the place, fading out over a rim of about a tenth of its side outside it.
    rim = max(1, round(side * 0.1))
    alpha = cv2.dilate(place, np.ones((rim, rim), np.uint8)).astype(np.float32) / 255
    alpha = np.maximum(cv2.GaussianBlur(alpha, (0, 0), rim / 2), place.astype(np.float32) / 255)[..., None]
    return np.asarray(alpha * big + (1 - alpha) * window, np.uint8)


def faceless(shot: Shot) -> np.ndarray | None:
    """The shot's picture with every face covered (module docstring), or None if that would hide most of it."""
    faces = one_per_face(shot.faces)
    h, w = shot.image.shape[:2]
    hidden = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in _grown(faces, GROW).round().astype(int):
        hidden[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return None if hidden.mean() > MAX_COVERED else cover(shot.image, faces)


def one_per_face(boxes: np.ndarray) -> np.ndarray:
    """The largest of each group of boxes on the same face (overlapping by IoU > 0.3, or one inside the other)."""
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    kept: list[int] = []
    for i in order.tolist():
        if not kept or not ((iou_matrix(boxes[i : i + 1], boxes[kept]) > 0.3) | (ios_matrix(boxes[i : i + 1], boxes[kept]) > 0.7)).any():
            kept.append(i)
    return boxes[kept].reshape(-1, 4)


def _grown(boxes: np.ndarray, grow: float) -> np.ndarray:
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True) * grow / 2
    return np.concatenate([c - half, c + half], axis=1).reshape(-1, 4)
