"""One source or several: what differs between the two runs, chosen once (:func:`layout_for`).

One source may reuse the caller's detector and progress bar, may show a window, is consumed on the
calling thread, and its failing ends the run; its summary is the run's. Several sources each get
their own detector and outputs named by source, share one live classifier, are consumed on a
thread each (one failing leaves the others running), and their summaries are combined.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tqdm import tqdm

from fer_stream.analysis.sources import want_display
from fer_stream.analysis.streams import FrameBar, Stream, consume, end_run, keep_going
from fer_stream.analysis.summary import CombinedSummary, SourceSummary, Summary, stopped_by
from fer_stream.build import make_smoother
from fer_stream.config import Config
from fer_stream.errors import ConfigError, printable
from fer_stream.frames import FrameResult
from fer_stream.io.sources import Source
from fer_stream.model.contract import Classifier
from fer_stream.serve.metrics import Metrics
from fer_stream.stream.live import LiveClassifier

if TYPE_CHECKING:  # cv2 at its top; only its type is needed here
    from fer_stream.model.detector import Detector


class Layout(Protocol):
    several: bool  # outputs need {source} in their paths

    def label(self, sid: str) -> str:
        """How a message names source ``sid``'s outputs (`` of source door``), or nothing."""
        ...

    def event_id(self, sid: str) -> str | None:
        """The source id written on each event line, if any."""
        ...

    def check_display(self, cfg: Config) -> None: ...

    def displays(self, cfg: Config, source: Source) -> bool: ...

    def given_detectors(self, detector: Detector | None) -> list[Detector]:
        """The caller's ``detector`` if it serves the run; none: one is made per source."""
        ...

    def shared_classifier(self, cfg: Config, clf: Classifier, metrics: Metrics | None) -> LiveClassifier | None:
        """The live classifier every source shares, if they share one (its batches counted in ``metrics``)."""
        ...

    def open_bar(self, cfg: Config, streams: Sequence[Stream], given: FrameBar | None, stack: ExitStack) -> None: ...

    def consume(self, streams: Sequence[Stream], results: Sequence[Iterator[FrameResult]]) -> None:
        """Every source's results into its sinks, until every pipeline ends."""
        ...

    def summary(self, summaries: Sequence[SourceSummary], signum: int | None, shared: LiveClassifier | None) -> Summary: ...


def layout_for(specs: Sequence[tuple[str, str]]) -> Layout:
    return SeveralSources() if len(specs) > 1 else OneSource()


class OneSource:
    """The run of one source."""

    several = False

    def __init__(self) -> None:
        self.bar: FrameBar | None = None

    def label(self, sid: str) -> str:
        return ""

    def event_id(self, sid: str) -> str | None:
        return None

    def check_display(self, cfg: Config) -> None:
        pass

    def displays(self, cfg: Config, source: Source) -> bool:
        return want_display(cfg, source)

    def given_detectors(self, detector: Detector | None) -> list[Detector]:
        return [detector] if detector is not None else []

    def shared_classifier(self, cfg: Config, clf: Classifier, metrics: Metrics | None) -> LiveClassifier | None:
        return None  # a live source gets its own in its pipeline

    def open_bar(self, cfg: Config, streams: Sequence[Stream], given: FrameBar | None, stack: ExitStack) -> None:
        """A frame bar: the caller's (its total set here, once the source is open), or one of ours on stderr."""
        src = streams[0].source
        total = None if src.live else src.frame_count
        if cfg.source.max_frames and total:
            total = min(total, cfg.source.max_frames)
        if given is not None:
            given.reset(total=total)
            self.bar = given
            return
        bar = tqdm(
            total=total,
            unit="frame",
            disable=not cfg.output.progress,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 5.0,
            desc=printable(Path(src.name).name if not src.live else src.name),
        )
        stack.callback(bar.close)
        self.bar = bar

    def consume(self, streams: Sequence[Stream], results: Sequence[Iterator[FrameResult]]) -> None:
        st = streams[0]
        assert st.pipeline is not None  # made before the run starts
        consume(st, results[0], stop=st.pipeline.stop, on_error=end_run, bar=self.bar)

    def summary(self, summaries: Sequence[SourceSummary], signum: int | None, shared: LiveClassifier | None) -> Summary:
        return summaries[0]


class SeveralSources:
    """The run of several sources at once."""

    several = True

    def label(self, sid: str) -> str:
        return f" of source {sid}"

    def event_id(self, sid: str) -> str | None:
        return sid

    def check_display(self, cfg: Config) -> None:
        if cfg.display.enabled is True:
            raise ConfigError("--display shows one source; run one fer-stream per window, or use --serve for live previews")

    def displays(self, cfg: Config, source: Source) -> bool:
        return False

    def given_detectors(self, detector: Detector | None) -> list[Detector]:
        return []  # a detector per detect thread

    def shared_classifier(self, cfg: Config, clf: Classifier, metrics: Metrics | None) -> LiveClassifier | None:
        shared = LiveClassifier(clf, make_smoother(cfg), max_hz=cfg.classifier.live_max_hz)
        if metrics is not None:
            shared.on_batch = metrics.batch
        return shared

    def open_bar(self, cfg: Config, streams: Sequence[Stream], given: FrameBar | None, stack: ExitStack) -> None:
        pass  # several bars would garble each other; the server and the summary tell

    def consume(self, streams: Sequence[Stream], results: Sequence[Iterator[FrameResult]]) -> None:
        """A thread per source; an output failing stops them all."""
        pipelines = [st.pipeline for st in streams if st.pipeline is not None]

        def stop_all() -> None:
            for p in pipelines:
                p.stop()

        threads = [
            threading.Thread(
                target=consume, args=(st, it), kwargs={"stop": stop_all, "on_error": keep_going}, name=f"fer-out-{st.sid}", daemon=True
            )
            for st, it in zip(streams, results)
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)

    def summary(self, summaries: Sequence[SourceSummary], signum: int | None, shared: LiveClassifier | None) -> Summary:
        return CombinedSummary(
            sources={s.source_id: s for s in summaries},
            stopped_by=stopped_by(signum),
            mixed_batches=shared.mixed_batches if shared is not None else 0,
        )
