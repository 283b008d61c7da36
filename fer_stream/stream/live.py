"""The classifier of live mode, shared by every camera of a process.

One thread takes the newest crop of each track from a :class:`~fer_stream.stream.schedule.LiveScheduler`
(new tracks first, then the least recently classified), classifies them in one batch, smooths each
track's probabilities and publishes the result, which the cameras' frames pick up as they pass.
Tracks are keyed by ``(source, track)``, so crops from several cameras share batches, as in
DeepStream's secondary inference.

>>> shared = LiveClassifier(EmotionClassifier(), Smoother("ema"))     # doctest: +SKIP
>>> pipelines = [Pipeline(url, clf, det, live_classifier=shared) for url in urls]   # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from fer_stream.frames import TrackKey
from fer_stream.stream.schedule import LiveScheduler
from fer_stream.stream.smooth import Smoother

Key = TrackKey
_POLL = 0.1


class LiveClassifier:
    """Classifies live tracks beside the frames; see the module docstring."""

    def __init__(self, classifier: Any, smoother: Smoother | None = None, *, max_hz: float = 5.0) -> None:
        self.classifier = classifier
        self.smoother = smoother or Smoother("ema")
        self.scheduler = LiveScheduler(max_hz)
        self._lock = threading.Lock()
        self._preds: dict[Hashable, tuple[Any, int]] = {}
        self.batch_sizes: Counter[int] = Counter()
        self.mixed_batches = 0  # batches holding crops of more than one source
        self.classified = 0
        self.on_batch: Callable[[int, float], None] | None = None
        self._listeners: dict[str, Callable[[int], None]] = {}

    def listen(self, source: str, on_classified: Callable[[int], None]) -> None:
        """Call ``on_classified(track)`` for each classification of a ``source``'s track."""
        self._listeners[source] = on_classified

    def offer(self, key: Key, crop: Any, captured: float) -> None:
        self.scheduler.offer(key, crop, captured)

    def retire(self, keys: list[Key]) -> None:
        with self._lock:
            self.scheduler.retire(keys)
            self.smoother.forget(keys)
            for k in keys:
                self._preds.pop(k, None)

    def current(self, key: Key) -> tuple[Any, int]:
        """The track's latest smoothed prediction (or ``None``) and how many updates it has had."""
        with self._lock:
            return self._preds.get(key, (None, 0))

    def wake(self) -> None:
        self.scheduler.wake()

    def run(self, stop: threading.Event, done: threading.Event | None = None) -> None:
        """Classify until ``stop`` (or ``done``: the frames have ended) is set."""
        import time

        clf = self.classifier
        while not stop.is_set() and not (done is not None and done.is_set()):
            batch = self.scheduler.take(clf.max_batch, timeout=_POLL)
            if not batch:
                continue
            started = time.monotonic()
            probs = clf.forward(clf.preprocess([crop for _, crop, _ in batch]))
            keys = [k for k, _, _ in batch]
            self.batch_sizes[len(keys)] += 1
            self.classified += len(keys)
            if len({k.source for k in keys}) > 1:
                self.mixed_batches += 1
            if self.on_batch is not None:
                self.on_batch(len(keys), time.monotonic() - started)
            with self._lock:
                alive = [k in self.scheduler for k in keys]  # a track may end during the forward pass
                rows = [self.smoother.update(k, row) for k, row, a in zip(keys, probs, alive) if a]
                preds = iter(clf.postprocess(np.stack(rows)) if rows else [])
                for k, a in zip(keys, alive):
                    if a:
                        self._preds[k] = (next(preds), self._preds.get(k, (None, 0))[1] + 1)
            for k in keys:  # counted even if the track ended meanwhile: the work was done
                listener = self._listeners.get(k.source)
                if listener is not None:
                    listener(k.track)
