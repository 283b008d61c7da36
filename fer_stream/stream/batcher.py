"""Exact-mode batching: crops of consecutive frames pooled into classifier batches, frames released in order.

Files are processed whole: every due crop is classified. :class:`ExactBatcher` takes frames as
:class:`Pending` (with their due crops preprocessed), runs batches of up to ``max_batch`` crops
across frames, waiting at most ``batch_wait`` seconds for a batch to fill, and releases each frame
once all its crops have their probabilities: smoothed per track in frame order, faces not due this
frame showing their track's latest result. The live counterpart is :mod:`fer_stream.stream.live`.

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
from typing import Any

import numpy as np
import torch

from fer_stream.frames import Face, Frame, FrameResult
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.stats import TrackLog

END = object()  # end-of-stream marker that flows down the pipeline's queues


@dataclass(eq=False)
class Pending:
    """A frame inside the classifier stage, waiting for its due faces' probabilities."""

    frame: Frame
    faces: list[Face]
    due: list[int]  # indices of the faces to classify in this frame
    pixels: Any  # the classifier's preprocessed input, one row per due face
    ended: list[int]  # tracks that ended at this frame
    probs: dict[int, np.ndarray] = field(default_factory=dict)
    missing: int = field(init=False)

    def __post_init__(self) -> None:
        self.missing = len(self.due)


class ExactBatcher:
    """Batches due crops across frames through ``classifier`` and releases frames in order."""

    def __init__(
        self,
        classifier: Any,
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
        self.on_batch = on_batch  # (faces, seconds) of each batch, for metrics
        self.batch_sizes: Counter[int] = Counter()
        self.classified = 0

    def run(
        self, get: Callable[[float | None], Any], get_nowait: Callable[[], Any], put: Callable[[FrameResult], bool], stop: threading.Event
    ) -> None:
        """Until ``END`` arrives and every frame is out, or ``stop``.

        ``get(timeout)`` returns the next :class:`Pending`, ``END``, or ``None`` when ``timeout``
        passes (the pipeline's answer to a stop is ``END``); ``get_nowait`` raises ``queue.Empty``;
        ``put`` returns False once the pipeline is stopping.
        """
        max_batch = self.classifier.max_batch
        pending: deque[Pending] = deque()  # frames in arrival order
        waiting: deque[tuple[Pending, int, float]] = deque()  # due crops not yet classified, with arrival time
        ended = False

        def take(item: Any) -> None:
            nonlocal ended
            if item is END:
                ended = True
                return
            pending.append(item)
            now = time.monotonic()
            waiting.extend((item, row, now) for row in range(len(item.due)))

        while not stop.is_set():
            if not ended:
                timeout = None if not waiting else max(0.0, waiting[0][2] + self.batch_wait - time.monotonic())
                item = get(timeout)
                if item is not None:
                    if item is END and stop.is_set():
                        return
                    take(item)
                while not ended and len(waiting) < max_batch:  # top the batch up without waiting
                    try:
                        take(get_nowait())
                    except queue.Empty:
                        break
            full = len(waiting) >= max_batch
            overdue = bool(waiting) and (ended or time.monotonic() >= waiting[0][2] + self.batch_wait)
            if full or overdue:
                batch = [waiting.popleft() for _ in range(min(max_batch, len(waiting)))]
                probs = self._forward(torch.cat([p.pixels[row : row + 1] for p, row, _ in batch]))
                for (p, row, _), prob in zip(batch, probs):
                    p.probs[p.due[row]] = prob
                    p.missing -= 1
            while pending and pending[0].missing == 0:
                if not put(self.release(pending.popleft())):
                    return
            if ended and not pending:
                return

    def _forward(self, pixels: torch.Tensor) -> np.ndarray:
        started = time.monotonic()
        probs = self.classifier.forward(pixels)
        if self.on_batch is not None:
            self.on_batch(len(probs), time.monotonic() - started)
        self.batch_sizes[len(probs)] += 1
        self.classified += len(probs)
        return probs

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
