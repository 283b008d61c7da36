"""The streaming pipeline: threads joined by bounded queues.

    read/decode -> detect -> batch + classify -> overlay -> (caller: sinks)

Files are processed whole: every queue blocks when full, so decoding waits for classification and
no frame is dropped. Live sources (cameras, network streams) feed a one-frame slot instead, where
the newest frame replaces an unread one, so latency stays low; replaced frames count as dropped.
The classifier stage pools crops from consecutive frames into batches of up to ``max_batch``
(waiting at most ``batch_wait`` seconds for a batch to fill) and releases frames in order.

>>> from fer_stream import EmotionClassifier, FaceDetector, Pipeline
>>> clf = EmotionClassifier(device="auto")                                  # doctest: +SKIP
>>> with FaceDetector() as det, Pipeline("talk.mp4", clf, det) as results:   # doctest: +SKIP
...     for r in results:
...         print(r.frame.index, [(f.box, f.prediction.label) for f in r.faces])
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from .classify import EmotionClassifier
from .detect import FaceDetector
from .errors import FerStreamError, PipelineError
from .frames import Face, Frame, FrameResult
from .overlay import Overlay
from .sources import Source, open_source

_END = object()  # end-of-stream marker that flows down the queues
_POLL = 0.1  # seconds between checks of the stop flag while blocked on a queue


class LatestSlot:
    """A one-item buffer for live sources: ``put`` never blocks and replaces an unread item."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.dropped = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


@dataclass(frozen=True)
class PipelineStats:
    """Counters of a run so far."""

    frames_in: int
    dropped: int
    faces: int
    batches: int
    batch_sizes: dict[int, int]
    elapsed_s: float
    source_ended: bool

    @property
    def mean_batch(self) -> float:
        n = sum(self.batch_sizes.values())
        return sum(k * v for k, v in self.batch_sizes.items()) / n if n else 0.0


@dataclass(eq=False)
class _Pending:
    """A frame inside the classifier stage, waiting for its faces' predictions."""

    frame: Frame
    faces: list[Face]
    pixels: Any  # the classifier's preprocessed input for each face, one row per face
    missing: int = field(init=False)

    def __post_init__(self) -> None:
        self.missing = len(self.faces)


