"""MediaPipe's full-range BlazeFace, run with LiteRT and decoded here.

MediaPipe Tasks' ``FaceDetector`` cannot run the full-range model: its graph hard-codes the
short-range model's anchors. So this module does what MediaPipe's ``face_detection_full_range``
graph does, with the same numbers (``mediapipe/modules/face_detection/face_detection_full_range.pbtxt``):

- letterbox the image into the model's 192x192 input, values scaled to [-1, 1];
- SSD anchors: one layer of stride 4 (a 48x48 grid), one fixed-size anchor per cell, offset 0.5;
- decode each anchor's box (x, y, w, h, in input pixels relative to the anchor) and 6 keypoints;
- sigmoid scores (raw values clipped at +-100), keep those at or above the threshold;
- weighted non-maximum suppression: overlapping boxes (IoU > 0.3) are averaged, weighted by score.

No maintained Python package does this decoding for the full-range model (MediaPipe's own is
C++ inside its graph), so it is written here, vectorized with numpy. Several images (the tiles
of a frame) go through the interpreter as one batch.

>>> with BlazeFace("face_detection_full_range_sparse.tflite") as bf:   # doctest: +SKIP
...     boxes, scores = bf.detect([rgb])[0]
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_stream.errors import ModelError, first_line

_STDERR_LOCK = threading.Lock()  # fd 2 is the process's: one redirection at a time


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence what native code writes to fd 2 (LiteRT logs INFO lines no setting turns off)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (pytest capture, embedded)
        yield
        return
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved = os.dup(fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            os.close(devnull)


@dataclass(frozen=True)
class SsdSpec:
    """The anchor and decoding settings of one BlazeFace model (from its MediaPipe graph)."""

    file: str  # the model file MediaPipe publishes, for messages
    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    suppression_iou: float = 0.3

    def groups(self) -> list[int]:
        """Anchors per grid (layers of one stride share a grid), in output order."""
        return [len(a) for a in self._grids()]

    def anchors(self) -> np.ndarray:
        """Anchor centres ``(n, 2)`` as fractions of the input, in the model's output order."""
        return np.concatenate(self._grids()).astype(np.float32)

    def _grids(self) -> list[np.ndarray]:
        """Anchor centres of each grid.

        MediaPipe's SsdAnchorsCalculator with fixed anchor sizes: consecutive layers of the same
        stride share one grid; each cell has one anchor per aspect ratio (1.0) plus one for the
        interpolated scale when ``interpolated_scale_aspect_ratio`` is non-zero.
        """
        out: list[np.ndarray] = []
        layer = 0
        while layer < len(self.strides):
            stride = self.strides[layer]
            same = 0
            while layer + same < len(self.strides) and self.strides[layer + same] == stride:
                same += 1
            per_cell = same * (2 if self.interpolated_scale_aspect_ratio > 0 else 1)
            cells = -(-self.input_size // stride)  # ceil
            ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
            grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
            out.append(np.repeat(grid, per_cell, axis=0))
            layer += same
        return out


FULL_RANGE = SsdSpec("face_detection_full_range_sparse.tflite", input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0)
SHORT_RANGE = SsdSpec("blaze_face_short_range.tflite", input_size=128, strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """``image`` scaled to fit ``size`` x ``size`` (aspect kept, centred, padded), as float32 in [-1, 1].

    Returns the tensor and the scale and padding needed to map input pixels back to the image.
    """
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) == (w, h):
        small = image  # already the input's size (tiles cut from a pre-scaled frame)
    else:
        small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    px, py = (size - nw) // 2, (size - nh) // 2
    out = np.full((size, size, 3), -1.0, np.float32)
    out[py : py + nh, px : px + nw] = small.astype(np.float32) * (2 / 255) - 1
    return out, scale, px, py


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS: each cluster of boxes overlapping its best by more than ``iou``
    becomes their score-weighted mean, with the best one's score. Boxes are ``x0, y0, x1, y1``."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    keep_boxes, keep_scores = [], []
    alive = np.ones(len(boxes), bool)
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        overlap = iou_matrix(boxes[i : i + 1], boxes)[0]
        members = alive & (overlap > iou)
        members[i] = True
        w = scores[members]
        keep_boxes.append((boxes[members] * w[:, None]).sum(0) / w.sum())
        keep_scores.append(scores[i])
        alive &= ~members
    if not keep_boxes:
        return np.zeros((0, boxes.shape[1]), np.float32), np.zeros(0, np.float32)
    return np.asarray(keep_boxes, np.float32), np.asarray(keep_scores, np.float32)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b`` (``x0, y0, x1, y1``)."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def ios_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area (a cut-off face at a tile edge lies inside the whole one)."""
    inter = _intersection(a, b)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def load_interpreter(
    model_path: Path, threads: int, *, what: str, needs: str, fix: str
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """A LiteRT interpreter for ``model_path`` with its input's and outputs' details. ``what`` names
    the model in messages ("detector model"), ``needs`` what requires LiteRT, ``fix`` the file to
    point at; a missing LiteRT or a file that is not a model ends in one :class:`ModelError` line."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ModelError(f"{needs} need LiteRT: pip install ai-edge-litert") from None
    try:
        interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        return interpreter, interpreter.get_input_details()[0], interpreter.get_output_details()
    except Exception as e:  # LiteRT raises ValueError/RuntimeError for files that are not models
        raise ModelError(f"{what} '{model_path}' does not load in LiteRT ({first_line(e)}); point it at MediaPipe's {fix}") from None


def invoke(interpreter: Any, input_index: int, batch: np.ndarray, allocated: int) -> int:
    """Run a LiteRT ``interpreter`` on ``batch``, its input resized first if it holds another
    number of images than ``allocated``; returns the batch size it is now allocated for."""
    if len(batch) != allocated:
        interpreter.resize_tensor_input(input_index, list(batch.shape))
        interpreter.allocate_tensors()
    interpreter.set_tensor(input_index, batch)
    interpreter.invoke()
    return len(batch)


class BlazeFace:
    """A BlazeFace ``.tflite`` model run with LiteRT on batches of RGB images.

    :meth:`detect` returns, per image, boxes ``(n, 4)`` as ``x0, y0, x1, y1`` in that image's
    pixels and their scores ``(n,)``, highest first.
    """

    def __init__(self, model_path: str | os.PathLike[str], spec: SsdSpec = FULL_RANGE, *, min_score: float = 0.5, threads: int = 1) -> None:
        self.model_path = Path(model_path)
        self.spec = spec
        self.min_score = min_score
        self._anchors = spec.anchors()
        self._interpreter, self._input, outputs = load_interpreter(
            self.model_path, threads, what="detector model", needs="the full-range and tiled detectors", fix=spec.file
        )
        # The regressors output has 16 values per anchor, the classificators output 1.
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        n = len(self._anchors)
        shape = tuple(int(s) for s in self._input["shape"])
        if (
            shape[1:] != (spec.input_size, spec.input_size, 3)
            or set(by_width) != {16, 1}
            or any(int(np.prod(o["shape"][1:-1])) != n for o in outputs)
        ):
            raise ModelError(
                f"detector model '{self.model_path}' is not a BlazeFace model with a {spec.input_size}x"
                f"{spec.input_size} input and {n} anchors; point it at MediaPipe's face_detection_full_range_sparse.tflite"
            )
        self._boxes_out, self._scores_out = by_width[16], by_width[1]
        self._batch = 0
        # LiteRT prints an INFO line when its CPU delegate starts (first inference): spend it here, silenced.
        with native_stderr_silenced():
            self._invoke(np.zeros((1, spec.input_size, spec.input_size, 3), np.float32))

    def __enter__(self) -> BlazeFace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._interpreter = None

    def detect(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Faces in each of ``images`` (``H x W x 3`` uint8 RGB), as ``(boxes, scores)`` per image."""
        return self.detect_rows(images, keypoints=False)

    def detect_keypoints(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """As :meth:`detect`, with each face's 6 keypoints ``(n, 6, 2)`` in image pixels, as
        ``(boxes, keypoints, scores)`` per image. MediaPipe's order: 0 and 1 the eyes (0 the one on
        the image's left, the person's right eye, in an unmirrored upright face), 2 the nose tip,
        3 the mouth, 4 and 5 the ear tragions (4 on the image's left)."""
        return [(rows[:, :4], rows[:, 4:].reshape(-1, 6, 2), scores) for rows, scores in self.detect_rows(images, keypoints=True)]

    def detect_rows(self, images: Sequence[np.ndarray], *, keypoints: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """One batched invoke for ``images``; per image the decoded rows ``(n, 4)`` or, with
        ``keypoints``, ``(n, 16)`` (box ``x0, y0, x1, y1``, then the 6 keypoints' x, y) and scores."""
        if not images:
            return []
        size = self.spec.input_size
        tensors, frames = [], []
        for image in images:
            t, scale, px, py = letterbox(image, size)
            tensors.append(t)
            frames.append((scale, px, py))
        raw_boxes, raw_scores = self._invoke(np.stack(tensors))
        return [self._decode(raw_boxes[k], raw_scores[k], scale, px, py, keypoints=keypoints) for k, (scale, px, py) in enumerate(frames)]

    def _invoke(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        it = self._interpreter
        if it is None:
            raise RuntimeError("BlazeFace is closed")
        self._batch = invoke(it, self._input["index"], batch, self._batch)
        return self._per_image(it.get_tensor(self._boxes_out), len(batch)), self._per_image(it.get_tensor(self._scores_out), len(batch))[
            ..., 0
        ]

    def _per_image(self, out: np.ndarray, n: int) -> np.ndarray:
        """``(1, n * anchors, k)`` -> ``(n, anchors, k)``. The models reshape each grid's output with the
        batch folded in before concatenating the grids: grid by grid, image by image within a grid."""
        k = out.shape[-1]
        flat = out.reshape(-1, k)
        parts, at = [], 0
        for size in self.spec.groups():
            parts.append(flat[at : at + n * size].reshape(n, size, k))
            at += n * size
        return np.concatenate(parts, axis=1)

    def _decode(
        self, raw: np.ndarray, logits: np.ndarray, scale: float, px: int, py: int, *, keypoints: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``(n, 4)`` and scores in image pixels; ``keypoints``: each box row followed by its
        6 keypoints' x, y (``(n, 16)``), averaged in the suppression like the box."""
        size = self.spec.input_size
        # MediaPipe clips raw scores at +-100; float32 exp overflows past 88, so clip at 80.
        scores = 1 / (1 + np.exp(-np.clip(logits, -80, 80)))
        keep = scores >= self.min_score
        if not keep.any():
            return np.zeros((0, 16 if keypoints else 4), np.float32), np.zeros(0, np.float32)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep]
        centre = raw[:, :2] + anchors * size  # input pixels
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        if keypoints:
            # Keypoints are offsets from the anchor, like the box's centre.
            points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :] * size
            boxes = np.concatenate([boxes, points.reshape(-1, 12)], axis=1)
        valid = (half > 0).all(axis=1)
        boxes, scores = weighted_nms(boxes[valid], scores[valid], self.spec.suppression_iou)
        # Input pixels -> image pixels: undo the padding, then the scale.
        boxes = (boxes - np.tile(np.array([px, py], np.float32), boxes.shape[1] // 2)) / scale
        return boxes, scores
