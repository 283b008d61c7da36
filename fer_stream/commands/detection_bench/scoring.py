"""Scoring detections against known face boxes: matches, false boxes, mislocated boxes, recall by face height.

A detection matches a true face when their boxes overlap by IoU >= ``MATCH_IOU`` (one detection per
face, best overlap first; the short- and full-range models draw a face's box a little
differently). Of the detections that match none, a *false* box lies on no face, a *mislocated* one
covers a face with a box too far off to match (mostly the tiniest faces). Faces only partly in the
frame (entering or leaving it) are neither counted nor held against a detector: a detection on one
is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fer_stream.frames import Face
from fer_stream.model.blazeface import ios_matrix, iou_matrix

SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 100, 128, 160, 200, 250, 300)
BUCKETS = ((16, 24), (24, 32), (32, 40), (40, 56), (56, 80), (80, 120), (120, 200), (200, 301))
MATCH_IOU = 0.4
ON_FACE_IOS = 0.5  # an unmatched detection covering this much of a face (or it of the detection) sits on it

NO_BOXES = np.zeros((0, 4), np.float32)


def bucket_names() -> list[str]:
    return [f"{lo}-{hi - 1}px" for lo, hi in BUCKETS]


def face_boxes(faces: Sequence[Face]) -> np.ndarray:
    """The faces' boxes as an ``(n, 4)`` array of ``x0, y0, x1, y1``."""
    return np.asarray([[f.box.x, f.box.y, f.box.x + f.box.w, f.box.y + f.box.h] for f in faces], np.float32).reshape(-1, 4)


def match(truth: np.ndarray, found: np.ndarray, ignore: np.ndarray = NO_BOXES) -> tuple[np.ndarray, int, int]:
    """Which true boxes were found, and of the other detections how many are false (on no face)
    and how many mislocated (on a face, too far off); detections on an ``ignore`` box count as neither."""
    hit = np.zeros(len(truth), bool)
    if len(found) == 0:
        return hit, 0, 0
    used = np.zeros(len(found), bool)
    if len(truth):
        iou = iou_matrix(truth, found)
        pairs = [(t, d) for t in range(len(truth)) for d in range(len(found)) if iou[t, d] >= MATCH_IOU]
        for t, d in sorted(pairs, key=lambda td: -iou[td]):
            if not hit[t] and not used[d]:
                hit[t] = used[d] = True
    on_face = _covers(truth, found)
    rest = ~used & ~_covers(ignore, found)
    return hit, int((rest & ~on_face).sum()), int((rest & on_face).sum())


def _covers(boxes: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Which detections sit on one of ``boxes`` (IoU >= MATCH_IOU, or one mostly inside the other)."""
    if len(boxes) == 0:
        return np.zeros(len(found), bool)
    return np.asarray(((ios_matrix(boxes, found) >= ON_FACE_IOS) | (iou_matrix(boxes, found) >= MATCH_IOU)).any(axis=0))


@dataclass
class Tally:
    """What one detector did on a set of frames: every true face's height and whether it was found,
    false and mislocated boxes, seconds spent in ``detect``, boxes the landmark model rejected, and
    (a detector that follows faces) the frames its detector ran on."""

    frames: int = 0
    heights: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    false_boxes: int = 0
    mislocated: int = 0
    seconds: float = 0.0
    rejected: int = 0
    scans: int | None = None

    def add(self, truth: np.ndarray, found: np.ndarray, seconds: float, ignore: np.ndarray = NO_BOXES) -> None:
        hit, false, off = match(truth, found, ignore)
        self.frames += 1
        self.heights += (truth[:, 3] - truth[:, 1]).tolist()
        self.hits += hit.tolist()
        self.false_boxes += false
        self.mislocated += off
        self.seconds += seconds

    def recall(self, lo: float, hi: float = 1e9) -> float | None:
        h, k = np.asarray(self.heights), np.asarray(self.hits, bool)
        sel = (h >= lo) & (h < hi)
        return round(float(k[sel].mean()), 4) if sel.any() else None

    def figures(self) -> dict[str, object]:
        """The figures as a JSON-ready dict (recall figures only where there were faces)."""
        frames = max(self.frames, 1)
        out: dict[str, object] = {"frames": self.frames}
        if self.heights:
            h = np.asarray(self.heights)
            out |= {
                "faces": len(self.heights),
                "recall_by_height": {name: self.recall(lo, hi) for name, (lo, hi) in zip(bucket_names(), BUCKETS)},
                "faces_by_height": {name: int(((h >= lo) & (h < hi)).sum()) for name, (lo, hi) in zip(bucket_names(), BUCKETS)},
                "recall_ge_40px": self.recall(40),
                "recall_ge_80px": self.recall(80),
                "recall_all": self.recall(0),
                "mislocated": self.mislocated,
            }
        out |= {
            "false_positives": self.false_boxes,
            "false_positives_per_100_frames": round(100 * self.false_boxes / frames, 2),
            "rejected_per_100_frames": round(100 * self.rejected / frames, 2),
            "fps": round(self.frames / max(self.seconds, 1e-9), 1),
        }
        if self.scans is not None:
            out["detector_frames"] = round(self.scans / frames, 3)
        return out
