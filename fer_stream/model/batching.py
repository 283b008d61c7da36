"""Batching shared by exact mode's batcher and the classifier service: rows queued, taken, counted.

Both queue *requests* of preprocessed rows (a frame's due faces; a pipeline's ``forward`` call),
take up to ``max_batch`` rows from the head in arrival order (a request may be split over two
model batches), run them as one forward pass and hand each request its rows' probabilities:

* :class:`RowQueue`: the requests waiting, with how many of their rows were taken;
* :func:`forward_rows`: one batch of slices -> one ``torch.cat`` -> one forward pass, timed and
  counted in a :class:`BatchLog`; :class:`BatchLog` also counts the live classifier's batches.

What stays with each user is *when* a batch runs: the batcher waits up to ``batch_wait`` for a
batch to fill and releases frames in order; the service runs whatever is queued as soon as the
model is free; the live classifier picks tracks by priority (:mod:`fer_stream.stream.schedule`).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

if TYPE_CHECKING:  # imported where a batch runs: the live classifier imports this module, and `fer-stream --help` must not wait for torch
    from fer_stream.model.contract import PixelValues

R = TypeVar("R")


@dataclass(frozen=True)
class Slice(Generic[R]):
    """Rows ``start:stop`` of ``request``, taken into one model batch."""

    request: R
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(eq=False)
class _Waiting(Generic[R]):
    request: R
    rows: int
    arrived: float
    taken: int = 0


class RowQueue(Generic[R]):
    """Requests of rows in arrival order, taken ``room`` rows at a time (not thread-safe: the caller locks)."""

    def __init__(self) -> None:
        self._waiting: deque[_Waiting[R]] = deque()
        self.rows = 0  # rows waiting, over every request

    def push(self, request: R, rows: int, arrived: float = 0.0) -> None:
        """Queue ``rows`` rows of ``request`` (none: nothing is queued)."""
        if rows > 0:
            self._waiting.append(_Waiting(request, rows, arrived))
            self.rows += rows

    def __bool__(self) -> bool:
        return self.rows > 0

    def oldest(self) -> float:
        """When the request at the head arrived (the queue is not empty)."""
        return self._waiting[0].arrived

    def take(self, room: int) -> list[Slice[R]]:
        """Up to ``room`` rows from the head, as slices of their requests."""
        parts: list[Slice[R]] = []
        while self._waiting and room:
            w = self._waiting[0]
            n = min(room, w.rows - w.taken)
            parts.append(Slice(w.request, w.taken, w.taken + n))
            w.taken += n
            room -= n
            self.rows -= n
            if w.taken == w.rows:
                self._waiting.popleft()
        return parts


class BatchLog:
    """Counts of a classifier's batches: how many of each size, rows, time in the model, mixed batches.

    ``on_batch(rows, seconds)`` is told of each batch (the run's metrics).
    """

    def __init__(self, on_batch: Callable[[int, float], None] | None = None) -> None:
        self.sizes: Counter[int] = Counter()
        self.rows = 0
        self.busy_s = 0.0
        self.mixed = 0  # batches holding rows of more than one owner (video, camera)
        self.on_batch = on_batch

    def record(self, rows: int, seconds: float, owners: int = 1) -> None:
        self.sizes[rows] += 1
        self.rows += rows
        self.busy_s += seconds
        if owners > 1:
            self.mixed += 1
        if self.on_batch is not None:
            self.on_batch(rows, seconds)


def forward_rows(
    forward: Callable[[PixelValues], np.ndarray],
    parts: Sequence[Slice[R]],
    pixels: Callable[[R], PixelValues],
    log: BatchLog,
    owner: Callable[[R], Hashable] | None = None,
) -> np.ndarray:
    """One model batch: the slices' rows (``pixels(request)[start:stop]``) concatenated in order and
    run through ``forward``; returns the probabilities, row ``i`` for the ``i``-th row of ``parts``.

    The forward pass is timed and counted in ``log`` (``owner`` names whose each request is, to
    count batches mixing owners); a failing forward pass raises and counts nothing.
    """
    rows = [pixels(p.request)[p.start : p.stop] for p in parts]
    if isinstance(rows[0], np.ndarray):  # ONNX Runtime's numpy path: no torch
        batch: Any = np.concatenate(rows)
    else:
        import torch

        batch = torch.cat([torch.as_tensor(r) for r in rows])
    started = time.monotonic()
    probs = forward(batch)
    seconds = time.monotonic() - started
    log.record(len(probs), seconds, len({owner(p.request) for p in parts}) if owner is not None else 1)
    return probs
