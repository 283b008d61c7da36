"""Exact-mode batching: crops of consecutive frames pooled into classifier batches, frames released in order.

Files are processed whole: every due crop is classified. :class:`ExactBatcher` takes frames as
:class:`Pending` (with their due crops preprocessed), runs batches of up to ``max_batch`` crops
across frames, waiting at most ``batch_wait`` seconds for a batch to fill, and releases each frame
once all its crops have their probabilities: smoothed per track in frame order, faces not due this
frame showing their track's latest result. The live counterpart is :mod:`fer_stream.stream.live`.

Queueing rows, taking up to ``max_batch`` of them and the forward pass are shared with the
classifier service (:mod:`fer_stream.model.batching`); waiting for a batch to fill and releasing
frames in order are exact mode's own.

>>> batcher = ExactBatcher(clf, Smoother("off"), TrackLog())                  # doctest: +SKIP
>>> batcher.run(get, get_nowait, put, stop)   # the pipeline's classify stage     # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fer_stream.frames import Face, Frame, FrameResult
from fer_stream.model.batching import BatchLog, RowQueue, forward_rows
from fer_stream.model.contract import Classifier
from fer_stream.stream.buffers import END, End
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.stats import TrackLog

if TYPE_CHECKING:
    from fer_stream.model.contract import PixelValues


@dataclass(eq=False)
class Pending:
    """A frame inside the classifier stage, waiting for its due faces' probabilities."""

    frame: Frame
    faces: list[Face]
    due: list[int]  # indices of the faces to classify in this frame
    pixels: PixelValues | None  # the classifier's preprocessed input, one row per due face (None: none due)
    ended: list[int]  # tracks that ended at this frame
    probs: dict[int, np.ndarray] = field(default_factory=dict)
    missing: int = field(init=False)

    def __post_init__(self) -> None:
        self.missing = len(self.due)


def _pixels(p: Pending) -> PixelValues:
    assert p.pixels is not None  # queued only with due faces
    return p.pixels


class ExactBatcher:
    """Batches due crops across frames through ``classifier`` and releases frames in order."""

    def __init__(
        self,
        classifier: Classifier,
        smoother: Smoother,
        track_log: TrackLog,
        *,
        batch_wait: float = 0.05,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.classifier = classifier
        self.smoother = smoother
        self.track_log = track_log
        self.batch_wait = batch_wait
        self.log = BatchLog(on_batch)  # on_batch: (faces, seconds) of each batch, for metrics

    @property
    def batch_sizes(self) -> Counter[int]:
        return self.log.sizes

    @property
    def classified(self) -> int:
        return self.log.rows

    def run(
        self,
        get: Callable[[float | None], Pending | End | None],
        get_nowait: Callable[[], Pending | End],
        put: Callable[[FrameResult], bool],
        stop: threading.Event,
    ) -> None:
        """Until ``END`` arrives and every frame is out, or ``stop``.

        ``get(timeout)`` returns the next :class:`Pending`, ``END``, or ``None`` when ``timeout``
        passes (the pipeline's answer to a stop is ``END``); ``get_nowait`` raises ``queue.Empty``;
        ``put`` returns False once the pipeline is stopping.
        """
        max_batch = self.classifier.max_batch
        pending: deque[Pending] = deque()  # frames in arrival order
        waiting: RowQueue[Pending] = RowQueue()  # due crops not yet classified, with their frame's arrival time
        ended = False

        def take(item: Pending | End) -> None:
            nonlocal ended
            if item is END:
                ended = True
                return
            pending.append(item)
            waiting.push(item, len(item.due), time.monotonic())

        while not stop.is_set():
            if not ended:
                timeout = None if not waiting else max(0.0, waiting.oldest() + self.batch_wait - time.monotonic())
                item = get(timeout)
                if item is not None:
                    if item is END and stop.is_set():
                        return
                    take(item)
                while not ended and waiting.rows < max_batch:  # top the batch up without waiting
                    try:
                        take(get_nowait())
                    except queue.Empty:
                        break
            full = waiting.rows >= max_batch
            overdue = bool(waiting) and (ended or time.monotonic() >= waiting.oldest() + self.batch_wait)
            if full or overdue:
                parts = waiting.take(max_batch)
                probs = iter(forward_rows(self.classifier.forward, parts, _pixels, self.log))
                for part in parts:
                    p = part.request
                    for row in range(part.start, part.stop):
                        p.probs[p.due[row]] = next(probs)
                    p.missing -= part.rows
            while pending and pending[0].missing == 0:
                if not put(self.release(pending.popleft())):
                    return
            if ended and not pending:
                return

    def release(self, p: Pending) -> FrameResult:
        """Smooth the frame's new classifications in frame order; other faces reuse their track's."""
        rows: list[np.ndarray | None] = []
        fresh: list[bool] = []
        for i, face in enumerate(p.faces):
            if not face.usable:
                rows.append(None)
                fresh.append(False)
            elif i in p.probs:
                rows.append(self.smoother.update(face.track_id, p.probs[i]))
                fresh.append(True)
                self.track_log.classified(face.track_id)
            else:
                rows.append(self.smoother.get(face.track_id))
                fresh.append(False)
        known = [r for r in rows if r is not None]
        preds = iter(self.classifier.postprocess(np.stack(known)) if known else [])
        faces = tuple(
            face.with_prediction(next(preds) if row is not None else None, fresh=is_fresh)
            for face, row, is_fresh in zip(p.faces, rows, fresh)
        )
        self.smoother.forget(p.ended)
        return FrameResult(p.frame, faces)
