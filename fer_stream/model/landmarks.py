"""MediaPipe's face landmark model (FaceMesh v1): 468 points and a face-presence score per face, run with LiteRT.

What MediaPipe's ``face_landmark`` graphs do, with the same numbers
(``mediapipe/modules/face_landmark/face_detection_front_detection_to_roi.pbtxt``,
``face_landmark_landmarks_to_roi.pbtxt``, ``face_landmark_cpu.pbtxt``):

- the crop (an :class:`Roi`) is a square 1.5x the long side of the detector's box, centred on it,
  turned so that the eyes (BlazeFace keypoints 0 and 1) are level;
- one ``cv2.warpAffine`` per face cuts it into the model's 192x192 input, values in [0, 1];
- the model gives 468 landmarks (x, y, z in input pixels) and a face-presence logit: its sigmoid
  is ~1 on faces (drawn ones too) and ~0 on the hands, arms and bodies BlazeFace takes for faces;
- the landmarks go back to frame pixels through the inverse of the crop's affine map;
- the next frame's crop comes from the landmarks (:func:`roi_from_landmarks`): their bounding box,
  squared and enlarged 1.5x, turned by the line through the eyes' outer corners (points 33, 263).

The faces of a frame go through the interpreter one at a time. Its input can be resized to a
batch, but a batch of two is no faster per face (0.77 against 0.75 ms measured), and a batch
whose size changes from frame to frame makes LiteRT re-plan its tensors (and log a line).

>>> with FaceLandmarker("face_landmark.tflite") as lm:                        # doctest: +SKIP
...     [marks] = lm.run(rgb, [roi_from_box(box, eyes)])
>>> marks.presence, marks.points.shape                                       # doctest: +SKIP
(0.9998, (468, 3))
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_stream.errors import ModelError
from fer_stream.frames import Box, Pose
from fer_stream.model.blazeface import invoke, load_interpreter, native_stderr_silenced

MODEL_FILE = "face_landmark.tflite"  # MediaPipe's published name
INPUT_SIZE = 192
POINTS = 468
ROI_SCALE = 1.5  # MediaPipe's: the crop's side over the face's long side
# Landmark indices (MediaPipe's face mesh): the eyes' outer corners (33 on the image's left in an
# upright, unmirrored face), the top of the forehead and the chin.
EYE_OUTER_LEFT, EYE_OUTER_RIGHT, FOREHEAD, CHIN = 33, 263, 10, 152


@dataclass(frozen=True)
class Roi:
    """A square crop of a frame: centre ``(cx, cy)`` and side ``size`` in frame pixels, turned by
    ``angle`` (radians; the angle of the face's eye line in the frame, y pointing down): the crop
    is cut so that this line is level in it."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def matrix(self, side: int = INPUT_SIZE) -> np.ndarray:
        """The ``2 x 3`` affine map from frame coordinates to the ``side`` x ``side`` crop's
        (continuous coordinates: a pixel's centre is at ``i + 0.5``)."""
        s = side / self.size
        c, n = math.cos(self.angle), math.sin(self.angle)
        a = s * np.array([[c, n], [-n, c]])  # scale and turn by -angle
        t = np.array([side / 2, side / 2]) - a @ np.array([self.cx, self.cy])
        return np.concatenate([a, t[:, None]], axis=1)

    def corners(self) -> np.ndarray:
        """The crop's corners ``(4, 2)`` in frame pixels (top left, top right, bottom right, bottom left of the crop)."""
        h = self.size / 2
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        c, n = math.cos(self.angle), math.sin(self.angle)
        return local @ np.array([[c, n], [-n, c]]) + np.array([self.cx, self.cy])

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which of ``points`` (``(n, 2)`` or more columns, frame pixels) lie inside the crop."""
        local = _apply(self.matrix(1), np.asarray(points, np.float64)[:, :2])  # the crop as the unit square
        return np.asarray(((local >= 0) & (local <= 1)).all(axis=1))


@dataclass(frozen=True, eq=False)
class Landmarks:
    """One face's 468 landmarks ``points`` ``(468, 3)``: x, y in frame pixels, z (depth, smaller is
    nearer the camera) in the same scale; ``presence`` the model's face-presence probability; ``roi``
    the crop they came from."""

    points: np.ndarray
    presence: float
    roi: Roi


def roi_from_box(box: Box, eyes: tuple[Sequence[float], Sequence[float]] | None = None, scale: float = ROI_SCALE) -> Roi:
    """MediaPipe's crop for a detected face: a square ``scale`` times the box's long side around its
    centre, turned so the ``eyes`` (BlazeFace keypoints 0 then 1, frame pixels) are level; upright without them."""
    angle = 0.0
    if eyes is not None:
        (x0, y0), (x1, y1) = eyes
        angle = math.atan2(y1 - y0, x1 - x0)
    return Roi(box.x + box.w / 2, box.y + box.h / 2, max(box.w, box.h) * scale, angle)


def roi_from_landmarks(points: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """MediaPipe's crop for the next frame from this frame's landmarks: their bounding box squared
    and enlarged ``scale`` times, turned by the line through the eyes' outer corners (33 -> 263)."""
    xy = np.asarray(points)[:, :2]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    (x0, y0), (x1, y1) = xy[EYE_OUTER_LEFT], xy[EYE_OUTER_RIGHT]
    side = float(max(hi - lo)) * scale
    return Roi(float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, side, math.atan2(float(y1 - y0), float(x1 - x0)))


