"""An analysis: every configured source through its pipeline into its outputs, and the summary.

:func:`analyse` runs the named steps of :class:`_Run` (outputs checked, server bound, sources
opened, models built, sinks opened, pipelines run, summary written). The run command
(:mod:`fer_stream.commands.analyse`) prints its outcome; ``batch`` and the Ray workers call it with
models they loaded once. What differs between one source and several is chosen once
(:mod:`fer_stream.analysis.layout`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from fer_stream.analysis.layout import Layout, layout_for
from fer_stream.analysis.signals import StopOnSignal, Stoppable
from fer_stream.analysis.sources import open_spec
from fer_stream.analysis.streams import FrameBar, Stream
from fer_stream.analysis.summary import NetworkSummary, SourceSummary, Summary, report_settings, summarize_source
from fer_stream.build import check_detector_files, load_models, make_detector, make_pipeline, threshold_of
from fer_stream.config import Config, output_path, source_ids
from fer_stream.errors import ConfigError, FerStreamError, SinkError, first_line
from fer_stream.io.review import ReviewStore
from fer_stream.io.sinks import DisplaySink, EventSink, SegmentedVideoSink, Sink, VideoSink, check_output, writable_path, write_json
from fer_stream.io.sources import WebcamSource
from fer_stream.model.contract import Classifier
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import Monitor, parse_address
from fer_stream.stream.episode_sink import EpisodeLog, EpisodeSink, Outlet, Publisher
from fer_stream.stream.live import LiveClassifier

if TYPE_CHECKING:
    from fer_stream.model.detector import Detector

log = logging.getLogger("fer_stream")
S = TypeVar("S", bound=Sink)


@dataclass
class Outcome:
    """What one analysis did: its summary (as written to ``--summary``), per-source errors, the signal that stopped it."""

    summary: Summary
    errors: list[tuple[str, BaseException]]
    signum: int | None
    several: bool


def analyse(
    cfg: Config,
    *,
    classifier: Classifier | None = None,
    detector: Detector | None = None,
    stopper: StopOnSignal | None = None,
    bar: FrameBar | None = None,
) -> Outcome:
    """Run every configured source through the pipeline into its outputs and write the summary.

    ``classifier`` and ``detector`` (one source only) reuse models already loaded, as ``batch``
    does across videos; they are not closed here. ``stopper`` is a signal handler installed by the
    caller (runs on other threads); without one, this call installs its own. ``bar`` (one source
    only; tqdm-like: ``reset(total)``, ``update``, ``set_postfix``) counts frames instead of a bar
    made here; its total is set once the source is open, and it is not closed here.
    """
    run = _Run(cfg)
    run.check_outputs()  # before anything loads: never the input, never an existing file unless asked
    with ExitStack() as stack:
        run.start_server(stack)  # bound first: a bad or busy address fails before anything loads
        run.open_sources(stack)
        clf = run.build_models(stack, classifier, detector)
        run.open_sinks(stack, clf, bar)
        signum = run.run(clf, stopper)
    # Sinks are closed (MP4 finalized, log flushed) before the summary says they were written.
    return run.summarize(signum)


class _Run:
    """One ``fer-stream`` run, step by step: outputs checked, server, sources, models, sinks, run, summary."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.specs = source_ids(cfg)
        self.layout: Layout = layout_for(self.specs)
        out, many = cfg.output, self.layout.several
        self.paths = {
            sid: (output_path(out.video, sid, many, "--output"), output_path(out.events, sid, many, "--events")) for sid, _ in self.specs
        }
        self.people = {
            sid: (output_path(out.report, sid, many, "--report"), output_path(out.timeline, sid, many, "--timeline"))
            for sid, _ in self.specs
        }  # the HTML report and the per-second CSV
        self.monitor: Monitor | None = None
        self.metrics: Metrics | None = None
        self.streams: list[Stream] = []
        self.detectors: list[Detector] = []
        self.shared: LiveClassifier | None = None  # several sources: one live classifier for all
        self.summaries: list[SourceSummary] = []
        self.review: ReviewStore | None = None
        self.outlets: list[Outlet] = []  # where episodes and alerts go (one for every source)
        self.publishers: dict[str, Publisher] = {}  # the outlets that send over the network, by name
        self.mqtt_url = cfg.publish.mqtt or os.environ.get("FER_STREAM_MQTT_URL", "")

    def check_outputs(self) -> None:
        out = self.cfg.output
        inputs = tuple(spec for _, spec in self.specs)
        named: list[tuple[str, str]] = []  # (which output, path) of the files this run writes
        for sid, _ in self.specs:
            of = self.layout.label(sid)
            video, events = self.paths[sid]
            report, timeline = self.people[sid]
            named += [(f"--output{of}", video), (f"--events{of}", events), (f"--report{of}", report), (f"--timeline{of}", timeline)]
        named += [("--summary", out.summary), ("--episodes", out.episodes)]
        segmented = out.segment_seconds > 0
        _check_distinct([(w, p) for w, p in named if p and not (segmented and w.startswith("--output"))])
        for what, path in named:
            if not path:
                continue
            if segmented and what.startswith("--output"):
                writable_path(path)  # segments get new, time-stamped names
            else:
                check_output(path, inputs=inputs, overwrite=out.overwrite)
        self.layout.check_display(self.cfg)
        if self.mqtt_url:  # a bad URL fails before anything loads
            from fer_stream.serve.mqtt import parse_mqtt_url

            parse_mqtt_url(self.mqtt_url)
        if self.cfg.review.dir and (not out.face_images or out.privacy != "off"):
            flag = "--no-face-images" if not out.face_images else f"--privacy {out.privacy}"
            raise ConfigError(f"--review keeps faces for people to label, {flag} hides them: drop one of the two")
        if self.cfg.review.dir:  # made now: a folder that cannot be one fails before anything loads
            self.review = ReviewStore.open(self.cfg.review.dir, create=True)

    def start_server(self, stack: ExitStack) -> None:
        sv = self.cfg.serve
        if not sv.address:
            return
        self.metrics = Metrics()
        self.monitor = Monitor(
            *parse_address(sv.address),
            self.metrics,
            token=sv.token or os.environ.get("FER_STREAM_SERVE_TOKEN", ""),
            max_clients=sv.max_clients,
            max_viewers=sv.max_viewers,
            allowed_hosts=sv.allowed_hosts,
            starting=True,
            review=self.review,
        )
        # Answers at once (503 "starting" while the models load), not only once the sources run.
        stack.enter_context(self.monitor)
        # Information, not a warning: where to look.
        print(
            f"fer-stream: serving {self.monitor.url}/ (dashboard), /healthz, /metrics and /sources/<id>/mjpeg", file=sys.stderr, flush=True
        )

    def open_sources(self, stack: ExitStack) -> None:
        self.streams = [Stream(sid, stack.enter_context(open_spec(self.cfg, sid, spec))) for sid, spec in self.specs]

    def build_models(self, stack: ExitStack, classifier: Classifier | None, detector: Detector | None) -> Classifier:
        """The classifier (the caller's, or loaded here) and a detector per source; returns the classifier."""
        cfg = self.cfg
        any_live = any(st.source.live for st in self.streams)
        self.detectors = self.layout.given_detectors(detector)
        if not self.detectors:  # the detectors' files before the classifier's seconds of loading
            check_detector_files(cfg, webcams=[isinstance(st.source, WebcamSource) for st in self.streams])
        clf = classifier if classifier is not None else load_models(cfg, detector=False, live=any_live)[0]
        if not self.detectors:  # one per detect thread
            self.detectors = [make_detector(cfg, webcam=isinstance(st.source, WebcamSource)) for st in self.streams]
            for d in self.detectors:
                stack.callback(d.close)
        log.info("detector %s", ", ".join(f"{st.sid}: {d.kind}" for st, d in zip(self.streams, self.detectors)))
        log.info("classifier %s on %s, labels %s", cfg.classifier.model, clf.device, ", ".join(clf.labels))
        self.shared = self.layout.shared_classifier(cfg, clf, self.metrics)
        return clf

    def open_sinks(self, stack: ExitStack, clf: Classifier, bar: FrameBar | None) -> None:
        """Each source's sinks and pipeline; the server reports the sources once every one is registered."""
        self._open_outlets(stack)
        for st, detector in zip(self.streams, self.detectors):
            self._open_sinks(stack, st, clf)
            st.pipeline = make_pipeline(
                self.cfg,
                st.source,
                clf,
                detector,
                warmup=self.cfg.classifier.warmup and st is self.streams[0],
                shared=self.shared,  # used by live sources only
                source_id=st.sid,
                watch=self.metrics,
            )
            if self.monitor is not None and self.metrics is not None:
                st.preview = self.monitor.add_source(st.sid, st.health)
                if st.episodes is not None:
                    self.monitor.watch_episodes(st.sid, st.episodes.state)
                self.metrics.watch(st.sid, st.state)
        if self.monitor is not None:
            self.monitor.ready()
        self.layout.open_bar(self.cfg, self.streams, bar, stack)

    def _open_outlets(self, stack: ExitStack) -> None:
        """The episode log and publishers, closed after every source's sinks (the stack unwinds in reverse)."""
        out, pub = self.cfg.output, self.cfg.publish
        if out.episodes:
            self.outlets.append(EpisodeLog(out.episodes, overwrite=out.overwrite))
        if self.mqtt_url:
            from fer_stream.serve.mqtt import MqttPublisher  # paho: only for runs that publish

            self.publishers["mqtt"] = MqttPublisher(self.mqtt_url, discovery=pub.mqtt_discovery, queue=pub.queue)
        if pub.webhook:
            from fer_stream.serve.webhook import WebhookPublisher

            secret = pub.webhook_secret or os.environ.get("FER_STREAM_WEBHOOK_SECRET", "")
            self.publishers["webhook"] = WebhookPublisher(pub.webhook, secret=secret, queue=pub.queue)
        for name, publisher in self.publishers.items():
            self.outlets.append(publisher)
            if self.metrics is not None:
                self.metrics.watch_publisher(name, publisher.counts)
        for outlet in self.outlets:
            stack.callback(outlet.close)

    def _open_sinks(self, stack: ExitStack, st: Stream, clf: Classifier) -> None:
        cfg, out, src = self.cfg, self.cfg.output, st.source
        video_path, events_path = self.paths[st.sid]
        if video_path and out.segment_seconds > 0:
            st.video = _entered(
                stack,
                SegmentedVideoSink(
                    out.video, source_id=st.sid, seconds=out.segment_seconds, fps=src.fps or 30.0, crf=out.crf, preset=out.preset
                ),
            )
        elif video_path:
            st.video = _entered(
                stack,
                VideoSink(
                    video_path,
                    width=src.width,
                    height=src.height,
                    fps=src.fps or 30.0,
                    time_base=None if src.live else src.time_base,
                    audio_from=src.audio_path if out.audio else None,
                    crf=out.crf,
                    preset=out.preset,
                ),
            )
        if events_path:
            st.events = _entered(stack, EventSink(events_path, source_id=self.layout.event_id(st.sid), landmarks=out.landmarks))
        if any(self.people[st.sid]):
            from fer_stream.io.report import TimelineSink  # cv2 at its top: only for runs that write a report or timeline

            st.timeline = TimelineSink(clf.labels, bucket_s=out.timeline_seconds, threshold=threshold_of(cfg))
        if self.review is not None:
            from fer_stream.io.collect import ReviewCollector

            r = cfg.review
            st.review = ReviewCollector(
                self.review,
                every_s=r.every_s,
                max_faces=r.max_faces,
                source=src.name,
                source_id=st.sid,
                model=cfg.classifier.model,
                threshold=threshold_of(cfg),
            )
        if self.outlets:
            st.episodes = _entered(stack, EpisodeSink(st.sid, self.outlets, cfg.episodes, cfg.alerts))
        if self.layout.displays(cfg, src):
            st.window = _entered(stack, DisplaySink(cfg.display.title))

    def run(self, clf: Classifier, stopper: StopOnSignal | None) -> int | None:
        """Every pipeline until its source ends, a signal or an output failing; returns the signal.

        Each source's summary is taken here, while its source is open (a network source's outages).
        """
        streams = self.streams
        pipelines = [st.pipeline for st in streams if st.pipeline is not None]
        with nullcontext(stopper) if stopper is not None else StopOnSignal() as signals, signals.watching(pipelines):
            with ExitStack() as running:
                results = [running.enter_context(p) for p in pipelines]
                if self.shared is not None:
                    stop_shared = threading.Event()
                    worker = threading.Thread(
                        target=_run_shared, args=(self.shared, stop_shared, pipelines), name="fer-classify", daemon=True
                    )
                    worker.start()
                    running.callback(worker.join, 5.0)
                    running.callback(stop_shared.set)
                self.layout.consume(streams, results)
        for st in streams:
            assert st.pipeline is not None
            stats = st.pipeline.stats
            if isinstance(st.video, VideoSink) and stats.source_ended and st.tally.frames_out == stats.frames_in:
                st.video.end_of_input()
        for st in streams:
            if st.episodes is not None:
                st.episodes.close()  # the open episodes end with their source: in the summary's counts
        for outlet in self.outlets:
            outlet.close()  # publishers deliver what waits (bounded): their counts are final for the summary
        self.summaries = [_source_summary(self.cfg, st, clf, signals.signum, self.publishers) for st in streams]
        return signals.signum

    def summarize(self, signum: int | None) -> Outcome:
        """Each source's summary with its segments, report and timeline; the run's summary (one source's,
        or the totals with each source's); the summary file."""
        summaries: list[SourceSummary] = []
        late: list[tuple[str, BaseException]] = []  # a report or timeline that failed: the summary is still written
        for st, summary in zip(self.streams, self.summaries):
            if isinstance(st.video, SegmentedVideoSink):  # closed now: the last segment too
                summary = dataclasses.replace(summary, segments=tuple(str(p) for p in st.video.closed_segments))
            summary, failed = self._write_people(st, summary)
            summaries.append(summary)
            late += [(st.sid, e) for e in failed]
        run_summary = self.layout.summary(summaries, signum, self.shared)
        if self.cfg.output.summary:
            write_json(self.cfg.output.summary, run_summary.as_dict())
        errors = [(st.sid, st.error) for st in self.streams if st.error is not None] + late
        return Outcome(run_summary, errors, signum, self.layout.several)

    def _write_people(self, st: Stream, summary: SourceSummary) -> tuple[SourceSummary, list[BaseException]]:
        """Source ``st``'s timeline, then its report (which shows the summary so far); the summary with them."""
        if st.timeline is None:
            return summary, []
        from fer_stream.io import report  # cv2 at its top; a run without a report or timeline never needs it

        timeline = st.timeline
        report_path, timeline_path = self.people[st.sid]
        settings = report_settings(self.cfg)
        writers: tuple[tuple[str, str, Callable[[str, SourceSummary], object]], ...] = (
            ("timeline", timeline_path, lambda p, s: report.write_timeline(p, timeline)),
            ("report", report_path, lambda p, s: report.write_report(p, timeline, s.as_dict(), settings)),
        )
        errors: list[BaseException] = []
        for key, path, write in writers:
            if not path:
                continue
            try:
                write(path, summary)
            except Exception as e:
                error = e
                if not isinstance(e, FerStreamError):  # a bug in the report's making: still one line
                    error = SinkError(f"cannot write {key} '{path}': {type(e).__name__}: {first_line(e)}")
                if summary.late_error is None:
                    summary = dataclasses.replace(summary, late_error=str(error))
                errors.append(error)
            else:
                summary = summary.with_output(key, path)
        return summary, errors


