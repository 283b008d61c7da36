"""The face landmark model in the detection loop: every box verified, faces followed by their landmarks, crops aligned.

:class:`MeshDetector` wraps any detector (``short``, ``full`` or ``tiled``) and does what
MediaPipe's face mesh graphs do around their detector:

- **verify**: each box the detector finds is cut as MediaPipe cuts it (:func:`roi_from_box`: a
  square 1.5x the box, turned so the eyes are level) and given to the landmark model; a box whose
  face-presence score is under ``min_presence`` holds no face (a hand, an arm, a torso) and is
  dropped (:attr:`MeshDetector.rejected`, counted in :attr:`MeshDetector.rejected_total`);
- **follow**: a face kept in one frame is looked for in the next at the crop its landmarks give
  (:func:`roi_from_landmarks`), without the detector; its presence keeps it or ends it. The
  detector runs again every ``rescan_every`` frames, whenever a followed face is lost and while no
  face is followed, to find new faces; a detection on a face already followed is the same face;
- **align**: the classifier's crop is cut along the eye line (the roll undone) and sized by the
  landmarks, so a tilted head gives the crop an upright one would;
- **pose**: yaw, pitch and roll from the landmarks go into each face's
  :class:`~fer_stream.frames.Quality` (a face turned past the gate's ``max_yaw`` is a ``profile``).

Frames are followed in the order they come and nothing depends on the clock, so a file gives the
same faces on every run. Call :meth:`MeshDetector.reset` before an unrelated picture or video
(the pipeline does, when it starts); ``follow=False`` verifies and aligns without following
(single images).

The box of a face found by its landmarks is the landmarks' extent along and across the eye line,
widened to match BlazeFace's boxes (``BOX_WIDTH``: the detectors' boxes are 1.14-1.20x the
landmarks' width and 0.97-1.01x their height, medians over ../shared's three videos), so that a
followed face is cropped like a detected one.

>>> with MeshDetector(make_detector("tiled"), FaceLandmarker("face_landmark.tflite")) as det:   # doctest: +SKIP
...     faces = det.detect(rgb)
>>> faces[0].quality.pose, det.rejected                                                          # doctest: +SKIP
(Pose(yaw=3.1, pitch=-4.0, roll=1.2), (Box(x=410, y=300, w=338, h=338),))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from fer_stream.frames import Box, Face
from fer_stream.model.blazeface import ios_matrix, iou_matrix
from fer_stream.model.detector import Detector, crop
from fer_stream.model.landmarks import FaceLandmarker, Landmarks, Roi, head_pose, roi_from_box, roi_from_landmarks
from fer_stream.model.quality import QualityGate

_D = TypeVar("_D")  # a context manager's own type

BOX_WIDTH = 1.17  # a face's box width over its landmarks' width (BlazeFace's boxes, measured)
BOX_HEIGHT = 1.0  # ... and height
SAME_IOU, SAME_IOS = 0.3, 0.7  # a detection overlapping a followed face this much is that face


@dataclass(frozen=True)
class _Followed:
    """A face followed into the next frame: where to look, and the score of the detection that found it."""

    roi: Roi
    score: float


class MeshDetector:
    """A detector whose boxes the face landmark model verifies, follows and aligns (module docstring).

    ``base`` finds faces (its ``margin`` and gate are replaced by this one's ``margin`` and
    ``quality``); ``landmarker`` runs MediaPipe's face landmark model. ``min_presence``: least
    face-presence score of a face; ``rescan_every``: frames between detector runs while faces are
    followed (1: every frame); ``follow``: False verifies each frame's detections only; ``align``:
    False cuts the crop along the frame's axes, as the detectors do. Closing closes both models.
    """

    def __init__(
        self,
        base: Detector,
        landmarker: FaceLandmarker,
        *,
        min_presence: float = 0.5,
        rescan_every: int = 10,
        follow: bool = True,
        align: bool = True,
        margin: float = 0.1,
        quality: QualityGate | None = None,
    ) -> None:
        if rescan_every < 1:
            raise ValueError("rescan_every must be at least 1")
        self.base = base
        self.kind = base.kind
        self.landmarker = landmarker
        self.min_presence = min_presence
        self.rescan_every = rescan_every
        self.follow = follow
        self.align = align
        self.margin = margin
        self.quality = quality or QualityGate()
        self.rejected: tuple[Box, ...] = ()
        self.rejected_total = 0
        self.scans = 0  # frames the detector ran on
        self._followed: list[_Followed] = []
        self._since_scan = 0

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.base.close()
        self.landmarker.close()

    def reset(self) -> None:
        """Forget the faces followed and the counts (before an unrelated picture or video)."""
        self.base.reset()
        self._followed = []
        self._since_scan = 0
        self.rejected = ()
        self.rejected_total = 0
        self.scans = 0

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an ``H x W x 3`` uint8 RGB frame, highest score first; :attr:`rejected` holds the
        detector's boxes the landmark model dropped in this frame."""
        rgb = np.ascontiguousarray(image)
        kept: list[_Found] = []
        lost = False
        if self.follow and self._followed:
            marks = self.landmarker.run(rgb, [f.roi for f in self._followed])
            for m, followed in zip(marks, self._followed):
                if m.presence >= self.min_presence:
                    kept.append(_Found.of(m, followed.score))
                else:
                    lost = True
            kept = _distinct(kept)
        self._since_scan += 1
        rejected: list[Box] = []
        if not self.follow or not kept or lost or self._since_scan >= self.rescan_every:
            self._since_scan = 0
            self.scans += 1
            new = _not_followed(self.base.detect(rgb), [k.box for k in kept])
            marks = self.landmarker.run(rgb, [roi_from_box(f.box, _eyes(f)) for f in new])
            for m, f in zip(marks, new):
                if m.presence >= self.min_presence:
                    kept.append(_Found.of(m, f.score))
                else:
                    rejected.append(f.box)
            kept = _distinct(kept)
        self.rejected = tuple(rejected)
        self.rejected_total += len(rejected)
        height, width = rgb.shape[:2]
        # A face whose box has left the frame ends here: it is neither shown nor followed.
        kept = [k for k in kept if _visible(k.box, width, height)]
        self._followed = [_Followed(roi_from_landmarks(k.marks.points), k.score) for k in kept] if self.follow else []
        faces = [self._face(rgb, k) for k in kept]
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces

    def _face(self, rgb: np.ndarray, found: _Found) -> Face:
        height, width = rgb.shape[:2]
        box = found.box.clip(width, height)
        cx, cy, w, h, angle = found.extent
        cut = _aligned_crop(rgb, cx, cy, w, h, angle, self.margin) if self.align else crop(rgb, box, self.margin)
        pose = head_pose(found.marks.points)
        return Face(
            box=box,
            score=found.score,
            crop=cut,
            quality=self.quality.assess(cut, box, found.score, pose),
            landmarks=found.marks.points,
        )