class Pipeline:
    """Runs a source through detection, classification and overlay on background threads.

    Use as a context manager: entering warms the classifier up (one full batch) and starts the
    threads, and gives an iterator of :class:`FrameResult` in frame order; leaving stops and joins
    every thread. An error in any stage stops the whole pipeline and is raised from the iterator.
    """

    def __init__(
        self,
        source: Source | str | int,
        classifier: EmotionClassifier,
        detector: FaceDetector,
        *,
        max_frames: int | None = None,
        batch_wait: float = 0.05,
        overlay: Overlay | None = None,
        annotate: bool = True,
        warmup: bool = True,
        frame_queue: int = 8,
        face_queue: int = 16,
        result_queue: int = 8,
    ) -> None:
        self._owns_source = not isinstance(source, Source)
        self.source = open_source(source) if not isinstance(source, Source) else source
        self.classifier = classifier
        self.detector = detector
        self.max_frames = max_frames or None
        self.batch_wait = batch_wait
        self.overlay = (overlay or Overlay()) if annotate else None
        self.warmup = warmup
        self._frames: queue.Queue[Any] | LatestSlot = LatestSlot() if self.source.live else queue.Queue(frame_queue)
        self._detected: queue.Queue[Any] = queue.Queue(face_queue)
        self._classified: queue.Queue[Any] = queue.Queue(result_queue)
        self._out: queue.Queue[Any] = queue.Queue(result_queue)
        self._stop = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._threads: list[threading.Thread] = []
        self._frames_in = 0
        self._faces = 0
        self._batch_sizes: Counter[int] = Counter()
        self._source_ended = False
        self._started = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Iterator[FrameResult]:
        try:
            if self.warmup:
                self.classifier.warmup()
            self._started = time.monotonic()
            for name, target in (
                ("read", self._read),
                ("detect", self._detect),
                ("classify", self._classify),
                ("overlay", self._annotate),
            ):
                t = threading.Thread(target=self._guard, args=(name, target), name=f"fer-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        except BaseException:
            self.close()
            raise
        return self._results()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        """Ask every stage to finish; the results iterator ends soon after."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join the threads, then close the source if the pipeline opened it."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        reader_alive = any(t.is_alive() and t.name == "fer-read" for t in self._threads)
        if self._owns_source and not reader_alive:  # never close a container under a blocked read
            self.source.close()

    @property
    def stats(self) -> PipelineStats:
        return PipelineStats(
            frames_in=self._frames_in,
            dropped=getattr(self._frames, "dropped", 0),
            faces=self._faces,
            batches=sum(self._batch_sizes.values()),
            batch_sizes=dict(sorted(self._batch_sizes.items())),
            elapsed_s=time.monotonic() - self._started if self._started else 0.0,
            source_ended=self._source_ended,
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _guard(self, name: str, target: Any) -> None:
        try:
            target()
        except BaseException as e:  # any stage failing stops them all
            if self._error is None:
                self._error = (name, e)
            self._stop.set()

    def _put(self, q: queue.Queue[Any] | LatestSlot, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue[Any] | LatestSlot, timeout: float | None = None) -> Any:
        """The next item; ``_END`` once stopping; ``None`` if ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return _END

    def _results(self) -> Iterator[FrameResult]:
        while True:
            item = self._get(self._out)
            if item is _END:
                break
            yield item
        if self._error is not None:
            stage, e = self._error
            if isinstance(e, FerStreamError):
                raise e
            raise PipelineError(f"{stage} stage failed: {type(e).__name__}: {e}") from e

    # -- stages --------------------------------------------------------------------------------

    def _read(self) -> None:
        for frame in self.source.frames():
            if self._stop.is_set() or not self._put(self._frames, frame):
                return
            self._frames_in += 1
            if self.max_frames and self._frames_in >= self.max_frames:
                break
        else:
            self._source_ended = True
        self._put(self._frames, _END)

    def _detect(self) -> None:
        while (frame := self._get(self._frames)) is not _END:
            faces = self.detector.detect(frame.image)
            self._faces += len(faces)
            # Preprocess here, overlapping the classifier's forward pass on the previous batch.
            pixels = self.classifier.preprocess([f.crop for f in faces]) if faces else None
            if not self._put(self._detected, (frame, faces, pixels)):
                return
        self._put(self._detected, _END)

    def _classify(self) -> None:
        clf = self.classifier
        pending: deque[_Pending] = deque()  # frames in arrival order
        waiting: deque[tuple[_Pending, int, float]] = deque()  # crops not yet classified, with arrival time
        ended = False

        def take(item: Any) -> None:
            nonlocal ended
            if item is _END:
                ended = True
                return
            frame, faces, pixels = item
            p = _Pending(frame, list(faces), pixels)
            pending.append(p)
            now = time.monotonic()
            waiting.extend((p, i, now) for i in range(len(faces)))

        while not self._stop.is_set():
            if not ended:
                timeout = None if not waiting else max(0.0, waiting[0][2] + self.batch_wait - time.monotonic())
                item = self._get(self._detected, timeout)
                if item is not None:
                    if item is _END and self._stop.is_set():
                        return
                    take(item)
                while not ended and len(waiting) < clf.max_batch:  # top the batch up without waiting
                    try:
                        take(self._detected.get_nowait())
                    except queue.Empty:
                        break
            full = len(waiting) >= clf.max_batch
            overdue = bool(waiting) and (ended or time.monotonic() >= waiting[0][2] + self.batch_wait)
            if full or overdue:
                batch = [waiting.popleft() for _ in range(min(clf.max_batch, len(waiting)))]
                pixels = torch.cat([p.pixels[i : i + 1] for p, i, _ in batch])
                predictions = clf.postprocess(clf.forward(pixels))
                self._batch_sizes[len(batch)] += 1
                for (p, i, _), pred in zip(batch, predictions):
                    p.faces[i] = p.faces[i].with_prediction(pred)
                    p.missing -= 1
            while pending and pending[0].missing == 0:
                p = pending.popleft()
                if not self._put(self._classified, FrameResult(p.frame, tuple(p.faces))):
                    return
            if ended and not pending:
                self._put(self._classified, _END)
                return

    def _annotate(self) -> None:
        while (result := self._get(self._classified)) is not _END:
            if self.overlay is not None:
                result = FrameResult(result.frame, result.faces, self.overlay.draw(result.frame.image, result.faces))
            if not self._put(self._out, result):
                return
        self._put(self._out, _END)
