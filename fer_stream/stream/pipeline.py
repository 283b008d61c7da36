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

What differs between the two is the pipeline's *mode*, chosen once (:mod:`fer_stream.stream.modes`):
:meth:`Pipeline.for_source` picks it from the source, as ``fer-stream`` does from the settings
(:func:`fer_stream.build.make_pipeline`).

>>> from fer_stream import EmotionClassifier, FaceDetector, Pipeline
>>> clf = EmotionClassifier(device="auto")                                             # doctest: +SKIP
>>> with FaceDetector() as det, Pipeline.for_source("talk.mp4", clf, det) as results:  # doctest: +SKIP
...     for r in results:
...         print(r.frame.index, [(f.box, f.prediction.label) for f in r.faces])

With the mode spelled out (here: exact, every 5th frame of each track classified):

>>> Pipeline("talk.mp4", det, ExactMode(clf, classify_every=5), overlay=Overlay())   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from fer_stream.errors import FerStreamError, PipelineError
from fer_stream.frames import Box, FrameResult
from fer_stream.io.privacy import OFF
from fer_stream.io.sources import Source, open_source
from fer_stream.model.contract import Classifier
from fer_stream.model.detector import Detector
from fer_stream.stream.batcher import Pending
from fer_stream.stream.buffers import END, Buffer, End, FrameBuffer, LatestSlot
from fer_stream.stream.modes import ExactMode, LiveMode, Mode, Wiring, pick_mode
from fer_stream.stream.overlay import Overlay
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.stats import LatencyStats, PipelineStats, TrackLog
from fer_stream.stream.track import IoUTracker
from fer_stream.stream.watch import NULL_WATCH, Watch

__all__ = ["END", "ExactMode", "LatestSlot", "LiveMode", "Pipeline", "QueueSizes", "fit_queues"]

T = TypeVar("T")

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


@dataclass(frozen=True)
class QueueSizes:
    """The pipeline's queue lengths: frames read, frames detected (with their faces), results;
    ``max_mb`` (0: no limit) shortens them to hold at most that much of frames (:func:`fit_queues`)."""

    frames: int = 8
    faces: int = 16
    results: int = 8
    max_mb: int = 0

    @property
    def lengths(self) -> tuple[int, int, int]:
        return (self.frames, self.faces, self.results)