@dataclass(frozen=True)
class _Found:
    """A face the landmark model confirmed in this frame: its landmarks, the score of the detection
    that first found it, and its extent (:func:`_extent`) and box, worked out once."""

    marks: Landmarks
    score: float
    extent: tuple[float, float, float, float, float]
    box: Box  # in frame pixels, not clipped

    @classmethod
    def of(cls, marks: Landmarks, score: float) -> _Found:
        cx, cy, w, h, angle = extent = _extent(marks.points)
        return cls(marks, score, extent, Box(round(cx - w / 2), round(cy - h / 2), round(w), round(h)))


def _visible(box: Box, width: int, height: int) -> bool:
    inside = box.clip(width, height)
    return inside.w >= 2 and inside.h >= 2


def _eyes(face: Face) -> tuple[Sequence[float], Sequence[float]] | None:
    k = face.keypoints
    return None if k is None else (k[0], k[1])


def _extent(points: np.ndarray) -> tuple[float, float, float, float, float]:
    """The face's box along its eye line: centre ``(cx, cy)`` and ``w``, ``h`` (frame pixels, sized
    like a detector's box) and the eye line's angle (radians)."""
    xy = points[:, :2].astype(np.float64)
    roi = roi_from_landmarks(points)
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    along = xy @ np.array([c, s])  # coordinates in the face's own axes: along and across the eyes
    across = xy @ np.array([-s, c])
    u, v = (along.min() + along.max()) / 2, (across.min() + across.max()) / 2
    w = (along.max() - along.min()) * BOX_WIDTH
    h = (across.max() - across.min()) * BOX_HEIGHT
    return u * c - v * s, u * s + v * c, w, h, roi.angle


def _xyxy(boxes: Sequence[Box]) -> np.ndarray:
    return np.array([[b.x, b.y, b.x + b.w, b.y + b.h] for b in boxes], np.float64).reshape(-1, 4)


def _not_followed(found: list[Face], followed: list[Box]) -> list[Face]:
    """The detections that are not a face already followed (IoU > 0.3 or one inside the other)."""
    if not found or not followed:
        return found
    a, b = _xyxy([f.box for f in found]), _xyxy(followed)
    same = np.asarray(((iou_matrix(a, b) > SAME_IOU) | (ios_matrix(a, b) > SAME_IOS)).any(axis=1))
    return [f for f, s in zip(found, same.tolist()) if not s]


def _distinct(kept: list[_Found]) -> list[_Found]:
    """One entry per face: two crops that converged on the same face keep the first (followed
    faces come before new ones; among those, the detector's order)."""
    if len(kept) < 2:
        return kept
    boxes = _xyxy([k.box for k in kept])
    same = (iou_matrix(boxes, boxes) > 0.5) | (ios_matrix(boxes, boxes) > 0.8)
    out: list[_Found] = []
    taken: list[int] = []
    for i, item in enumerate(kept):
        if not any(same[i, j] for j in taken):
            taken.append(i)
            out.append(item)
    return out


def _aligned_crop(rgb: np.ndarray, cx: float, cy: float, w: float, h: float, angle: float, margin: float) -> np.ndarray:
    """The face's box grown by ``margin`` on each side, cut along the eye line (turned by
    ``-angle``) at the frame's own resolution; parts outside the frame repeat its edge."""
    out_w, out_h = max(2, round(w * (1 + 2 * margin))), max(2, round(h * (1 + 2 * margin)))
    c, s = math.cos(angle), math.sin(angle)
    # frame -> crop: turn by -angle about the face's centre, then put that centre in the crop's middle
    # (pixel-index coordinates on both sides, which is what warpAffine maps).
    m = np.array([[c, s, 0.0], [-s, c, 0.0]])
    m[:, 2] = np.array([out_w / 2 - 0.5, out_h / 2 - 0.5]) - m[:, :2] @ np.array([cx - 0.5, cy - 0.5])
    out = cv2.warpAffine(rgb, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out)
