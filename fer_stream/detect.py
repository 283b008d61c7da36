"""Face detection with MediaPipe Tasks' FaceDetector (BlazeFace), and face crops.

>>> from fer_stream import FaceDetector
>>> with FaceDetector("blaze_face_short_range.tflite") as detector:  # doctest: +SKIP
...     faces = detector.detect(rgb_image)
>>> faces[0].box                                                       # doctest: +SKIP
Box(x=97, y=116, w=175, h=175)
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import numpy as np

from .errors import ModelError
from .frames import Box, Face
from .models import resolve_detector_model


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence what native code writes to fd 2 (LiteRT logs INFO lines no setting turns off)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (pytest capture, embedded)
        yield
        return
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


class FaceDetector:
    """Finds faces in RGB images; each face carries its box, score and an RGB crop.

    ``margin`` grows every box by that fraction of its size on each side before cropping, so the
    classifier sees the whole face as in its training crops. Use as a context manager (or call
    :meth:`close`) to free MediaPipe's graph.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, *, min_confidence: float = 0.5, margin: float = 0.1) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.model_path = resolve_detector_model(model_path)
        self.min_confidence = min_confidence
        self.margin = margin
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        try:
            with _native_stderr_silenced():
                self._detector = vision.FaceDetector.create_from_options(options)
                import mediapipe as mp

                # The first inference logs a one-time LiteRT alignment notice; spend it here.
                blank = np.zeros((128, 128, 3), np.uint8)
                self._detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=blank))
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"detector model '{self.model_path}' does not load in MediaPipe ({first}); point --detector-model at MediaPipe's blaze_face_short_range.tflite") from None
        self._mp = mp

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        detector, self._detector = getattr(self, "_detector", None), None
        if detector is not None:
            with _native_stderr_silenced():
                detector.close()

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an ``H x W x 3`` uint8 RGB image, highest score first, boxes clipped to it."""
        if self._detector is None:
            raise RuntimeError("FaceDetector is closed")
        # MediaPipe reads the raw buffer: a row-padded (non-contiguous) array silently finds nothing.
        rgb = np.ascontiguousarray(image)
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb))
        height, width = rgb.shape[:2]
        faces = []
        for d in result.detections:
            bb = d.bounding_box
            box = Box(int(bb.origin_x), int(bb.origin_y), int(bb.width), int(bb.height)).clip(width, height)
            if box.w < 2 or box.h < 2:
                continue
            score = float(d.categories[0].score) if d.categories else 0.0
            faces.append(Face(box=box, score=score, crop=crop(rgb, box, self.margin)))
        faces.sort(key=lambda f: f.score, reverse=True)
        return faces


def crop(image: np.ndarray, box: Box, margin: float = 0.0) -> np.ndarray:
    """A contiguous copy of ``box`` (grown by ``margin``, clipped to the image) cut from ``image``."""
    b = box.expand(margin).clip(image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[b.y : b.y + b.h, b.x : b.x + b.w])