class Pipeline:
    """Runs a source through detection, tracking, classification and overlay on background threads.

    Use as a context manager: entering warms the classifier up (one full batch) and starts the
    threads, and gives an iterator of :class:`FrameResult` in frame order; leaving stops and joins
    every thread. An error in any stage stops the whole pipeline and is raised from the iterator.

    ``mode`` classifies (:class:`~fer_stream.stream.modes.ExactMode` or
    :class:`~fer_stream.stream.modes.LiveMode`; :meth:`for_source` picks one); ``tracker``
    defaults to an :class:`~fer_stream.stream.track.IoUTracker`; ``overlay`` draws the results
    onto a copy of each frame (``None``: no drawing); ``watch`` is told of each frame out and batch
    (the run's metrics); ``max_frames`` stops reading after that many frames. The detector is
    reset when the pipeline starts (a detector that follows faces forgets those of an earlier video);
    the boxes it rejects as no face are counted (``stats.rejected``) and, when the overlay draws
    them, handed to it.
    """

    def __init__(
        self,
        source: Source | str | int,
        detector: Detector,
        mode: Mode,
        *,
        tracker: IoUTracker | None = None,
        overlay: Overlay | None = None,
        queues: QueueSizes = QueueSizes(),
        watch: Watch = NULL_WATCH,
        max_frames: int | None = None,
        source_id: str = "cam",
        warmup: bool = True,
    ) -> None:
        self._owns_source = not isinstance(source, Source)
        self.source = open_source(source) if not isinstance(source, Source) else source
        self.detector = detector
        self.mode = mode
        self.max_frames = max_frames or None
        self.overlay = overlay
        self.privacy = overlay.privacy if overlay is not None else OFF  # what the pictures may show
        self.warmup = warmup
        self.tracker = tracker or IoUTracker()
        self.source_id = source_id
        self.watch = watch
        # Queue lengths fit queues.max_mb for the size of each frame as it comes (a stream may grow mid-way).
        self.queues = queues
        self._fitted_bytes = self.source.width * self.source.height * 3
        frame_queue, face_queue, result_queue = fit_queues(queues.lengths, self._fitted_bytes, queues.max_mb)
        self._frames: FrameBuffer = mode.frame_buffer(frame_queue)
        self._detected: queue.Queue[Pending | End] = queue.Queue(face_queue)
        self._classified: queue.Queue[FrameResult | End] = queue.Queue(result_queue)
        self._out: queue.Queue[FrameResult | End] = queue.Queue(result_queue)
        self._stop = threading.Event()
        self._detect_done = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._threads: list[threading.Thread] = []
        self._frames_in = 0
        self._faces = 0
        self._rejected = 0
        self._rejected_boxes: dict[int, tuple[Box, ...]] = {}  # frame index -> boxes, for the overlay
        self._source_ended = False
        self._started = 0.0
        self.latency = LatencyStats()
        self.track_log = TrackLog()
        mode.attach(
            Wiring(
                source_id=source_id,
                track_log=self.track_log,
                watch=watch,
                stop=self._stop,
                detect_done=self._detect_done,
                to_classify=lambda item: self._put(self._detected, item),
                from_detect=lambda timeout: self._get(self._detected, timeout),
                from_detect_nowait=self._detected.get_nowait,
                to_overlay=lambda result: self._put(self._classified, result),
            )
        )

    @classmethod
    def for_source(
        cls,
        source: Source | str | int,
        classifier: Classifier,
        detector: Detector,
        *,
        annotate: bool = True,
        smoother: Smoother | None = None,
        classify_every: int = 1,
        batch_wait: float = 0.05,
        live_max_hz: float = 5.0,
        max_frames: int | None = None,
        warmup: bool = True,
        tracker: IoUTracker | None = None,
        queues: QueueSizes = QueueSizes(),
    ) -> Pipeline:
        """A pipeline in the mode the source asks for (exact for files, live for cameras and
        ``live`` files), drawing with the default :class:`Overlay` unless ``annotate`` is false.

        ``smoother`` defaults to an EMA :class:`~fer_stream.stream.smooth.Smoother` (``Smoother("off")``:
        raw per-frame results); ``classify_every`` and ``batch_wait`` apply to exact mode,
        ``live_max_hz`` to live mode.
        """
        src = open_source(source) if not isinstance(source, Source) else source
        try:
            mode = pick_mode(
                bool(src.live), classifier, smoother=smoother, classify_every=classify_every, batch_wait=batch_wait, live_max_hz=live_max_hz
            )
            overlay = Overlay() if annotate else None
            pipeline = cls(src, detector, mode, tracker=tracker, overlay=overlay, queues=queues, max_frames=max_frames, warmup=warmup)
        except BaseException:
            if src is not source:
                src.close()
            raise
        pipeline._owns_source = src is not source  # opened here: closed with the pipeline
        return pipeline

    @property
    def classifier(self) -> Classifier:
        return self.mode.classifier

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Iterator[FrameResult]:
        try:
            if self.warmup:
                self.mode.classifier.warmup()
            self.detector.reset()
            self._started = time.monotonic()
            stages = (
                ("read", self._read),
                ("detect", self._detect),
                ("classify", self.mode.classify),
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
        self.mode.wake()
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
        counts = self.mode.counts(tracks)
        sizes = counts.batch_sizes
        return PipelineStats(
            frames_in=self._frames_in,
            dropped=counts.dropped,
            faces=self._faces,
            rejected=self._rejected,
            classified=counts.classified,
            batches=sum(sizes.values()),
            batch_sizes=dict(sorted(sizes.items())),
            elapsed_s=time.monotonic() - self._started if self._started else 0.0,
            source_ended=self._source_ended,
            latency_s=self.latency.percentiles(),
            tracks=tracks,
        )

    def queue_lengths(self) -> dict[str, int]:
        """Most items each queue holds now (the frame slot of a live source holds one)."""
        return {"frames": self._frames.maxsize, "faces": self._detected.maxsize, "results": self._classified.maxsize}

    def queue_depths(self) -> dict[str, int]:
        """Items waiting in each queue now (for metrics)."""
        return {"frames": self._frames.qsize(), "faces": self._detected.qsize(), "results": self._classified.qsize() + self._out.qsize()}

    # -- plumbing ------------------------------------------------------------------------------

    def _guard(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as e:  # any stage failing stops them all
            if self._error is None:
                self._error = (name, e)
            self.stop()

    def _put(self, q: Buffer[T], item: T) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: Buffer[T], timeout: float | None = None) -> T | End | None:
        """The next item; ``END`` once stopping; ``None`` if ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
            if wait <= 0:
                return None
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return END

    def _next(self, q: Buffer[T]) -> T | End:
        """The next item, however long it takes; ``END`` once stopping."""
        item = self._get(q)
        assert item is not None  # None only when a timeout passes
        return item

    def _results(self) -> Iterator[FrameResult]:
        while True:
            item = self._next(self._out)
            if item is END:
                break
            yield item
            # Measured when the caller asks for the next result, so its output work counts too.
            latency = time.monotonic() - item.frame.captured
            self.latency.add(latency)
            self.watch.frame_out(self.source_id, item.faces, latency)
        if self._error is not None:
            stage, e = self._error
            if isinstance(e, FerStreamError):
                raise e
            raise PipelineError(f"{stage} stage failed: {type(e).__name__}: {e}") from e

    # -- stages --------------------------------------------------------------------------------

    def _fit_queues(self, frame_bytes: int) -> None:
        """Lengthen or shorten the queues for frames of ``frame_bytes``; frames already queued stay."""
        self._fitted_bytes = frame_bytes
        lengths = fit_queues(self.queues.lengths, frame_bytes, self.queues.max_mb)
        queues = [(self._frames, lengths[0]), (self._detected, lengths[1]), (self._classified, lengths[2]), (self._out, lengths[2])]
        for q, n in queues:
            if isinstance(q, queue.Queue) and q.maxsize != n:
                with q.mutex:  # a shorter queue takes no new item until it has drained below its length
                    q.maxsize = n
                    q.not_full.notify_all()

    def _read(self) -> None:
        max_mb = self.queues.max_mb
        for frame in self.source.frames():
            if max_mb and frame.image.nbytes != self._fitted_bytes:
                self._fit_queues(frame.image.nbytes)
            if self._stop.is_set() or not self._put(self._frames, frame):
                return
            self._frames_in += 1
            if self.max_frames and self._frames_in >= self.max_frames:
                break
        else:
            self._source_ended = True
        self._put(self._frames, END)

    def _detect(self) -> None:
        mode = self.mode
        # Rejected boxes reach the overlay stage when drawn, or when privacy hides them (a profile face is still a face).
        draw_rejected = (self.overlay is not None and self.overlay.draw_rejected) or self.privacy.active
        try:
            while (frame := self._next(self._frames)) is not END:
                found = self.detector.detect(frame.image)
                if rejected := self.detector.rejected:
                    self._rejected += len(rejected)
                    self.watch.rejected(self.source_id, len(rejected))
                    if draw_rejected:  # every detected frame reaches the overlay, which takes its boxes back out
                        self._rejected_boxes[frame.index] = rejected
                ids = self.tracker.update([f.box for f in found])
                faces = [f.with_track(t) for f, t in zip(found, ids)]
                ended = self.tracker.ended
                self._faces += len(faces)
                for t in ids:
                    self.track_log.seen(t, frame.time)
                if not mode.hand_on(frame, faces, ended):
                    return
        finally:
            self._detect_done.set()
            mode.wake()
        mode.finish()

    def _annotate(self) -> None:
        while (result := self._next(self._classified)) is not END:
            rejected = self._rejected_boxes.pop(result.frame.index, ())
            # Faces hidden before anything draws or writes a picture (the classifier has seen them).
            result = self.privacy.apply(dataclasses.replace(result, rejected=rejected) if rejected else result)
            if self.overlay is not None:
                picture = self.overlay.draw(result.frame.image, result.faces, result.rejected)
                result = FrameResult(result.frame, result.faces, picture, result.rejected)
            if not self._put(self._out, result):
                return
        self._put(self._out, END)
