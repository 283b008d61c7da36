"""The classifier of live mode, shared by every camera of a process.

One thread takes the newest crop of each track from a :class:`~fer_stream.stream.schedule.LiveScheduler`
(new tracks first, then the least recently classified), classifies them in one batch, smooths each
track's probabilities and publishes the result, which the cameras' frames pick up as they pass.
Tracks are keyed by ``(source, track)``, so crops from several cameras share batches, as in
DeepStream's secondary inference.

>>> shared = LiveClassifier(EmotionClassifier(), Smoother("ema"))     # doctest: +SKIP
>>> pipelines = [Pipeline(url, det, LiveMode(shared, shared=True), source_id=url) for url in urls]   # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from fer_stream.frames import Prediction, TrackKey
from fer_stream.model.batching import BatchLog
from fer_stream.model.contract import Classifier
from fer_stream.stream.schedule import LiveScheduler
from fer_stream.stream.smooth import Smoother

Key = TrackKey
_POLL = 0.1


class LiveClassifier:
    """Classifies live tracks beside the frames; see the module docstring."""

    def __init__(self, classifier: Classifier, smoother: Smoother | None = None, *, max_hz: float = 5.0) -> None:
        self.classifier = classifier
        self.smoother = smoother or Smoother("ema")
        self.scheduler: LiveScheduler[Key] = LiveScheduler(max_hz)
        self._lock = threading.Lock()
        self._preds: dict[Key, tuple[Prediction, int]] = {}
        self.log = BatchLog()  # seconds per batch include preprocessing: the crops come raw
        self._listeners: dict[str, Callable[[int], None]] = {}

    @property
    def batch_sizes(self) -> Counter[int]:
        return self.log.sizes

    @property
    def mixed_batches(self) -> int:
        """Batches holding crops of more than one source."""
        return self.log.mixed

    @property
    def classified(self) -> int:
        return self.log.rows

    @property
    def on_batch(self) -> Callable[[int, float], None] | None:
        """Told ``(faces, seconds)`` of each batch (the run's metrics)."""
        return self.log.on_batch

    @on_batch.setter
    def on_batch(self, callback: Callable[[int, float], None] | None) -> None:
        self.log.on_batch = callback

    def listen(self, source: str, on_classified: Callable[[int], None]) -> None:
        """Call ``on_classified(track)`` for each classification of a ``source``'s track."""
        self._listeners[source] = on_classified

    def offer(self, key: Key, crop: np.ndarray, captured: float) -> None:
        self.scheduler.offer(key, crop, captured)

    def retire(self, keys: list[Key]) -> None:
        with self._lock:
            self.scheduler.retire(keys)
            self.smoother.forget(keys)
            for k in keys:
                self._preds.pop(k, None)

    def current(self, key: Key) -> tuple[Prediction | None, int]:
        """The track's latest smoothed prediction (or ``None``) and how many updates it has had."""
        with self._lock:
            return self._preds.get(key, (None, 0))

    def wake(self) -> None:
        self.scheduler.wake()

    def run(self, stop: threading.Event, done: threading.Event | None = None) -> None:
        """Classify until ``stop`` (or ``done``: the frames have ended) is set."""
        clf = self.classifier
        while not stop.is_set() and not (done is not None and done.is_set()):
            batch = self.scheduler.take(clf.max_batch, timeout=_POLL)
            if not batch:
                continue
            started = time.monotonic()
            probs = clf.forward(clf.preprocess([crop for _, crop, _ in batch]))
            keys = [k for k, _, _ in batch]
            self.log.record(len(keys), time.monotonic() - started, len({k.source for k in keys}))
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
