"""The two ways a pipeline classifies, each an object chosen once: :class:`ExactMode` and :class:`LiveMode`.

A mode owns what differs between files and cameras (the pattern of roboflow/inference's buffer
filling and consumption strategies): the frame buffer the read stage fills, what the detect stage
hands on, the classify stage and its counts. The :class:`~fer_stream.stream.pipeline.Pipeline`
runs the stages and calls its mode (:class:`Mode`); it never asks which mode it has.

* :class:`ExactMode` (files): a bounded frame queue (decoding waits, no frame is lost); the detect
  stage preprocesses each frame's due crops (:class:`~fer_stream.stream.schedule.EveryN`) and hands
  the frame on as :class:`~fer_stream.stream.batcher.Pending`; the classify stage batches crops
  across frames (:class:`~fer_stream.stream.batcher.ExactBatcher`) and releases frames in order.
* :class:`LiveMode` (cameras, ``--live``): a one-frame slot (the newest frame replaces an unread
  one, counted as dropped); the detect stage offers each track's crop to a
  :class:`~fer_stream.stream.live.LiveClassifier` (its own, or one shared by several cameras) and
  hands the frame straight to the overlay, each face labelled with its track's latest result.

>>> mode = pick_mode(source.live, clf, classify_every=5)        # doctest: +SKIP
>>> Pipeline(source, det, mode)                                  # doctest: +SKIP
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fer_stream.frames import Face, Frame, FrameResult, TrackKey
from fer_stream.model.contract import Classifier
from fer_stream.stream.batcher import ExactBatcher, Pending
from fer_stream.stream.buffers import END, End, FrameBuffer, LatestSlot
from fer_stream.stream.live import LiveClassifier
from fer_stream.stream.schedule import EveryN
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.stats import TrackInfo, TrackLog
from fer_stream.stream.watch import Watch


@dataclass(frozen=True)
class Wiring:
    """What a mode is given of the pipeline it runs in (once, by :meth:`Mode.attach`)."""

    source_id: str
    track_log: TrackLog
    watch: Watch
    stop: threading.Event  # the pipeline is stopping
    detect_done: threading.Event  # the detect stage has finished
    to_classify: Callable[[Pending | End], bool]  # into the face queue; False once stopping
    from_detect: Callable[[float | None], Pending | End | None]  # END once stopping, None when the wait passes
    from_detect_nowait: Callable[[], Pending | End]  # raises queue.Empty
    to_overlay: Callable[[FrameResult | End], bool]  # into the result queue; False once stopping


@dataclass(frozen=True)
class ModeCounts:
    """A mode's part of :class:`~fer_stream.stream.stats.PipelineStats`."""

    dropped: int
    classified: int
    batch_sizes: dict[int, int]


class Mode(Protocol):
    """What the pipeline calls of its mode; see the module docstring."""

    @property
    def classifier(self) -> Classifier: ...

    def attach(self, wiring: Wiring) -> None:
        """Called once, when the pipeline is built."""
        ...

    def frame_buffer(self, length: int) -> FrameBuffer:
        """The buffer between reading and detection (``length``: the fitted frame queue length)."""
        ...

    def hand_on(self, frame: Frame, faces: list[Face], ended: list[int]) -> bool:
        """Pass a detected and tracked frame on; False once the pipeline is stopping."""
        ...

    def finish(self) -> None:
        """Detection has ended with the input: the end marker down this mode's path."""
        ...

    def classify(self) -> None:
        """The classify stage, on its own thread, until the input ends or the pipeline stops."""
        ...

    def wake(self) -> None:
        """Wake a classify stage that is waiting (the pipeline is stopping or detection ended)."""
        ...

    def counts(self, tracks: list[TrackInfo]) -> ModeCounts: ...


def _crop(face: Face) -> np.ndarray:
    assert face.crop is not None  # the detectors crop every face they find
    return face.crop


class _Attached:
    """Holds the :class:`Wiring` of the one pipeline a mode serves."""

    _wiring: Wiring | None = None

    def attach(self, wiring: Wiring) -> None:
        if self._wiring is not None:
            raise ValueError("a mode serves one pipeline; make one per pipeline")
        self._wiring = wiring

    @property
    def wiring(self) -> Wiring:
        if self._wiring is None:
            raise RuntimeError("the mode is not attached to a pipeline")
        return self._wiring


