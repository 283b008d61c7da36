"""The sink that keeps flagged faces for review (``--review DIR``): a bounded share of them, in a store.

Of every face classified on a frame (``fresh``), usable and flagged, it keeps at most one per track
every ``every_s`` seconds of the stream, each as its crop, a larger cut-out of the frame around it
and a record (:class:`~fer_stream.io.review.ReviewStore`). It holds at most ``max_faces``
unreviewed faces from this run: when full, the oldest of them is retired for the new one (answered
faces are never retired). What it kept, retired and passed over is in :attr:`counts` (the summary's
``review``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from fer_stream.frames import Face, FrameResult
from fer_stream.io.review import ReviewStore
from fer_stream.io.sinks import Sink

CONTEXT_MARGIN = 1.0  # the cut-out: the box grown by its own size on every side (3x its width)
CONTEXT_PX = 320  # ... scaled down to at most this many pixels on its longer side


class ReviewCollector(Sink):
    """Keeps flagged faces of one source in ``store`` (see the module's text)."""

    def __init__(
        self,
        store: ReviewStore,
        *,
        every_s: float = 2.0,
        max_faces: int = 200,
        source: str = "",
        source_id: str = "",
        model: str = "",
        threshold: float | None = None,
    ) -> None:
        self.store = store
        self.every_s = every_s
        self.max_faces = max_faces
        self.common: dict[str, Any] = {"source": source, "source_id": source_id, "model": model}
        if threshold is not None:
            self.common["threshold"] = round(threshold, 4)
        self._last: dict[int | None, float] = {}  # track -> stream time of its last kept face
        self._held: deque[str] = deque()  # this run's unreviewed faces, oldest first
        self.counts = {"kept": 0, "dropped": 0, "rate_limited": 0}

    def write(self, result: FrameResult) -> None:
        t = result.frame.time
        for face in result.faces:
            if not _worth_a_look(face):
                continue
            last = self._last.get(face.track)
            if last is not None and t - last < self.every_s:
                self.counts["rate_limited"] += 1
                continue
            self._last[face.track] = t
            self._make_room()
            assert face.crop is not None and face.prediction is not None
            record = {
                **self.common,
                "time": round(t, 3),
                "wall": round(time.time(), 3),
                "frame": result.frame.index,
                **face.record(),
            }
            self._held.append(self.store.add(record, face.crop, context_of(result.frame.image, face)))
            self.counts["kept"] += 1

    def _make_room(self) -> None:
        """Retire this run's oldest unreviewed face while ``max_faces`` of them are held."""
        if len(self._held) < self.max_faces:
            return
        answered = self.store.answers()
        self._held = deque(fid for fid in self._held if fid not in answered)
        while len(self._held) >= self.max_faces:
            self.store.drop(self._held.popleft())
            self.counts["dropped"] += 1

    def summary(self) -> dict[str, Any]:
        return {"dir": str(self.store.root), **self.counts}


def _worth_a_look(face: Face) -> bool:
    p = face.prediction
    return p is not None and p.flagged and face.fresh and face.usable and face.crop is not None and face.crop.size > 0


def context_of(image: np.ndarray, face: Face) -> np.ndarray:
    """The frame around ``face``: its box grown by :data:`CONTEXT_MARGIN`, at most :data:`CONTEXT_PX` px."""
    h, w = image.shape[:2]
    box = face.box.expand(CONTEXT_MARGIN).clip(w, h)
    cut = image[box.y : box.y + box.h, box.x : box.x + box.w]
    side = max(cut.shape[:2])
    if side > CONTEXT_PX:
        import cv2

        scale = CONTEXT_PX / side
        cut = cv2.resize(cut, (max(1, round(cut.shape[1] * scale)), max(1, round(cut.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cut)