def _source_summary(
    cfg: Config, st: Stream, clf: Classifier, signum: int | None, publishers: dict[str, Publisher] | None = None
) -> SourceSummary:
    assert st.pipeline is not None
    h = st.source.health()
    return summarize_source(
        cfg,
        source=st.source.name,
        source_id=st.sid,
        live=st.source.live,
        clf=clf,
        tally=st.tally,
        stats=st.pipeline.stats,
        detector=st.pipeline.detector.kind,
        tracks_omitted=st.pipeline.track_log.omitted,
        outputs={
            "video": str(st.video.path) if isinstance(st.video, VideoSink) else "",
            "events": str(st.events.path) if st.events is not None else "",
            "summary": cfg.output.summary,
            "episodes": cfg.output.episodes,
        },
        network=NetworkSummary(h.reconnects, h.outages, h.down_s) if h is not None and h.network else None,
        error=st.error,
        signum=signum,
        review=st.review.summary() if st.review is not None else None,
        episodes=None if st.episodes is None else {**st.episodes.summary(), **{k: p.counts() for k, p in (publishers or {}).items()}},
    )


def _entered(stack: ExitStack, sink: S) -> S:
    """``sink``, entered on ``stack`` (closed when the run ends)."""
    stack.enter_context(sink)
    return sink


def _check_distinct(outputs: list[tuple[str, str]]) -> None:
    """A ConfigError if two outputs are one file (same path once links are resolved, or hard links)."""
    seen: dict[object, str] = {}
    for what, path in outputs:
        keys: list[object] = [os.path.realpath(path)]
        try:
            st = os.stat(path)
            keys.append((st.st_dev, st.st_ino))
        except OSError:
            pass  # not there yet: its resolved path is its identity
        for key in keys:
            if key in seen and seen[key] != what:
                raise ConfigError(f"{seen[key]} and {what} are the same file '{path}'; give each output its own file")
            seen.setdefault(key, what)


def _run_shared(shared: LiveClassifier, stop: threading.Event, pipelines: Sequence[Stoppable]) -> None:
    try:
        shared.run(stop)
    except BaseException as e:  # the shared classifier failing stops every camera
        log.error("classifier failed: %s: %s", type(e).__name__, e)
        for p in pipelines:
            p.stop()
