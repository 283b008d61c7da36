"""Network cameras that come back: a source that reconnects with exponential backoff.

An IP camera reboots, a switch drops a link, a stream stalls: :class:`ReconnectingSource` wraps
the PyAV source of a URL and, when opening fails, reading fails, the stream ends or no frame
arrives for ``stall_timeout`` seconds, closes it and opens it again after a pause that doubles
from ``backoff_initial`` up to ``backoff_max``, for ever unless ``max_reconnects`` (failed attempts
in a row) or ``max_outage_s`` (how long one outage may last, checked after each attempt) is set. A
stream that ends or fails within ``min_stream_s`` of its first frame counts as a failed attempt
(a 1 s clip served over HTTP is not reopened hundreds of times a second); one that streamed
longer is reopened at once and the backoff starts afresh. Each outage is logged once when it
starts and once when it ends; past 3 lines of a kind a minute, the others are counted, not
printed (:class:`RepeatedLines`). Frame indices and times continue across outages (times are seconds
since the source started, by the wall clock), so the pipeline, its sinks and its metrics simply
see a gap. A frame over ``max_pixels`` ends the source (:class:`FrameTooLarge`), never retried.

>>> cam = ReconnectingSource("rtsp://10.0.0.7/stream1", source_id="door")   # doctest: +SKIP
>>> cam.health().state                                                    # doctest: +SKIP
'streaming'
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from fer_stream.errors import SourceError, counted
from fer_stream.frames import Frame
from fer_stream.health import SourceHealth, State
from fer_stream.io.sources import AVSource, FrameTooLarge, Source, redact, redact_text, transport_options

log = logging.getLogger("fer_stream")

CONNECTING: State = "connecting"
STREAMING: State = "streaming"
RECONNECTING: State = "reconnecting"
FAILED: State = "failed"
STOPPED: State = "stopped"

MIN_STREAM_S = 5.0  # a stream that ends sooner after its first frame is a failed attempt (backoff grows)


class Clock:
    """Monotonic time and interruptible waits; tests pass one that only pretends."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop`` is set; whether it was set."""
        return stop.wait(seconds)


class RepeatedLines:
    """Warnings of one kind (``key``) at most ``burst`` times per ``window`` seconds. The ones held
    back are counted: a line that ends ``(repeated N times)`` stands for itself and N more like it
    held back before it. :meth:`flush` shows the latest one held back, so none goes untold."""

    def __init__(self, logger: logging.Logger, clock: Clock, *, burst: int = 3, window: float = 60.0) -> None:
        self.logger, self.clock, self.burst, self.window = logger, clock, burst, window
        self._shown: dict[str, list[float]] = {}  # key -> times of the lines shown within the window
        self._held: dict[str, tuple[int, str]] = {}  # key -> (lines held back, the latest of them)

    def warning(self, key: str, message: str) -> None:
        now = self.clock.now()
        if len(self._shown) > 64:  # reasons that vary: forget the kinds not seen within the window
            self._shown = {k: v for k, v in self._shown.items() if k in self._held or (v and now - v[-1] < self.window)}
        shown = [t for t in self._shown.get(key, []) if now - t < self.window]
        self._shown[key] = shown
        if len(shown) >= self.burst:
            count = self._held.get(key, (0, ""))[0]
            self._held[key] = (count + 1, message)
            return
        self._show(message, self._held.pop(key, (0, ""))[0])
        shown.append(now)

    def flush(self) -> None:
        for key in list(self._held):
            count, message = self._held.pop(key)
            self._show(message, count - 1)

    def _show(self, message: str, repeats: int) -> None:
        if repeats:
            message += f" (repeated {repeats} time{'s' if repeats != 1 else ''})"
        self.logger.warning("%s", message)


