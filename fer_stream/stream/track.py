"""Face tracking: a stable id for each face across frames, by box overlap (IoU).

Written here rather than taken from a tracking library: faces in one camera are few, move little
between frames and are detected almost every frame, so greedy IoU matching with a few frames of
grace is all it takes (about 40 lines of numpy). The libraries that do more (ByteTrack in
``supervision``, ``norfair``) bring matplotlib, SciPy and a second OpenCV wheel that would clash
with MediaPipe's ``opencv-contrib-python``.

>>> tracker = IoUTracker()
>>> tracker.update([Box(10, 10, 50, 50)])
[1]
>>> tracker.update([Box(200, 0, 40, 40), Box(12, 11, 50, 50)])
[2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fer_stream.frames import Box


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b`` (rows ``x, y, w, h``)."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class _Live:
    id: int
    box: np.ndarray  # x, y, w, h as float
    missed: int = 0


class IoUTracker:
    """Gives each detected face a track id, keeping it while the face overlaps its last box.

    Each ``update`` matches this frame's boxes to the live tracks greedily, best IoU first, pairs
    under ``iou_threshold`` never matching. Unmatched boxes start new tracks (ids count up from 1
    and are never reused); a track not seen for more than ``max_missed`` frames ends.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 15) -> None:
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self._tracks: list[_Live] = []
        self._next_id = 1
        self.ended: list[int] = []  # ids that ended in the last update

    @property
    def active(self) -> list[int]:
        """Ids of the tracks still alive (seen within ``max_missed`` frames)."""
        return [t.id for t in self._tracks]

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """The track id of each box, in the order given."""
        dets = np.array([[b.x, b.y, b.w, b.h] for b in boxes], dtype=np.float64).reshape(-1, 4)
        ids = [0] * len(dets)
        matched_tracks: set[int] = set()
        if len(dets) and self._tracks:
            iou = iou_matrix(np.stack([t.box for t in self._tracks]), dets)
            # Greedy: visit pairs from the best overlap down, each track and box used once.
            order = np.argsort(-iou, axis=None, kind="stable")
            rows, cols = np.unravel_index(order, iou.shape)
            keep = iou[rows, cols] >= self.iou_threshold
            for r, c in zip(rows[keep].tolist(), cols[keep].tolist()):
                if r in matched_tracks or ids[c]:
                    continue
                track = self._tracks[r]
                track.box, track.missed = dets[c], 0
                ids[c] = track.id
                matched_tracks.add(r)
        for r, track in enumerate(self._tracks):
            if r not in matched_tracks:
                track.missed += 1
        self.ended = [t.id for t in self._tracks if t.missed > self.max_missed]
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        for c, box in enumerate(dets):
            if not ids[c]:
                ids[c] = self._next_id
                self._tracks.append(_Live(self._next_id, box))
                self._next_id += 1
        return ids
