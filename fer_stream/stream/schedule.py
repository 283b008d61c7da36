"""Which faces to classify, and when.

A ViT on a CPU classifies a few faces per second while a camera delivers 25-30 frames, so
classifying every face of every frame cannot keep up. As DeepStream's secondary classifiers do,
fer-stream classifies per *track* and lets the frames in between reuse the track's latest result:

* :class:`EveryN` (files, exact by default): classify a track on its first frame and then on every
  ``n``-th frame of it. ``n = 1`` classifies every face of every frame. Decisions depend only on
  the frame sequence, so a file gives the same results on every run and every machine.
* :class:`LiveScheduler` (cameras, ``--live``): the detector offers each track's newest crop; the
  classifier takes a batch whenever it is free: tracks never classified first (newest first),
  then the least recently classified, each at most ``max_hz`` times a second. Frames never wait for
  the classifier, so the overlay keeps the camera's frame rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)  # a track id, or any hashable key such as TrackKey(source, track)


class EveryN:
    """Classify a track on its first frame and every ``n``-th frame after (exact mode)."""

    def __init__(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.n = n
        self._since: dict[int, int] = {}  # frames since the track was last classified

    def due(self, track: int) -> bool:
        """Whether this frame's crop of ``track`` is to be classified; call once per track per frame."""
        since = self._since.get(track)
        if since is None or since + 1 >= self.n:
            self._since[track] = 0
            return True
        self._since[track] = since + 1
        return False

    def forget(self, tracks: list[int]) -> None:
        for t in tracks:
            self._since.pop(t, None)


@dataclass
class _Candidate(Generic[K]):
    track: K
    seq: int  # order of the track's first offer: higher is newer
    crop: np.ndarray | None = None  # the newest crop not yet classified
    captured: float = 0.0
    classified_at: float | None = None  # when its last classification started (monotonic)


class LiveScheduler(Generic[K]):
    """A thread-safe table of each live track's newest crop, handed to the classifier by priority.

    >>> s = LiveScheduler(max_hz=0)
    >>> s.offer(1, "crop-a", 0.0); s.offer(2, "crop-b", 0.0)
    >>> [t for t, _, _ in s.take(8, timeout=0)]   # never-classified tracks, newest first
    [2, 1]
    """

    def __init__(self, max_hz: float = 0.0) -> None:
        self.min_interval = 1.0 / max_hz if max_hz > 0 else 0.0
        self._cond = threading.Condition()
        self._tracks: dict[K, _Candidate[K]] = {}
        self._seq = 0

    def offer(self, track: K, crop: np.ndarray, captured: float) -> None:
        """The newest crop of ``track`` (replaces an older one not yet taken)."""
        with self._cond:
            c = self._tracks.get(track)
            if c is None:
                self._seq += 1
                c = self._tracks[track] = _Candidate(track, self._seq)
            c.crop, c.captured = crop, captured
            self._cond.notify()

    def __contains__(self, track: object) -> bool:
        with self._cond:
            return track in self._tracks

    def retire(self, tracks: list[K]) -> None:
        """Forget tracks that ended."""
        with self._cond:
            for t in tracks:
                self._tracks.pop(t, None)

    def _ready(self, now: float) -> tuple[list[_Candidate[K]], float | None]:
        """Candidates that may run now, and how long until the next one may (if none can)."""
        ready, wait = [], None
        for c in self._tracks.values():
            if c.crop is None:
                continue
            left = 0.0 if c.classified_at is None else c.classified_at + self.min_interval - now
            if left <= 0:
                ready.append(c)
            else:
                wait = left if wait is None else min(wait, left)
        return ready, wait

    def take(self, max_batch: int, timeout: float | None = None) -> list[tuple[K, np.ndarray, float]]:
        """Up to ``max_batch`` ``(track, crop, captured)`` by priority; empty if ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                ready, wait = self._ready(now)
                if ready:
                    break
                left = None if deadline is None else deadline - now
                if left is not None and left <= 0:
                    return []
                waits = [w for w in (wait, left) if w is not None]
                self._cond.wait(min(waits) if waits else None)
            # Never classified first, newest track first; then the least recently classified.
            ready.sort(key=lambda c: (c.classified_at is not None, c.classified_at or 0.0, -c.seq))
            out: list[tuple[K, np.ndarray, float]] = []
            for c in ready[:max_batch]:
                assert c.crop is not None  # ready: a crop waits
                out.append((c.track, c.crop, c.captured))
                c.crop, c.classified_at = None, now
            return out

    def wake(self) -> None:
        """Wake a waiting ``take`` (used when stopping)."""
        with self._cond:
            self._cond.notify_all()
