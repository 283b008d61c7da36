"""One source of a run with its pipeline and sinks (:class:`Stream`), and the loop feeding its results to them."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from fer_stream.errors import FerStreamError, SinkError
from fer_stream.frames import FrameResult
from fer_stream.health import SourceHealth, SourceState
from fer_stream.io.sinks import DisplaySink, EventSink, SegmentedVideoSink, Sink, Tally, VideoSink
from fer_stream.io.sources import Source

if TYPE_CHECKING:  # both import heavy modules (torch, cv2) at their top; only their types are needed here
    from fer_stream.io.collect import ReviewCollector
    from fer_stream.io.report import TimelineSink
    from fer_stream.stream.episode_sink import EpisodeSink
    from fer_stream.stream.pipeline import Pipeline

log = logging.getLogger("fer_stream")


class FrameBar(Protocol):
    """A progress bar counting a source's frames (tqdm, or a stand-in reporting elsewhere)."""

    def reset(self, total: int | None = None) -> object: ...

    def update(self, n: int = 1) -> object: ...

    def set_postfix(self, *, refresh: bool = ..., faces: int = ..., flagged: int = ...) -> object: ...


@dataclass
class Stream:
    """One source with its pipeline, its sinks (each stored once, by kind) and its error."""

    sid: str
    source: Source
    tally: Tally = field(default_factory=Tally)
    video: VideoSink | SegmentedVideoSink | None = None
    events: EventSink | None = None
    timeline: TimelineSink | None = None
    window: DisplaySink | None = None
    review: ReviewCollector | None = None  # keeps flagged faces for people to check (--review)
    episodes: EpisodeSink | None = None  # expression episodes and alerts (--episodes, publishers)
    preview: Sink | None = None  # the server's preview and dashboard card of this source
    pipeline: Pipeline | None = None
    error: BaseException | None = None

    @property
    def sinks(self) -> list[Sink]:
        """Every sink, in the order each result is written to them."""
        every = (self.tally, self.video, self.events, self.timeline, self.review, self.episodes, self.window, self.preview)
        return [s for s in every if s is not None]

    def health(self) -> SourceHealth:
        h = self.source.health() or SourceHealth(
            url=self.source.name, state="streaming", frames=self.pipeline.stats.frames_in if self.pipeline else 0
        )
        if self.error is not None:
            return dataclasses.replace(h, state="failed", last_error=str(self.error))
        if self.pipeline is not None and self.pipeline.stats.source_ended:
            return dataclasses.replace(h, state="ended")
        return h

    def state(self) -> SourceState:
        stats = self.pipeline.stats if self.pipeline is not None else None
        return SourceState(
            dropped=stats.dropped if stats else 0,
            reconnects=self.source.reconnects,
            failures=self.source.attempts,
            up=self.health().state == "streaming",
            queues=self.pipeline.queue_depths() if self.pipeline is not None else {},
        )


def consume(
    st: Stream,
    results: Iterable[FrameResult],
    *,
    stop: Callable[[], None],
    on_error: Callable[[Stream, FerStreamError], None],
    bar: FrameBar | None = None,
) -> None:
    """Write one source's results to its sinks until its pipeline ends.

    An output failing (full disk, folder gone) calls ``stop`` (every source of the run: it then ends
    with that one error and a non-zero exit); the source failing goes to ``on_error``.
    """
    sinks = st.sinks
    try:
        for result in results:
            for sink in sinks:
                sink.write(result)
            if bar is not None:
                bar.update(1)
                if st.tally.frames_out % 10 == 0:
                    bar.set_postfix(faces=st.tally.faces, flagged=st.tally.flagged, refresh=False)
            if st.window is not None and st.window.quit and st.pipeline is not None:
                st.pipeline.stop()
    except SinkError as e:  # stop everything; the summary is still written, then the error ends the run
        st.error = e
        stop()
    except FerStreamError as e:
        st.error = e
        on_error(st, e)


def keep_going(st: Stream, error: FerStreamError) -> None:
    """``on_error`` of a source among several: logged, the others keep going."""
    log.error("source %s stopped: %s", st.sid, error)


def end_run(st: Stream, error: FerStreamError) -> None:
    """``on_error`` of a run's only source: the error ends the run."""
    raise error
