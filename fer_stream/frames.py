"""Value objects that move between the pipeline's stages.

A :class:`Frame` is one decoded picture with its timestamp; a :class:`Face` is one detected face
with its :class:`Box`, crop and (once classified) :class:`Prediction`; a :class:`FrameResult` is a
frame with all of its faces, which is what the pipeline yields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np


@dataclass(frozen=True, slots=True)
class Box:
    """An axis-aligned box in pixels: top-left corner ``(x, y)``, width ``w`` and height ``h``."""

    x: int
    y: int
    w: int
    h: int

    def clip(self, width: int, height: int) -> Box:
        """The part of this box that lies inside a ``width`` x ``height`` image."""
        x0, y0 = max(0, self.x), max(0, self.y)
        x1, y1 = min(width, self.x + self.w), min(height, self.y + self.h)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def expand(self, margin: float) -> Box:
        """This box grown by ``margin`` times its width and height on every side."""
        dx, dy = round(self.w * margin), round(self.h * margin)
        return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy)

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded RGB picture of a stream.

    ``image`` is ``H x W x 3`` uint8 RGB and C-contiguous. ``time`` is the presentation time in
    seconds from the start of the stream; ``pts`` is the decoder's timestamp in the stream's time
    base (``None`` for cameras); ``captured`` is the ``time.monotonic()`` when the frame was read.
    """

    index: int
    time: float
    image: np.ndarray
    pts: int | None = None
    captured: float = 0.0

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Prediction:
    """A classifier's answer for one face.

    ``probs`` holds every label of the model with its probability, highest first, so
    ``probs[0]`` is ``(label, confidence)``. ``flagged`` is true when the confidence is under the
    classifier's threshold.
    """

    probs: tuple[tuple[str, float], ...]
    flagged: bool

    @property
    def label(self) -> str:
        return self.probs[0][0]

    @property
    def confidence(self) -> float:
        return self.probs[0][1]

    def as_dict(self) -> dict[str, float]:
        """Label -> probability, highest first."""
        return dict(self.probs)


@dataclass(frozen=True, slots=True)
class Quality:
    """How fit a face is for classification: its size (the shorter side of its box, px), sharpness
    (variance of the Laplacian at 64x64), detector score and, where the face landmark model ran,
    its head ``pose`` (yaw, pitch, roll in degrees, see :class:`Pose`). ``reason`` names the
    minimum it missed (``small``, ``blurry``, ``low_score``, ``profile``); ``None``: usable."""

    size_px: int
    sharpness: float
    score: float
    reason: str | None = None
    pose: Pose | None = None

    @property
    def usable(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"size_px": self.size_px, "sharpness": self.sharpness, "usable": self.usable, "reason": self.reason}
        if self.pose is not None:
            out.update(yaw=round(self.pose.yaw, 1), pitch=round(self.pose.pitch, 1), roll=round(self.pose.roll, 1))
        return out


@dataclass(frozen=True, slots=True)
class Pose:
    """A rough head pose in degrees. ``yaw`` > 0: the nose points to the image's right; ``pitch``
    > 0: the face looks up; ``roll`` > 0: the eye line falls to the image's right."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """One detected face: its box in the frame, detector score, crop and prediction.

    ``track`` is the face's track id (stable across frames; ``None`` before tracking).
    ``prediction`` is what the overlay shows: the track's smoothed result when smoothing is on.
    ``fresh`` is true when that prediction includes a classification of this frame's crop (live:
    the first frame to show a new classification); false when it was carried over from earlier
    frames of the track. ``quality`` says whether the face is fit to classify; an unusable face
    is never classified and carries no prediction. ``keypoints`` are the detector's 6 points
    ``(6, 2)`` (eyes, nose tip, mouth, ear tragions; MediaPipe's order), ``landmarks`` the face
    landmark model's 468 ``(468, 3)``, both in frame pixels, where they were found.
    """

    box: Box
    score: float
    crop: np.ndarray | None = field(default=None, repr=False)
    prediction: Prediction | None = None
    track: int | None = None
    fresh: bool = False
    quality: Quality | None = None
    keypoints: np.ndarray | None = field(default=None, repr=False)
    landmarks: np.ndarray | None = field(default=None, repr=False)

    @property
    def usable(self) -> bool:
        """False when the face missed a quality minimum (too small, blurry or unsure)."""
        return self.quality is None or self.quality.usable

    def with_prediction(self, prediction: Prediction | None, fresh: bool = True) -> Face:
        return replace(self, prediction=prediction, fresh=fresh and prediction is not None)

    @property
    def track_id(self) -> int:
        """The track id of a face that went through the tracker (every face in a pipeline's results)."""
        if self.track is None:
            raise ValueError("this face has not been tracked")
        return self.track

    def with_track(self, track: int) -> Face:
        return replace(self, track=track)

    def record(self, landmarks: bool = False) -> dict[str, Any]:
        """The face as a plain dict (the per-face event record without frame and time); with
        ``landmarks``, its 468 landmarks as ``[x, y, z]`` rows (frame pixels, 0.1 px) where it has them."""
        out: dict[str, Any] = {"track": self.track, "box": self.box.as_list(), "score": round(self.score, 4)}
        if landmarks and self.landmarks is not None:
            out["landmarks"] = np.round(self.landmarks.astype(np.float64), 1).tolist()
        if self.quality is not None:
            out["quality"] = self.quality.as_dict()
        if self.prediction is not None:
            out.update(
                fresh=self.fresh,
                label=self.prediction.label,
                confidence=round(self.prediction.confidence, 6),
                flagged=self.prediction.flagged,
                probs={k: round(v, 6) for k, v in self.prediction.probs},
            )
        return out


class TrackKey(NamedTuple):
    """A face track across cameras: the source's id and the track's id in it (hashable, a dict key)."""

    source: str
    track: int


@dataclass(frozen=True, slots=True, eq=False)
class FrameResult:
    """A frame with every face found in it and, when the pipeline draws, the annotated picture."""

    frame: Frame
    faces: tuple[Face, ...] = ()
    annotated: np.ndarray | None = field(default=None, repr=False)
    rejected: tuple[Box, ...] = ()  # boxes the face landmark model said hold no face (drawn with --draw-rejected)

    @property
    def picture(self) -> np.ndarray:
        """What to show or write: the annotated picture when drawn, else the frame itself."""
        return self.annotated if self.annotated is not None else self.frame.image
