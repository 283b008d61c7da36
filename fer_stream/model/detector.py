"""Face detection: MediaPipe's BlazeFace models, whole frame or in tiles, and face crops.

Three detectors with one interface (``detect(rgb) -> list[Face]``, ``close()``, a context manager):

- :class:`FaceDetector` (``short``): MediaPipe Tasks' FaceDetector with the short-range model. It
  squeezes the frame into 128x128, so it finds faces down to about 15 % of the frame's height:
  people at a desk, in front of their webcam.
- :class:`FullRangeDetector` (``full``): the full-range model (192x192, faces up to about 5 m)
  through LiteRT, decoded in :mod:`fer_stream.model.blazeface`.
- :class:`TiledDetector` (``tiled``): the full-range model on overlapping tiles of the frame and
  both models on the whole frame, merged (as SAHI does): a face a few percent of a 1080p frame's
  height is found, and so is one that fills the frame.

:func:`make_detector` builds one by kind; ``auto`` picks per source (:func:`resolve_kind`).
Every face also carries a :class:`~fer_stream.frames.Quality` from the detector's
:class:`~fer_stream.model.quality.QualityGate`.

>>> from fer_stream import FaceDetector
>>> with FaceDetector("blaze_face_short_range.tflite") as detector:  # doctest: +SKIP
...     faces = detector.detect(rgb_image)
>>> faces[0].box                                                       # doctest: +SKIP
Box(x=97, y=116, w=175, h=175)
"""

from __future__ import annotations

import importlib.util
import os
from typing import Protocol, TypeVar

import cv2
import numpy as np

from fer_stream.errors import ModelError, first_line
from fer_stream.frames import Box, Face
from fer_stream.model.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, ios_matrix, iou_matrix
from fer_stream.model.blazeface import native_stderr_silenced as _native_stderr_silenced
from fer_stream.model.detector_files import resolve_detector_model
from fer_stream.model.quality import QualityGate

_D = TypeVar("_D")  # a context manager's own type

KINDS = ("auto", "short", "full", "tiled")
MODEL_FILES = {"short": ("short",), "full": ("full",), "tiled": ("full", "short")}  # the model files each kind loads
MAX_DETECT_SIDE = 4096  # larger frames are scaled down before the short-range model sees them


class Detector(Protocol):
    """What the pipeline needs of a face detector: its ``kind``, ``detect`` and ``close`` (also as a
    context manager); ``rejected``, the boxes the last ``detect`` found and dropped as no face; and
    ``reset``, called before each new video (a detector that follows faces forgets them)."""

    kind: str
    rejected: tuple[Box, ...]

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self: _D) -> _D: ...

    def __exit__(self, *exc: object) -> None: ...


class FaceDetector:
    """Finds faces in RGB images; each face carries its box, score and an RGB crop.

    ``margin`` grows every box by that fraction of its size on each side before cropping, so the
    classifier sees the whole face as in its training crops. Use as a context manager (or call
    :meth:`close`) to free MediaPipe's graph.
    """

    kind = "short"
    rejected: tuple[Box, ...] = ()

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        min_confidence: float = 0.5,
        margin: float = 0.1,
        quality: QualityGate | None = None,
    ) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        self.model_path = resolve_detector_model(model_path)
        self.min_confidence = min_confidence
        self.margin = margin
        self.quality = quality or QualityGate()
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
            first = first_line(e)
            raise ModelError(
                f"detector model '{self.model_path}' does not load in MediaPipe ({first}); "
                "point --detector-model at MediaPipe's blaze_face_short_range.tflite"
            ) from None
        self._mp = mp

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        pass  # nothing carries over between images

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
        # The model sees 128x128 anyway; a huge photo is scaled down first (MediaPipe crashes on some).
        s = min(1.0, MAX_DETECT_SIDE / max(rgb.shape[:2]))
        small = rgb if s == 1.0 else cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)
        result = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=small))
        sh, sw = small.shape[:2]
        found = [
            (
                Box(
                    round(d.bounding_box.origin_x / s),
                    round(d.bounding_box.origin_y / s),
                    round(d.bounding_box.width / s),
                    round(d.bounding_box.height / s),
                ),
                float(d.categories[0].score) if d.categories else 0.0,
                np.array([[k.x * sw / s, k.y * sh / s] for k in d.keypoints], np.float32) if len(d.keypoints or ()) == 6 else None,
            )
            for d in result.detections
        ]
        return make_faces(rgb, found, self.margin, self.quality)


