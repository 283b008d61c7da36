"""The streaming pipeline: threads joined by bounded queues.

    read/decode -> detect + track -> schedule, batch + classify, smooth -> overlay -> (caller: sinks)

Files (exact mode) are processed whole: every queue blocks when full, so decoding waits for
classification and no frame is dropped. Each track is classified on its first frame and every
``classify_every``-th frame after (1 = every face of every frame); the classifier stage pools the
crops of consecutive frames into batches of up to ``max_batch`` (waiting at most ``batch_wait``
seconds for a batch to fill) and releases frames in order, filling frames in between with their
track's latest result (:mod:`fer_stream.stream.batcher`).

Live sources (cameras, network streams, files played with ``live=True``) feed a one-frame slot
instead, where the newest frame replaces an unread one (replaced frames count as dropped). Frames
go from detection straight to the overlay with each track's latest result, never waiting for the
classifier, which runs beside them on each track's newest crop (see :mod:`fer_stream.stream.schedule`).

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
from collections.abc import Iterator
from typing import Any

from fer_stream.errors import FerStreamError, PipelineError
from fer_stream.frames import Face, Frame, FrameResult, TrackKey
from fer_stream.io.sources import Source, open_source
from fer_stream.model.classifier import EmotionClassifier
from fer_stream.model.detector import FaceDetector
from fer_stream.stream.batcher import END as _END
from fer_stream.stream.batcher import ExactBatcher, Pending
from fer_stream.stream.live import LiveClassifier
from fer_stream.stream.overlay import Overlay
from fer_stream.stream.schedule import EveryN
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.stats import LatencyStats, PipelineStats, TrackLog
from fer_stream.stream.track import IoUTracker

_POLL = 0.1  # seconds between checks of the stop flag while blocked on a queue


def fit_queues(lengths: tuple[int, int, int], frame_bytes: int, max_mb: int) -> tuple[int, int, int]:
    """The frame, face and result queue ``lengths``, shortened so that all of them together hold
    at most ``max_mb`` of frames of ``frame_bytes`` (results hold two pictures each: the frame and
    its annotated copy; the output queue is as long as the result queue). Each keeps at least 2 so
    the stages still overlap; ``max_mb`` 0 or an unknown size (0 bytes): the lengths as they are.

    >>> fit_queues((8, 16, 8), 1920 * 1080 * 3, 1024), fit_queues((8, 16, 8), 7680 * 4320 * 3, 1024)
    ((8, 16, 8), (2, 2, 2))
    """
    if frame_bytes <= 0 or max_mb <= 0:
        return lengths
    frames, faces, results = lengths
    budget = max_mb * (1 << 20) // frame_bytes  # frames' worth of memory
    wanted = frames + faces + 2 * results * 2  # results and the output queue, two pictures each
    if wanted <= budget:
        return lengths
    scale = budget / wanted
    return (max(2, int(frames * scale)), max(2, int(faces * scale)), max(2, int(results * scale)))


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


class Pipeline:
    """Runs a source through detection, tracking, classification and overlay on background threads.

    Use as a context manager: entering warms the classifier up (one full batch) and starts the
    threads, and gives an iterator of :class:`FrameResult` in frame order; leaving stops and joins
    every thread. An error in any stage stops the whole pipeline and is raised from the iterator.

    ``tracker`` and ``smoother`` default to :class:`~fer_stream.stream.track.IoUTracker` and an EMA
    :class:`~fer_stream.stream.smooth.Smoother`; pass ``Smoother("off")`` for raw per-frame results.
    ``classify_every`` applies to exact mode, ``live_max_hz`` to live mode; ``live`` defaults to
    the source's own ``live``.
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
        tracker: IoUTracker | None = None,
        smoother: Smoother | None = None,
        classify_every: int = 1,
        live_max_hz: float = 5.0,
        live_classifier: LiveClassifier | None = None,
        source_id: str = "cam",
        metrics: Any = None,
        frame_queue: int = 8,
        face_queue: int = 16,
        result_queue: int = 8,
        queue_mb: int = 0,
    ) -> None:
        self._owns_source = not isinstance(source, Source)
        self.source = open_source(source) if not isinstance(source, Source) else source
        self.classifier = classifier
        self.detector = detector
        self.max_frames = max_frames or None
        self.batch_wait = batch_wait
        self.overlay = (overlay or Overlay()) if annotate else None
        self.warmup = warmup
        self.live = bool(self.source.live)
        self.tracker = tracker or IoUTracker()
        self.smoother = smoother or Smoother("ema")
        self.every = EveryN(classify_every)
        self.source_id = source_id
        self.metrics = metrics
        # Live mode: a classifier thread beside the frames, this pipeline's own or shared by several.
        self._owns_live = live_classifier is None
        self.live_classifier = live_classifier or LiveClassifier(classifier, self.smoother, max_hz=live_max_hz)
        if self._owns_live and metrics is not None:
            self.live_classifier.on_batch = metrics.batch
        # Queue lengths fit queue_mb for the size of each frame as it comes (a stream may grow mid-way).
        self._lengths, self.queue_mb = (frame_queue, face_queue, result_queue), queue_mb
        self._fitted_bytes = self.source.width * self.source.height * 3
        frame_queue, face_queue, result_queue = fit_queues(self._lengths, self._fitted_bytes, queue_mb)
        self._frames: queue.Queue[Any] | LatestSlot = LatestSlot() if self.live else queue.Queue(frame_queue)
        self._detected: queue.Queue[Any] = queue.Queue(face_queue)
        self._classified: queue.Queue[Any] = queue.Queue(result_queue)
        self._out: queue.Queue[Any] = queue.Queue(result_queue)
        self._stop = threading.Event()
        self._detect_done = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._threads: list[threading.Thread] = []
        self._frames_in = 0
        self._faces = 0
        self._source_ended = False
        self._started = 0.0
        self.latency = LatencyStats()
        self.track_log = TrackLog()
        self.batcher = ExactBatcher(
            classifier, self.smoother, self.track_log, batch_wait=batch_wait, on_batch=metrics.batch if metrics is not None else None
        )
        if self.live:
            self.live_classifier.listen(source_id, lambda track: self.track_log.classified(track))

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Iterator[FrameResult]:
        try:
            if self.warmup:
                self.classifier.warmup()
            self._started = time.monotonic()
            stages = (
                ("read", self._read),
                ("detect", self._detect),
                ("classify", self._classify_live if self.live else self._classify),
                ("overlay", self._annotate),
            )
            for name, target in stages:
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
        self.live_classifier.wake()
        self.source.interrupt()  # a reconnecting camera stops waiting between attempts

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join the threads, then close the source if the pipeline opened it."""
        self.stop()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        reader_alive = any(t.is_alive() and t.name == "fer-read" for t in self._threads)
        if self._owns_source and not reader_alive:  # never close a container under a blocked read
            self.source.close()

    @property
    def stats(self) -> PipelineStats:
        tracks = self.track_log.snapshot()
        # Live, batches come from the (possibly shared) live classifier; classified counts this source's.
        sizes = self.live_classifier.batch_sizes if self.live else self.batcher.batch_sizes
        return PipelineStats(
            frames_in=self._frames_in,
            dropped=self._frames.dropped if isinstance(self._frames, LatestSlot) else 0,
            faces=self._faces,
            classified=sum(t.classified for t in tracks) if self.live else self.batcher.classified,
            batches=sum(sizes.values()),
            batch_sizes=dict(sorted(sizes.items())),
            elapsed_s=time.monotonic() - self._started if self._started else 0.0,
            source_ended=self._source_ended,
            latency_s=self.latency.percentiles(),
            tracks=tracks,
        )

    def queue_lengths(self) -> dict[str, int]:
        """Most items each queue holds now (the frame slot of a live source holds one)."""
        frames = 1 if isinstance(self._frames, LatestSlot) else self._frames.maxsize
        return {"frames": frames, "faces": self._detected.maxsize, "results": self._classified.maxsize}

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in each queue now (for metrics)."""
        frames = int(getattr(self._frames, "_full", 0)) if isinstance(self._frames, LatestSlot) else self._frames.qsize()
        return {"frames": frames, "faces": self._detected.qsize(), "results": self._classified.qsize() + self._out.qsize()}

    # -- plumbing ------------------------------------------------------------------------------

    def _guard(self, name: str, target: Any) -> None:
        try:
            target()
        except BaseException as e:  # any stage failing stops them all
            if self._error is None:
                self._error = (name, e)
            self.stop()

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
            # Measured when the caller asks for the next result, so its output work counts too.
            latency = time.monotonic() - item.frame.captured
            self.latency.add(latency)
            if self.metrics is not None:
                self.metrics.frame_out(self.source_id, item.faces, latency)
        if self._error is not None:
            stage, e = self._error
            if isinstance(e, FerStreamError):
                raise e
            raise PipelineError(f"{stage} stage failed: {type(e).__name__}: {e}") from e

    # -- stages --------------------------------------------------------------------------------

    def _fit_queues(self, frame_bytes: int) -> None:
        """Lengthen or shorten the queues for frames of ``frame_bytes``; frames already queued stay."""
        self._fitted_bytes = frame_bytes
        lengths = fit_queues(self._lengths, frame_bytes, self.queue_mb)
        queues = [(self._frames, lengths[0]), (self._detected, lengths[1]), (self._classified, lengths[2]), (self._out, lengths[2])]
        for q, n in queues:
            if isinstance(q, queue.Queue) and q.maxsize != n:
                with q.mutex:  # a shorter queue takes no new item until it has drained below its length
                    q.maxsize = n
                    q.not_full.notify_all()

    def _read(self) -> None:
        for frame in self.source.frames():
            if self.queue_mb and frame.image.nbytes != self._fitted_bytes:
                self._fit_queues(frame.image.nbytes)
            if self._stop.is_set() or not self._put(self._frames, frame):
                return
            self._frames_in += 1
            if self.max_frames and self._frames_in >= self.max_frames:
                break
        else:
            self._source_ended = True
        self._put(self._frames, _END)

    def _detect(self) -> None:
        shown: dict[int, int] = {}  # live: the prediction version each track last showed
        try:
            while (frame := self._get(self._frames)) is not _END:
                found = self.detector.detect(frame.image)
                ids = self.tracker.update([f.box for f in found])
                faces = [f.with_track(t) for f, t in zip(found, ids)]
                ended = self.tracker.ended
                self._faces += len(faces)
                for t in ids:
                    self.track_log.seen(t, frame.time)
                if self.live:
                    if not self._put(self._classified, FrameResult(frame, self._live_faces(frame, faces, ended, shown))):
                        return
                    continue
                # Unusable faces (too small, blurry, unsure) are never classified.
                due = [i for i, t in enumerate(ids) if faces[i].usable and self.every.due(t)]
                self.every.forget(ended)
                # Preprocess here, overlapping the classifier's forward pass on the previous batch.
                pixels = self.classifier.preprocess([faces[i].crop for i in due]) if due else None  # type: ignore[misc]  # detected faces have crops
                if not self._put(self._detected, Pending(frame, faces, due, pixels, ended)):
                    return
        finally:
            self._detect_done.set()
            self.live_classifier.wake()
        self._put(self._classified if self.live else self._detected, _END)

    def _live_faces(self, frame: Frame, faces: list[Face], ended: list[int], shown: dict[int, int]) -> tuple[Face, ...]:
        """Offer each face's crop to the live classifier; label it with its track's latest result."""
        live, sid = self.live_classifier, self.source_id
        for face in faces:
            if face.usable:
                live.offer(TrackKey(sid, face.track_id), face.crop, frame.captured)
        if ended:
            live.retire([TrackKey(sid, t) for t in ended])
            for t in ended:
                shown.pop(t, None)
        out = []
        for face in faces:
            if not face.usable:
                out.append(face)
                continue
            pred, version = live.current(TrackKey(sid, face.track_id))
            out.append(face.with_prediction(pred, fresh=shown.get(face.track_id) != version))
            shown[face.track_id] = version
        return tuple(out)

    def _classify_live(self) -> None:
        if self._owns_live:
            self.live_classifier.run(self._stop, self._detect_done)
        else:  # a shared classifier runs on its own thread; wait here so this stage ends with the others
            self._detect_done.wait()

    def _classify(self) -> None:
        self.batcher.run(
            lambda timeout: self._get(self._detected, timeout),
            self._detected.get_nowait,
            lambda result: self._put(self._classified, result),
            self._stop,
        )
        if not self._stop.is_set():
            self._put(self._classified, _END)

    def _annotate(self) -> None:
        while (result := self._get(self._classified)) is not _END:
            if self.overlay is not None:
                result = FrameResult(result.frame, result.faces, self.overlay.draw(result.frame.image, result.faces))
            if not self._put(self._out, result):
                return
        self._put(self._out, _END)