def head_axes(points: np.ndarray) -> np.ndarray:
    """The head's own axes in the frame, as the columns of a rotation matrix ``(3, 3)``: right (the
    eye line 33 -> 263), down (forehead 10 -> chin 152, made square to the eye line) and back (away
    from the face: right x down). Identity for an upright face looking straight at the camera."""
    p = np.asarray(points, np.float64)
    right = p[EYE_OUTER_RIGHT] - p[EYE_OUTER_LEFT]
    right /= max(float(np.linalg.norm(right)), 1e-9)  # collapsed landmarks give a pose of zeros, not NaN
    down = p[CHIN] - p[FOREHEAD]
    down -= (down @ right) * right
    down /= max(float(np.linalg.norm(down)), 1e-9)
    return np.stack([right, down, np.cross(right, down)], axis=1)


def head_pose(points: np.ndarray) -> Pose:
    """Yaw, pitch and roll from the landmarks' 3-D positions (:func:`head_axes`), as the head would
    be turned from facing the camera: first about its own vertical axis (yaw), then nodding
    (pitch), then in the image plane (roll). A rough estimate: four landmarks, no face model fitted."""
    m = head_axes(points)
    # m = Rz(roll) @ Rx(pitch) @ Ry(yaw), whose last row is (cos p sin y, -sin p, cos p cos y).
    yaw = math.atan2(m[2, 0], m[2, 2])
    pitch = -math.asin(max(-1.0, min(1.0, m[2, 1])))
    roll = math.atan2(-m[0, 1], m[1, 1])
    return Pose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))


def _apply(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return xy @ m[:, :2].T + m[:, 2]


class FaceLandmarker:
    """MediaPipe's ``face_landmark.tflite`` run with LiteRT on crops of a frame.

    :meth:`run` takes an RGB frame and one :class:`Roi` per face (:func:`roi_from_box` for a
    detected face, :func:`roi_from_landmarks` for one followed from the last frame) and returns
    one :class:`Landmarks` per crop, in order. ``model_path``: the file itself (find it with
    :func:`fer_stream.model.detector_files.resolve_landmark_model`).
    """

    def __init__(self, model_path: str | os.PathLike[str], *, threads: int = 1) -> None:
        self.model_path = Path(model_path)
        self._interpreter, self._input, outputs = load_interpreter(
            self.model_path, threads, what="landmark model", needs="the face landmark model and the verification of boxes", fix=MODEL_FILE
        )
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        if tuple(int(s) for s in self._input["shape"][1:]) != (INPUT_SIZE, INPUT_SIZE, 3) or set(by_width) != {POINTS * 3, 1}:
            raise ModelError(
                f"landmark model '{self.model_path}' is not a face landmark model with a {INPUT_SIZE}x{INPUT_SIZE} input, "
                f"{POINTS} landmarks and a presence score; point it at MediaPipe's face_landmark.tflite"
            )
        self._points_out, self._presence_out = by_width[POINTS * 3], by_width[1]
        self._batch = 1
        # LiteRT prints an INFO line when its CPU delegate starts (allocation, first inference): spend it here, silenced.
        with native_stderr_silenced():
            self._interpreter.allocate_tensors()
            self._invoke(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.float32))

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._interpreter = None

    def run(self, image: np.ndarray, rois: Sequence[Roi]) -> list[Landmarks]:
        """The landmarks of each crop ``rois`` of ``image`` (``H x W x 3`` uint8 RGB)."""
        out = []
        for roi in rois:
            m = roi.matrix()
            raw_points, logits = self._invoke(crop_tensor(image, m)[None])
            out.append(Landmarks(decode(raw_points[0], m), _sigmoid(float(logits[0])), roi))
        return out

    def _invoke(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        it = self._interpreter
        if it is None:
            raise RuntimeError("FaceLandmarker is closed")
        n = self._batch = invoke(it, self._input["index"], batch, self._batch)
        return it.get_tensor(self._points_out).reshape(n, POINTS, 3), it.get_tensor(self._presence_out).reshape(n)


def crop_tensor(image: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The model's input for the crop that ``m`` (:meth:`Roi.matrix`) maps to: 192x192 RGB float32 in [0, 1].
    Parts of the crop outside the frame repeat its edge (MediaPipe's default border)."""
    # warpAffine works on pixel indices (a pixel's centre at i, not i + 0.5): shift in and out.
    shift = m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    pixel = np.concatenate([m[:, :2], (m[:, 2] + shift)[:, None]], axis=1)
    out = cv2.warpAffine(image, pixel, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(out, np.float32) * np.float32(1 / 255)


def decode(raw: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Landmarks ``(468, 3)`` in input pixels -> frame pixels, through the inverse of the crop's map ``m``
    (z scaled like x and y)."""
    a_inv = np.linalg.inv(m[:, :2])
    xy = (raw[:, :2].astype(np.float64) - m[:, 2]) @ a_inv.T
    scale = math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    return np.concatenate([xy, raw[:, 2:3] / scale], axis=1).astype(np.float32)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-min(max(x, -80.0), 80.0)))