class ReconnectingSource(Source):
    """A live network source that survives outages; see the module docstring."""

    live = True

    def __init__(
        self,
        url: str,
        *,
        source_id: str = "cam",
        transport: str = "tcp",
        open_timeout: float = 10.0,
        stall_timeout: float = 10.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        max_reconnects: int | None = None,
        opener: Callable[..., Source] | None = None,
        max_pixels: int = 0,
        min_stream_s: float = MIN_STREAM_S,
        clock: Clock | None = None,
        max_outage_s: float | None = None,
    ) -> None:
        self.max_outage_s = max_outage_s
        self.max_pixels = max_pixels
        self.min_stream_s = min_stream_s
        self._clock = clock or Clock()
        self._lines = RepeatedLines(log, self._clock)
        self.url = url  # opened, never shown
        self.name = redact(url)  # what health, logs and the summary show: no password
        self.source_id = source_id
        self.transport = transport
        self.open_timeout = open_timeout
        self.stall_timeout = stall_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_reconnects = max_reconnects
        self._opener = opener or AVSource
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._inner: Source | None = None
        self.state: State = CONNECTING
        self.reconnects = 0  # successful re-openings after an outage
        self.attempts = 0  # failed openings and lost streams, in all
        self._failures = 0  # the same since the last frame
        self.frames_read = 0
        self.last_error: str | None = None
        self.outage_since: float | None = None  # wall-clock time the current outage began
        self.outages = 0
        self.down_s = 0.0  # time spent in finished outages
        self._last_frame_at: float | None = None
        self.on_reconnect: Callable[[], None] | None = None

    # -- Source interface --------------------------------------------------------------------

    def frames(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self._lines.flush()

    def _frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        backoff = self.backoff_initial
        while not self._closed.is_set():
            if self._inner is None:
                try:
                    self._connect()
                except FrameTooLarge:
                    self.state = FAILED
                    raise
                except SourceError as e:
                    self._begin_outage(str(e))
                    if not self._may_retry():
                        return
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
            assert self._inner is not None
            first: float | None = None  # when this connection's first frame came (self._clock)
            lasted = False  # streamed for min_stream_s: the next outage is a new one, retried at once
            try:
                for frame in self._inner.frames():
                    if self._closed.is_set():
                        return
                    if self.state != STREAMING:
                        self._end_outage()
                    at = self._clock.now()
                    first = at if first is None else first
                    if not lasted and at - first >= self.min_stream_s:
                        lasted, backoff, self._failures = True, self.backoff_initial, 0
                    now = time.monotonic()
                    self._last_frame_at = now
                    yield Frame(index=self.frames_read, time=now - start, image=frame.image, captured=frame.captured)
                    self.frames_read += 1
                if self._inner is not None and self._inner.frame_count:
                    return  # finite media (a video file over HTTP) ends; a camera's stream has no length
                reason = "the stream ended"
            except FrameTooLarge:
                self.state = FAILED
                raise
            except SourceError as e:
                reason = str(e)
            self._drop_inner()
            if self._closed.is_set():
                return
            self._begin_outage(reason)
            if not self._may_retry():
                return
            if not lasted:  # no frame, or a stream over within seconds: a failed attempt
                self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    def interrupt(self) -> None:
        """Stop between frames or attempts, without closing a connection another thread is reading."""
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        self.state = STOPPED if self.state != FAILED else FAILED
        self._drop_inner()

    # -- state -------------------------------------------------------------------------------

    def health(self) -> SourceHealth:
        """State for /healthz: ``state``, frame count and age, reconnects, the outage and its reason."""
        age = None if self._last_frame_at is None else round(time.monotonic() - self._last_frame_at, 3)
        return SourceHealth(
            url=self.name,
            state=self.state,
            frames=self.frames_read,
            network=True,
            last_frame_age_s=age,
            reconnects=self.reconnects,
            outages=self.outages,
            down_s=round(self.down_s + (time.time() - self.outage_since if self.outage_since else 0.0), 3),
            outage_since=self.outage_since,
            last_error=self.last_error,
        )

    # -- internals ---------------------------------------------------------------------------

    def _connect(self) -> None:
        with self._lock:
            if self._closed.is_set():
                raise SourceError("closed")
            options = transport_options(self.url, self.transport)
            extra = {"max_pixels": self.max_pixels} if self.max_pixels else {}
            inner = self._opener(
                self.url, live=True, open_timeout=self.open_timeout, read_timeout=self.stall_timeout, options=options, **extra
            )
            self._inner = inner
            self.width, self.height, self.fps = inner.width, inner.height, inner.fps

    def _drop_inner(self) -> None:
        with self._lock:
            inner, self._inner = self._inner, None
        if inner is not None:
            try:
                inner.close()
            except Exception:  # a broken connection may fail to close; it is gone either way
                pass

    def _begin_outage(self, reason: str) -> None:
        reason = redact_text(reason, self.url)  # whatever raised it, no password goes further
        self.attempts += 1
        self._failures += 1
        self.last_error = reason
        if self.state in (STREAMING, CONNECTING) and self.outage_since is None:
            self.outage_since = time.time()
            self.outages += 1
            if self.max_reconnects == 0:
                return  # not retrying: the caller's error says it
            limit = "for ever" if self.max_reconnects is None else f"at most {counted(self.max_reconnects, 'time')}"
            self._lines.warning(f"outage: {reason}", f"source {self.source_id}: {reason}; reconnecting ({limit})")
        self.state = RECONNECTING

    def _end_outage(self) -> None:
        if self.outage_since is not None:
            lasted = time.time() - self.outage_since
            self.down_s += lasted
            self.reconnects += 1 if self.frames_read else 0
            self._lines.warning("streaming again", f"source {self.source_id}: streaming again after {lasted:.1f} s")
            if self.on_reconnect is not None and self.frames_read:
                self.on_reconnect()
        self.outage_since = None
        self.state = STREAMING

    def _may_retry(self) -> bool:
        if self.max_reconnects is not None and self._failures > self.max_reconnects:
            self.state = FAILED
            if self.max_reconnects == 0:
                raise SourceError(self.last_error or f"cannot read stream '{self.name}'")
            raise SourceError(
                f"source {self.source_id} ({self.name}) gave up after "
                f"{counted(self.max_reconnects, 'reconnect attempt')}: {self.last_error}"
            )
        if self.max_outage_s is not None and self.outage_since is not None and time.time() - self.outage_since >= self.max_outage_s:
            self.state = FAILED
            raise SourceError(
                f"source {self.source_id} ({self.name}) gave up after {self.max_outage_s:g} s without a frame: {self.last_error}"
            )
        return not self._closed.is_set()

    def _sleep(self, seconds: float) -> None:
        self._clock.wait(self._closed, seconds)