class ExactMode(_Attached):
    """Files: every due crop classified, batched across frames, frames released in order.

    ``classify_every`` classifies each track on its first frame and every n-th after (1: every
    face of every frame); a partial batch waits at most ``batch_wait`` seconds for more crops.
    """

    def __init__(
        self, classifier: Classifier, smoother: Smoother | None = None, *, classify_every: int = 1, batch_wait: float = 0.05
    ) -> None:
        self._classifier = classifier
        self.smoother = smoother or Smoother("ema")
        self.every = EveryN(classify_every)
        self.batch_wait = batch_wait
        self.batcher: ExactBatcher | None = None  # built on attach: it counts into the pipeline's track log

    @property
    def classifier(self) -> Classifier:
        return self._classifier

    def attach(self, wiring: Wiring) -> None:
        super().attach(wiring)
        self.batcher = ExactBatcher(
            self._classifier, self.smoother, wiring.track_log, batch_wait=self.batch_wait, on_batch=wiring.watch.batch
        )

    def frame_buffer(self, length: int) -> FrameBuffer:
        frames: queue.Queue[Frame | End] = queue.Queue(length)
        return frames

    def hand_on(self, frame: Frame, faces: list[Face], ended: list[int]) -> bool:
        # Unusable faces (too small, blurry, unsure) are never classified.
        due = [i for i, face in enumerate(faces) if face.usable and self.every.due(face.track_id)]
        self.every.forget(ended)
        # Preprocess here, overlapping the classifier's forward pass on the previous batch.
        pixels = self._classifier.preprocess([_crop(faces[i]) for i in due]) if due else None
        return self.wiring.to_classify(Pending(frame, faces, due, pixels, ended))

    def finish(self) -> None:
        self.wiring.to_classify(END)

    def classify(self) -> None:
        w = self.wiring
        assert self.batcher is not None  # built with the wiring
        self.batcher.run(w.from_detect, w.from_detect_nowait, w.to_overlay, w.stop)
        if not w.stop.is_set():
            w.to_overlay(END)

    def wake(self) -> None:
        pass  # the classify stage polls its queue

    def counts(self, tracks: list[TrackInfo]) -> ModeCounts:
        b = self.batcher
        return ModeCounts(dropped=0, classified=b.classified if b else 0, batch_sizes=dict(b.batch_sizes) if b else {})


class LiveMode(_Attached):
    """Cameras: frames never wait for the classifier; each face shows its track's latest result.

    ``live`` classifies the newest crop of each track beside the frames. Unless ``shared``, this
    pipeline runs it on its classify stage; a ``shared`` one (several cameras) runs on the
    caller's thread, and this pipeline's classify stage only waits for its detection to end.
    """

    def __init__(self, live: LiveClassifier, *, shared: bool = False) -> None:
        self.live = live
        self.shared = shared
        self._slot: LatestSlot[Frame | End] | None = None
        self._shown: dict[int, int] = {}  # the prediction version each track last showed

    @property
    def classifier(self) -> Classifier:
        return self.live.classifier

    def attach(self, wiring: Wiring) -> None:
        super().attach(wiring)
        if not self.shared:
            self.live.on_batch = wiring.watch.batch
        track_log = wiring.track_log
        self.live.listen(wiring.source_id, lambda track: track_log.classified(track))

    def frame_buffer(self, length: int) -> FrameBuffer:
        self._slot = LatestSlot()
        return self._slot

    def hand_on(self, frame: Frame, faces: list[Face], ended: list[int]) -> bool:
        return self.wiring.to_overlay(FrameResult(frame, self._label(frame, faces, ended)))

    def _label(self, frame: Frame, faces: list[Face], ended: list[int]) -> tuple[Face, ...]:
        """Offer each face's crop to the live classifier; label it with its track's latest result."""
        live, sid, shown = self.live, self.wiring.source_id, self._shown
        for face in faces:
            if face.usable:
                live.offer(TrackKey(sid, face.track_id), _crop(face), frame.captured)
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

    def finish(self) -> None:
        self.wiring.to_overlay(END)

    def classify(self) -> None:
        w = self.wiring
        if not self.shared:
            self.live.run(w.stop, w.detect_done)
        else:  # a shared classifier runs on its own thread; wait here so this stage ends with the others
            w.detect_done.wait()

    def wake(self) -> None:
        self.live.wake()

    def counts(self, tracks: list[TrackInfo]) -> ModeCounts:
        # Batches come from the (possibly shared) live classifier; classified counts this source's.
        return ModeCounts(
            dropped=self._slot.dropped if self._slot is not None else 0,
            classified=sum(t.classified for t in tracks),
            batch_sizes=dict(self.live.batch_sizes),
        )


def pick_mode(
    live: bool,
    classifier: Classifier,
    *,
    smoother: Smoother | None = None,
    classify_every: int = 1,
    batch_wait: float = 0.05,
    live_max_hz: float = 5.0,
    shared: LiveClassifier | None = None,
) -> Mode:
    """The mode for a source (``live``: its ``live``): exact with ``classify_every`` and ``batch_wait``,
    or live at most ``live_max_hz`` per track, on ``shared`` when given (several cameras)."""
    if not live:
        return ExactMode(classifier, smoother, classify_every=classify_every, batch_wait=batch_wait)
    if shared is not None:
        return LiveMode(shared, shared=True)
    return LiveMode(LiveClassifier(classifier, smoother or Smoother("ema"), max_hz=live_max_hz))
