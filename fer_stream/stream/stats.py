"""Run statistics: counters, capture-to-output latency percentiles, and per-track counts."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import numpy as np


class LatencyStats:
    """Capture-to-output latencies with bounded memory.

    Keeps every sample up to ``capacity`` and then a uniform random sample of that size
    (reservoir sampling), so percentiles stay unbiased on a run of weeks.
    """

    def __init__(self, capacity: int = 20_000, seed: int = 0) -> None:
        self.capacity = capacity
        self.count = 0
        self._samples: list[float] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            if len(self._samples) < self.capacity:
                self._samples.append(seconds)
            else:
                j = self._rng.randrange(self.count)
                if j < self.capacity:
                    self._samples[j] = seconds

    def percentiles(self, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float | None]:
        """``{"p50": s, "p95": s, "p99": s}`` in seconds (``None`` before any sample)."""
        with self._lock:
            samples = np.array(self._samples)
        if not len(samples):
            return {f"p{q:g}": None for q in qs}
        values = np.percentile(samples, qs)
        return {f"p{q:g}": round(float(v), 4) for q, v in zip(qs, values)}


@dataclass
class TrackInfo:
    """What a run saw of one track: frames it was in, classifications made of it, its time span."""

    id: int
    first_time: float
    last_time: float
    frames: int = 0
    classified: int = 0

    @property
    def duration_s(self) -> float:
        return self.last_time - self.first_time

    def as_dict(self) -> dict[str, int | float]:
        return {"id": self.id, "frames": self.frames, "classified": self.classified, "duration_s": round(self.duration_s, 3)}


class TrackLog:
    """Per-track counts, updated from the detect and classify threads.

    Keeps the ``capacity`` most recently started tracks (a camera watched for weeks sees tens of
    thousands); ``omitted`` counts the older ones let go.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._tracks: dict[int, TrackInfo] = {}
        self._lock = threading.Lock()
        self.capacity = capacity
        self.omitted = 0

    def seen(self, track: int, t: float) -> None:
        with self._lock:
            info = self._tracks.get(track)
            if info is None:
                info = self._tracks[track] = TrackInfo(track, t, t)
                if len(self._tracks) > self.capacity:  # dicts keep insertion order: drop the oldest
                    del self._tracks[next(iter(self._tracks))]
                    self.omitted += 1
            info.frames += 1
            info.last_time = t

    def classified(self, track: int, n: int = 1) -> None:
        with self._lock:
            if track in self._tracks:
                self._tracks[track].classified += n

    def snapshot(self) -> list[TrackInfo]:
        with self._lock:
            return [TrackInfo(i.id, i.first_time, i.last_time, i.frames, i.classified) for i in self._tracks.values()]


@dataclass(frozen=True)
class PipelineStats:
    """Counters of a run so far."""

    frames_in: int
    dropped: int
    faces: int
    classified: int
    batches: int
    batch_sizes: dict[int, int]
    elapsed_s: float
    source_ended: bool
    latency_s: dict[str, float | None] = field(default_factory=dict)
    tracks: list[TrackInfo] = field(default_factory=list)
    rejected: int = 0  # boxes the face landmark model found to hold no face

    @property
    def mean_batch(self) -> float:
        n = sum(self.batch_sizes.values())
        return sum(k * v for k, v in self.batch_sizes.items()) / n if n else 0.0
