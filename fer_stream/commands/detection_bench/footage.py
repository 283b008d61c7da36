"""The benchmark's raw material: frames sampled from the videos (and still images), each with every face the detectors find in it.

:class:`FaceFinder` looks hard, so that a face left unmasked cannot pass for a false box: the
short- and full-range models on the whole picture and the full-range model on tiles of 640 and
320 px (faces down to a few percent of the picture), every model at a low score (``FIND_SCORE``)
and without any verification. What it finds is masked out of the hard negatives and kept out of
the backgrounds; the one clear face of the short-range model (if a frame has one) is the
*reference* face that the scenes and sequences cut out and move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_stream.config import Config
from fer_stream.io.images import find_images, read_image
from fer_stream.io.sources import AVSource
from fer_stream.model.detector import Detector, make_detector

from .scoring import face_boxes

FIND_SCORE = 0.4  # below every detector's own threshold (0.5 short range, 0.6 full range)
FIND_TILES = (640, 320)
REFERENCE_SCORE = 0.8  # a reference face: the short-range model's only face at 0.5, scored this high


@dataclass(frozen=True)
class Shot:
    """A sampled picture (RGB), every face found in it (``x0, y0, x1, y1`` boxes, and their scores)
    and its reference face (index into ``faces``), if it has one."""

    image: np.ndarray
    faces: np.ndarray
    scores: np.ndarray
    reference: int | None
    source: str


class FaceFinder:
    """Every face the short- and full-range models find in a picture at several scales (module docstring)."""

    def __init__(self, cfg: Config) -> None:
        d = cfg.detector
        short, full = d.model or None, d.full_model or None
        self._short = make_detector("short", min_confidence=FIND_SCORE, short_model=short)
        self._others: list[Detector] = []
        try:
            self._others.append(make_detector("full", full_min_confidence=FIND_SCORE, full_model=full, threads=d.threads))
            for tile in FIND_TILES:
                tiled = make_detector(
                    "tiled",
                    short_model=short,
                    full_model=full,
                    min_confidence=FIND_SCORE,
                    full_min_confidence=FIND_SCORE,
                    tile=tile,
                    verify_below=0.0,
                    threads=d.threads,
                )
                self._others.append(tiled)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for det in (self._short, *self._others):
            det.close()

    def find(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Every face box in ``image``, their scores, and which of them is its reference face (or None)."""
        rgb = np.ascontiguousarray(image)
        short = self._short.detect(rgb)
        found = short + [f for det in self._others for f in det.detect(rgb)]
        clear = [f for f in short if f.score >= 0.5]
        reference = short.index(clear[0]) if len(clear) == 1 and clear[0].score >= REFERENCE_SCORE else None
        return face_boxes(found), np.asarray([f.score for f in found], np.float32), reference


def sample_shots(videos: Sequence[str], images: Sequence[str], finder: FaceFinder, per_video: int) -> list[Shot]:
    """``per_video`` frames spread over each video, and each image, with the faces ``finder`` finds."""
    shots = []
    for path in videos:
        with AVSource(path) as src:
            frames = [f.image for f in src.frames()]
        for i in sorted(set(np.linspace(0, len(frames) - 1, per_video).round().astype(int).tolist())):
            shots.append(_shot(frames[i], finder, path))
    for file in image_files(images):
        shots.append(_shot(read_image(file), finder, str(file)))
    return shots


def _shot(image: np.ndarray, finder: FaceFinder, source: str) -> Shot:
    image = np.ascontiguousarray(image)
    return Shot(image, *finder.find(image), source=source)


def image_files(paths: Sequence[str]) -> list[Path]:
    """The image files named, folders searched."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += find_images(p) if p.is_dir() else [p]  # read_image names a missing or broken file
    return out