class FullRangeDetector:
    """MediaPipe's full-range BlazeFace on the whole frame (faces up to about 5 m away)."""

    kind = "full"
    rejected: tuple[Box, ...] = ()

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        min_confidence: float = 0.6,
        margin: float = 0.1,
        quality: QualityGate | None = None,
        threads: int = 1,
    ) -> None:
        self.model_path = resolve_detector_model(model_path, kind="full")
        self.min_confidence = min_confidence
        self.margin = margin
        self.quality = quality or QualityGate()
        self._net: BlazeFace | None = BlazeFace(self.model_path, FULL_RANGE, min_score=min_confidence, threads=threads)

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        pass  # nothing carries over between images

    def close(self) -> None:
        if self._net is not None:
            self._net.close()
            self._net = None

    def _rows(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``(n, 16)`` (box ``x0, y0, x1, y1`` and 6 keypoints, frame pixels) and scores."""
        if self._net is None:
            raise RuntimeError("detector is closed")
        return self._net.detect_rows([rgb])[0]

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an ``H x W x 3`` uint8 RGB image, highest score first, boxes clipped to it."""
        rgb = np.ascontiguousarray(image)
        rows, scores = self._rows(rgb)
        return make_faces(rgb, _as_found(rows, scores), self.margin, self.quality)


class TiledDetector(FullRangeDetector):
    """The full-range model on overlapping ``tile`` x ``tile`` tiles of the frame and on the whole
    frame, in one batch, and the short-range model on the whole frame, merged (SAHI's slicing idea).
    The short-range pass costs under a millisecond and finds the large, close faces that the
    full-range model sometimes misses.

    A face that a tile cuts in two is also whole in the neighbouring tile (tiles overlap by
    ``overlap`` of their size) or in a whole-frame pass; :func:`merge` treats boxes lying inside one
    another as one face and keeps the box no tile edge cut. Frames no larger than a tile get the
    whole-frame passes only.

    Small faces are where false alarms live (a knot in the wallpaper at 40 px looks like a face),
    so every face smaller than ``verify_below`` of a tile is checked by a second, independent
    model: the short-range BlazeFace looks at a square three times the face's size around it,
    where the face fills a third of its input (its best range), and must find it too. Where the
    face landmark model verifies every box (:class:`~fer_stream.model.mesh.MeshDetector`, the
    default) this check is off (``verify_below`` 0).

    SAHI itself is not used: it wraps object-detection frameworks, not a LiteRT model, and the
    slicing is a few lines.
    """

    kind = "tiled"
    VERIFY_CONTEXT = 3.0  # side of the verification crop, in face heights
    VERIFY_IOU = 0.3  # the verifier's box and the candidate's must overlap this much

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        min_confidence: float = 0.6,
        margin: float = 0.1,
        quality: QualityGate | None = None,
        threads: int = 1,
        tile: int = 640,
        overlap: float = 0.2,
        short_model: str | os.PathLike[str] | None = None,
        verify_below: float = 0.25,
        verify_min_confidence: float = 0.5,
    ) -> None:
        super().__init__(model_path, min_confidence=min_confidence, margin=margin, quality=quality, threads=threads)
        self.tile = tile
        self.overlap = overlap
        self.verify_below = verify_below
        self._short: BlazeFace | None = BlazeFace(
            resolve_detector_model(short_model), SHORT_RANGE, min_score=verify_min_confidence, threads=threads
        )

    def close(self) -> None:
        super().close()
        if self._short is not None:
            self._short.close()
            self._short = None

    def _verify(self, rgb: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep large faces; keep a small one only if the short-range model finds it in its surroundings."""
        boxes = rows[:, :4]
        sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        small = np.flatnonzero(sizes < self.verify_below * self.tile)
        if self._short is None or len(small) == 0:
            return rows, scores
        height, width = rgb.shape[:2]
        keep = np.ones(len(boxes), bool)
        # One crop at a time: the short-range model is no faster per image in a batch, and a batch
        # of a changing size would make LiteRT re-plan its tensors on every frame.
        for i in small:
            cx, cy = (boxes[i, 0] + boxes[i, 2]) / 2, (boxes[i, 1] + boxes[i, 3]) / 2
            half = sizes[i] * self.VERIFY_CONTEXT / 2
            x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
            x1, y1 = int(min(width, cx + half)), int(min(height, cy + half))
            found = self._short.detect([rgb[y0:y1, x0:x1]])[0][0] + np.array([x0, y0, x0, y0], np.float32)
            keep[i] = bool((iou_matrix(boxes[i : i + 1], found) >= self.VERIFY_IOU).any())
        return rows[keep], scores[keep]

    def _rows(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._net is None or self._short is None:
            raise RuntimeError("detector is closed")
        height, width = rgb.shape[:2]
        # Scale the frame once so that a tile is exactly the model's input: the tiles are then cut
        # from it with no resizing of their own (one resize per frame instead of one per tile).
        s = min(1.0, self._net.spec.input_size / self.tile)
        small = rgb if s == 1.0 else cv2.resize(rgb, (max(1, round(width * s)), max(1, round(height * s))), interpolation=cv2.INTER_AREA)
        tiles = [
            (round(x * s), round(y * s), round(w * s), round(h * s)) for x, y, w, h in tile_grid(width, height, self.tile, self.overlap)
        ]
        views = [small] + [small[y : y + h, x : x + w] for x, y, w, h in tiles]
        found = self._short.detect_rows([small]) + self._net.detect_rows(views)
        offsets = [(0, 0), (0, 0)] + [(x, y) for x, y, _, _ in tiles]
        rows = np.concatenate([b + np.tile(np.array([x, y], np.float32), 8) for (b, _), (x, y) in zip(found, offsets)]) / s
        scores = np.concatenate([sc for _, sc in found])
        sh, sw = small.shape[:2]
        cut = np.concatenate(
            [np.zeros(len(found[0][0]) + len(found[1][0]), bool)]
            + [_touches_inner_edge(b, t, sw, sh) for (b, _), t in zip(found[2:], tiles)]
        )
        return self._verify(rgb, *merge(rows, scores, cut))


def tile_grid(width: int, height: int, tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles ``(x, y, w, h)`` of at most ``tile`` px covering the frame, neighbours overlapping by
    ``overlap`` of a tile; none when the frame fits in one tile."""
    if width <= tile and height <= tile:
        return []
    step = max(1, round(tile * (1 - overlap)))

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        count = -(-(n - tile) // step) + 1
        # Spread evenly so the last tile ends at the edge.
        return [round(i * (n - tile) / (count - 1)) for i in range(count)]

    return [(x, y, min(tile, width), min(tile, height)) for y in starts(height) for x in starts(width)]


def merge(
    boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray | None = None, iou: float = 0.3, ios: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy merge of detections from several passes: a box overlapping a kept one by IoU > ``iou``,
    or lying mostly inside it or around it (IoS > ``ios``), is the same face. ``boxes`` rows start
    with ``x0, y0, x1, y1``; further columns (keypoints) go with them.

    Boxes that a tile's inner edge ``cut`` come last, so a face keeps the box of a pass that saw it
    whole whenever there is one; otherwise the best score wins.
    """
    cut = np.zeros(len(boxes), bool) if cut is None else cut
    order = np.lexsort((-scores, cut))
    boxes, scores = boxes[order], scores[order]
    xyxy = boxes[:, :4]
    same = (iou_matrix(xyxy, xyxy) > iou) | (ios_matrix(xyxy, xyxy) > ios)
    alive = np.ones(len(boxes), bool)
    keep = []
    for i in range(len(boxes)):
        if alive[i]:
            keep.append(i)
            alive &= ~same[i]
    return boxes[keep], scores[keep]


def _touches_inner_edge(boxes: np.ndarray, tile: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """Which of a tile's boxes (tile pixels) reach an edge of the tile that is not the frame's edge."""
    x, y, w, h = tile
    edge = 2.0
    return (
        ((boxes[:, 0] <= edge) & (x > 0))
        | ((boxes[:, 1] <= edge) & (y > 0))
        | ((boxes[:, 2] >= w - edge) & (x + w < width))
        | ((boxes[:, 3] >= h - edge) & (y + h < height))
    )


Found = tuple[Box, float, "np.ndarray | None"]  # a detection: box, score, keypoints (6, 2) or None


def _as_found(rows: np.ndarray, scores: np.ndarray) -> list[Found]:
    boxes = rows[:, :4]
    xywh = np.round(np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)).astype(int)
    points = rows[:, 4:16].reshape(-1, 6, 2) if rows.shape[1] >= 16 else [None] * len(rows)
    return [(Box(*map(int, b)), float(s), k) for b, s, k in zip(xywh, scores, points)]


def make_faces(rgb: np.ndarray, found: list[Found], margin: float, gate: QualityGate) -> list[Face]:
    """Faces (box clipped to the image, crop with ``margin``, quality, keypoints) from detections, best first."""
    height, width = rgb.shape[:2]
    faces = []
    for box, score, keypoints in found:
        box = box.clip(width, height)
        if box.w < 2 or box.h < 2:
            continue
        cut = crop(rgb, box, margin)
        faces.append(Face(box=box, score=score, crop=cut, quality=gate.assess(cut, box, score), keypoints=keypoints))
    faces.sort(key=lambda f: f.score, reverse=True)
    return faces


def resolve_kind(kind: str, *, webcam: bool) -> str:
    """``auto`` -> ``short`` for webcams (a face at a desk fills the frame), ``tiled`` for files,
    network cameras and images (faces can be far and small), or ``short`` where LiteRT is not
    installed (Windows); other kinds as given."""
    if kind == "auto":
        if webcam:
            return "short"
        return "tiled" if litert_available() else "short"
    return kind


def litert_available() -> bool:
    """Whether LiteRT (``ai-edge-litert``, not built for Windows) is installed: the full-range and
    tiled detectors and the face landmark model need it."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def make_detector(
    kind: str,
    *,
    short_model: str | os.PathLike[str] | None = None,
    full_model: str | os.PathLike[str] | None = None,
    min_confidence: float = 0.5,
    full_min_confidence: float = 0.6,
    margin: float = 0.1,
    quality: QualityGate | None = None,
    tile: int = 640,
    overlap: float = 0.2,
    verify_below: float = 0.25,
    threads: int = 1,
) -> Detector:
    """A detector of ``kind`` (``short``, ``full`` or ``tiled``; resolve ``auto`` first).

    ``min_confidence`` applies to the short-range model (also as the tiled detector's verifier),
    ``full_min_confidence`` to the full-range one; the defaults are MediaPipe's own for each.
    ``verify_below``: the tiled detector's check of small faces with the short-range model
    (0: off, for when the face landmark model checks every box); ``threads``: LiteRT's threads.
    """
    if kind == "short":
        return FaceDetector(short_model, min_confidence=min_confidence, margin=margin, quality=quality)
    if kind == "full":
        return FullRangeDetector(full_model, min_confidence=full_min_confidence, margin=margin, quality=quality, threads=threads)
    if kind == "tiled":
        return TiledDetector(
            full_model,
            min_confidence=full_min_confidence,
            margin=margin,
            quality=quality,
            tile=tile,
            overlap=overlap,
            short_model=short_model,
            verify_min_confidence=min_confidence,
            verify_below=verify_below,
            threads=threads,
        )
    raise ModelError(f"unknown detector kind '{kind}'; use one of {', '.join(KINDS)}")


def crop(image: np.ndarray, box: Box, margin: float = 0.0) -> np.ndarray:
    """A contiguous copy of ``box`` (grown by ``margin``, clipped to the image) cut from ``image``."""
    b = box.expand(margin).clip(image.shape[1], image.shape[0])
    return np.ascontiguousarray(image[b.y : b.y + b.h, b.x : b.x + b.w])
