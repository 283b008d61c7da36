"""``fer-stream --source ...``: analyse one or several sources into their outputs, and summarize.

:func:`analyse` runs the named steps of :class:`_Run` (outputs checked, server bound, sources
opened, models built, sinks opened, pipelines run, summary written); :func:`run_stream` is the
command around it (printing, exit code). ``batch`` and the Ray workers call :func:`analyse` with
models they loaded once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fer_stream.build import check_detector_files, load_models, make_detector, make_pipeline, make_smoother
from fer_stream.commands.signals import StopOnSignal
from fer_stream.config import Config, output_path, source_ids
from fer_stream.errors import ConfigError, FerStreamError, SinkError, counted, first_line, printable
from fer_stream.health import SourceHealth, SourceState
from fer_stream.io.sources import Source, WebcamSource, open_source

log = logging.getLogger("fer_stream")


def _want_display(cfg: Config, source: Source) -> bool:
    from fer_stream.io.sinks import display_available

    setting = cfg.display.enabled
    if setting == "auto":
        return isinstance(source, WebcamSource) and display_available()
    return bool(setting)


def _open(cfg: Config, sid: str, spec: str) -> Source:
    """A source for ``spec``; network URLs reconnect after outages."""
    from fer_stream.io.reconnect import ReconnectingSource
    from fer_stream.io.sources import NETWORK_SCHEMES

    s = cfg.source
    if spec.strip().lower().startswith(NETWORK_SCHEMES):
        src = ReconnectingSource(
            spec.strip(),
            source_id=sid,
            transport=s.transport,
            open_timeout=s.open_timeout_s,
            stall_timeout=s.stall_timeout_s,
            backoff_initial=s.reconnect_initial_s,
            backoff_max=s.reconnect_max_s,
            max_reconnects=None if s.max_reconnects < 0 else s.max_reconnects,
            max_outage_s=s.max_outage_s or None,
            max_pixels=s.max_pixels,
        )
        return src  # connects on its reading thread, once the models are loaded (no stale burst of frames)
    return open_source(spec, live=True if s.live else None, max_pixels=s.max_pixels)


class _Stream:
    """One source with its pipeline, sinks and counters."""

    def __init__(self, sid: str, source: Source) -> None:
        self.sid = sid
        self.source = source
        self.sinks: list[Any] = []
        self.tally: Any = None
        self.video: Any = None
        self.window: Any = None
        self.pipeline: Any = None
        self.events: Any = None
        self.error: BaseException | None = None
        self.timeline: Any = None

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


@dataclass
class Outcome:
    """What one analysis did: its summary (as written to ``--summary``), per-source errors, the signal that stopped it."""

    summary: dict[str, Any]
    errors: list[tuple[str, BaseException]]
    signum: int | None
    several: bool


def run_stream(cfg: Config) -> int:
    """Analyse every configured source end to end; returns the process exit code."""
    outcome = analyse(cfg)
    _print_summary(outcome.summary)
    if outcome.errors and not outcome.several:
        raise outcome.errors[0][1]
    if outcome.errors:
        for sid, error in outcome.errors:
            print(f"fer-stream: error: source {sid}: {printable(str(error))}", file=sys.stderr)
        return 1
    if outcome.signum is not None:
        return 128 + outcome.signum
    return 0


def analyse(cfg: Config, *, classifier: Any = None, detector: Any = None, stopper: StopOnSignal | None = None, bar: Any = None) -> Outcome:
    """Run every configured source through the pipeline into its outputs and write the summary.

    ``classifier`` and ``detector`` (one source only) reuse models already loaded, as ``batch``
    does across videos; they are not closed here. ``stopper`` is a signal handler installed by the
    caller (runs on other threads); without one, this call installs its own. ``bar`` (one source
    only; tqdm-like: ``reset(total)``, ``update``, ``set_postfix``) counts frames instead of a bar
    made here; its total is set once the source is open, and it is not closed here.
    """
    run = _Run(cfg)
    run.given_bar = bar
    run.check_outputs()  # before anything loads: never the input, never an existing file unless asked
    with ExitStack() as stack:
        run.start_server(stack)  # bound first: a bad or busy address fails before anything loads
        run.open_sources(stack)
        run.build_models(stack, classifier, detector)
        run.open_sinks(stack)
        signum = run.run(stack, stopper)
    # Sinks are closed (MP4 finalized, log flushed) before the summary says they were written.
    return run.summarize(signum)


class _Run:
    """One ``fer-stream`` run, step by step: outputs checked, server, sources, models, sinks, run, summary."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.specs = source_ids(cfg)
        self.several = len(self.specs) > 1
        out = cfg.output
        many = self.several
        self.paths = {
            sid: (output_path(out.video, sid, many, "--output"), output_path(out.events, sid, many, "--events")) for sid, _ in self.specs
        }
        self.people = {
            sid: (output_path(out.report, sid, many, "--report"), output_path(out.timeline, sid, many, "--timeline"))
            for sid, _ in self.specs
        }  # the HTML report and the per-second CSV
        self.monitor: Any = None
        self.metrics: Any = None
        self.streams: list[_Stream] = []
        self.clf: Any = None
        self.detectors: list[Any] = []
        self.shared: Any = None  # several sources: one live classifier for all
        self.bar: Any = None
        self.given_bar: Any = None  # the caller's progress bar, used instead of one of ours
        self.summaries: dict[str, dict[str, Any]] = {}

    def check_outputs(self) -> None:
        from fer_stream.io.sinks import check_output, writable_path

        out = self.cfg.output
        inputs = tuple(spec for _, spec in self.specs)
        named: list[tuple[str, str]] = []  # (which output, path) of the files this run writes
        for sid, _ in self.specs:
            of = f" of source {sid}" if self.several else ""
            video, events = self.paths[sid]
            report, timeline = self.people[sid]
            named += [(f"--output{of}", video), (f"--events{of}", events), (f"--report{of}", report), (f"--timeline{of}", timeline)]
        named.append(("--summary", out.summary))
        segmented = out.segment_seconds > 0
        _check_distinct([(w, p) for w, p in named if p and not (segmented and w.startswith("--output"))])
        for what, path in named:
            if not path:
                continue
            if segmented and what.startswith("--output"):
                writable_path(path)  # segments get new, time-stamped names
            else:
                check_output(path, inputs=inputs, overwrite=out.overwrite)
        if self.several and self.cfg.display.enabled is True:
            raise ConfigError("--display shows one source; run one fer-stream per window, or use --serve for live previews")

    def start_server(self, stack: ExitStack) -> None:
        sv = self.cfg.serve
        if not sv.address:
            return
        from fer_stream.serve.metrics import Metrics
        from fer_stream.serve.monitor import Monitor, parse_address

        self.metrics = Metrics()
        self.monitor = Monitor(
            *parse_address(sv.address),
            self.metrics,
            token=sv.token or os.environ.get("FER_STREAM_SERVE_TOKEN", ""),
            max_clients=sv.max_clients,
            max_viewers=sv.max_viewers,
            allowed_hosts=sv.allowed_hosts,
            starting=True,
        )
        # Answers at once (503 "starting" while the models load), not only once the sources run.
        stack.enter_context(self.monitor)
        # Information, not a warning: where to look.
        print(
            f"fer-stream: serving {self.monitor.url}/ (dashboard), /healthz, /metrics and /sources/<id>/mjpeg", file=sys.stderr, flush=True
        )

    def open_sources(self, stack: ExitStack) -> None:
        self.streams = [_Stream(sid, stack.enter_context(_open(self.cfg, sid, spec))) for sid, spec in self.specs]

    def build_models(self, stack: ExitStack, classifier: Any, detector: Any) -> None:
        from fer_stream.stream.live import LiveClassifier

        cfg = self.cfg
        any_live = any(st.source.live for st in self.streams)
        if detector is None or self.several:  # the detectors' files before the classifier's seconds of loading
            check_detector_files(cfg, webcams=[isinstance(st.source, WebcamSource) for st in self.streams])
        self.clf = classifier if classifier is not None else load_models(cfg, detector=False, live=any_live)[0]
        if detector is not None and not self.several:
            self.detectors = [detector]
        else:  # one per detect thread
            self.detectors = [make_detector(cfg, webcam=isinstance(st.source, WebcamSource)) for st in self.streams]
            for d in self.detectors:
                stack.callback(d.close)
        log.info("detector %s", ", ".join(f"{st.sid}: {d.kind}" for st, d in zip(self.streams, self.detectors)))
        log.info("classifier %s on %s, labels %s", cfg.classifier.model, self.clf.device, ", ".join(self.clf.labels))
        if self.several:
            self.shared = LiveClassifier(self.clf, make_smoother(cfg), max_hz=cfg.classifier.live_max_hz)
            if self.metrics is not None:
                self.shared.on_batch = self.metrics.batch

    def open_sinks(self, stack: ExitStack) -> None:
        """Each source's sinks and pipeline; the server reports the sources once every one is registered."""
        from tqdm import tqdm

        for st, detector in zip(self.streams, self.detectors):
            self._open_sinks(stack, st)
            st.pipeline = make_pipeline(
                self.cfg,
                st.source,
                self.clf,
                detector,
                warmup=self.cfg.classifier.warmup and st is self.streams[0],
                live_classifier=self.shared if st.source.live else None,
                source_id=st.sid,
                metrics=self.metrics,
            )
            if self.monitor is not None:
                st.sinks.append(self.monitor.add_source(st.sid, st.health))
                self.metrics.watch(st.sid, st.state)
        if self.monitor is not None:
            self.monitor.ready()
        if not self.several:
            src = self.streams[0].source
            total = None if src.live else src.frame_count
            if self.cfg.source.max_frames and total:
                total = min(total, self.cfg.source.max_frames)
            if self.given_bar is not None:
                self.bar = self.given_bar
                self.bar.reset(total=total)
                return
            self.bar = tqdm(
                total=total,
                unit="frame",
                disable=not self.cfg.output.progress,
                dynamic_ncols=True,
                file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 5.0,
                desc=printable(Path(src.name).name if not src.live else src.name),
            )
            stack.callback(self.bar.close)

    def _open_sinks(self, stack: ExitStack, st: _Stream) -> None:
        from fer_stream.io.sinks import DisplaySink, EventSink, SegmentedVideoSink, Tally, VideoSink

        cfg, out, src = self.cfg, self.cfg.output, st.source
        st.tally = Tally()
        st.sinks.append(st.tally)
        video_path, events_path = self.paths[st.sid]
        if video_path and out.segment_seconds > 0:
            st.video = stack.enter_context(
                SegmentedVideoSink(
                    out.video, source_id=st.sid, seconds=out.segment_seconds, fps=src.fps or 30.0, crf=out.crf, preset=out.preset
                )
            )
        elif video_path:
            st.video = stack.enter_context(
                VideoSink(
                    video_path,
                    width=src.width,
                    height=src.height,
                    fps=src.fps or 30.0,
                    time_base=None if src.live else src.time_base,
                    audio_from=src.audio_path if out.audio else None,
                    crf=out.crf,
                    preset=out.preset,
                )
            )
        if st.video is not None:
            st.sinks.append(st.video)
        if events_path:
            st.events = stack.enter_context(EventSink(events_path, source_id=st.sid if self.several else None))
            st.sinks.append(st.events)
        if any(self.people[st.sid]):
            from fer_stream.io.report import TimelineSink

            st.timeline = TimelineSink(self.clf.labels, bucket_s=out.timeline_seconds, threshold=cfg.classifier.threshold)
            st.sinks.append(st.timeline)
        if not self.several and _want_display(cfg, src):
            st.window = stack.enter_context(DisplaySink(cfg.display.title))
            st.sinks.append(st.window)

    def run(self, stack: ExitStack, stopper: StopOnSignal | None) -> int | None:
        """Every pipeline until its source ends, a signal or an output failing; returns the signal."""
        from fer_stream.io.sinks import VideoSink

        streams = self.streams
        pipelines = [st.pipeline for st in streams]
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
                if self.several:

                    def stop_all() -> None:
                        for p in pipelines:
                            p.stop()

                    threads = [
                        threading.Thread(target=_consume, args=(st, it, None, stop_all), name=f"fer-out-{st.sid}", daemon=True)
                        for st, it in zip(streams, results)
                    ]
                    for t in threads:
                        t.start()
                    while any(t.is_alive() for t in threads):
                        for t in threads:
                            t.join(0.2)
                else:
                    _consume(streams[0], results[0], self.bar, streams[0].pipeline.stop)
        for st in streams:
            stats = st.pipeline.stats
            if isinstance(st.video, VideoSink) and stats.source_ended and st.tally.frames_out == stats.frames_in:
                st.video.end_of_input()
        self.summaries = {st.sid: _summary(self.cfg, st, self.clf, signals.signum) for st in streams}
        return signals.signum

    def summarize(self, signum: int | None) -> Outcome:
        """The summary (one source's, or the totals with each source's), the report and timeline, the summary file."""
        from fer_stream.io.sinks import SegmentedVideoSink, write_json

        summaries, streams = self.summaries, self.streams
        if self.several:
            summary = _combined(summaries, signum)
            summary["mixed_batches"] = self.shared.mixed_batches  # classifier batches holding faces of several cameras
            for st in streams:
                if isinstance(st.video, SegmentedVideoSink):
                    summary["sources"][st.sid]["segments"] = [str(p) for p in st.video.closed_segments]
        else:
            summary = summaries[self.specs[0][0]]
            if isinstance(streams[0].video, SegmentedVideoSink):
                summary["segments"] = [str(p) for p in streams[0].video.closed_segments]
        late: list[tuple[str, BaseException]] = []  # a report or timeline that failed: the summary is still written
        for st in streams:
            report_path, timeline_path = self.people[st.sid]
            if st.timeline is None:
                continue
            from fer_stream.io.report import write_report, write_timeline

            for key, path, write in (
                ("timeline", timeline_path, lambda p, st=st: write_timeline(p, st.timeline)),
                ("report", report_path, lambda p, st=st: write_report(p, st.timeline, summaries[st.sid], _report_settings(self.cfg))),
            ):
                if not path:
                    continue
                try:
                    write(path)
                except Exception as e:
                    error = e
                    if not isinstance(e, FerStreamError):  # a bug in the report's making: still one line
                        error = SinkError(f"cannot write {key} '{path}': {type(e).__name__}: {first_line(e)}")
                    summaries[st.sid].setdefault("error", str(error))
                    late.append((st.sid, error))
                else:
                    summaries[st.sid]["outputs"][key] = path
        if self.cfg.output.summary:
            write_json(self.cfg.output.summary, summary)
        errors = [(st.sid, st.error) for st in streams if st.error is not None] + late
        return Outcome(summary, errors, signum, self.several)


def _check_distinct(outputs: list[tuple[str, str]]) -> None:
    """A ConfigError if two outputs are one file (same path once links are resolved, or hard links)."""
    seen: dict[Any, str] = {}
    for what, path in outputs:
        keys: list[Any] = [os.path.realpath(path)]
        try:
            st = os.stat(path)
            keys.append((st.st_dev, st.st_ino))
        except OSError:
            pass  # not there yet: its resolved path is its identity
        for key in keys:
            if key in seen and seen[key] != what:
                raise ConfigError(f"{seen[key]} and {what} are the same file '{path}'; give each output its own file")
            seen.setdefault(key, what)


def _run_shared(shared: Any, stop: threading.Event, pipelines: list[Any]) -> None:
    try:
        shared.run(stop)
    except BaseException as e:  # the shared classifier failing stops every camera
        log.error("classifier failed: %s: %s", type(e).__name__, e)
        for p in pipelines:
            p.stop()


def _consume(st: _Stream, results: Any, bar: Any, stop_all: Callable[[], None] | None = None) -> None:
    """Write one source's results to its sinks until its pipeline ends.

    A source failing stops that source (the others keep going); an output failing (full disk,
    folder gone) stops them all: the run then ends with that one error and a non-zero exit.
    """
    from fer_stream.errors import FerStreamError, SinkError

    try:
        for result in results:
            for sink in st.sinks:
                sink.write(result)
            if bar is not None:
                bar.update(1)
                if st.tally.frames_out % 10 == 0:
                    bar.set_postfix(faces=st.tally.faces, flagged=st.tally.flagged, refresh=False)
            if st.window is not None and st.window.quit:
                st.pipeline.stop()
    except SinkError as e:  # stop everything; the summary is still written, then the error ends the run
        st.error = e
        if stop_all is not None:
            stop_all()
    except FerStreamError as e:
        st.error = e
        if bar is None:  # several sources: the others keep going
            log.error("source %s stopped: %s", st.sid, e)
        else:
            raise


def _report_settings(cfg: Config) -> dict[str, Any]:
    """The settings a reader of a report needs to judge it."""
    c, d, q = cfg.classifier, cfg.detector, cfg.quality
    return {
        "model": c.model,
        "device": c.device,
        "precision": c.precision,
        "threshold": c.threshold,
        "classify every": c.classify_every,
        "smoothing": cfg.tracking.smoothing,
        "detector": d.kind,
        "detector confidence (short / full)": f"{d.min_confidence} / {d.full_min_confidence}",
        "quality minimums (px / sharpness / score)": f"{q.min_face_px} / {q.min_sharpness} / {q.min_score}",
        "timeline bucket": f"{cfg.output.timeline_seconds:g} s",
    }


def _combined(summaries: dict[str, dict[str, Any]], signum: int | None) -> dict[str, Any]:
    total = {
        k: sum(s[k] for s in summaries.values())
        for k in ("frames_in", "frames_out", "faces", "flagged", "unusable", "dropped", "classified")
    }
    first = next(iter(summaries.values()))
    return {
        **total,
        "sources": summaries,
        "model": first["model"],
        "device": first["device"],
        "precision": first["precision"],
        "elapsed_s": max(s["elapsed_s"] for s in summaries.values()),
        "stopped_by": signal.Signals(signum).name if signum else None,
    }


def _summary(cfg: Config, st: _Stream, clf: Any, signum: int | None) -> dict[str, Any]:
    from fer_stream.io.sinks import VideoSink

    source, tally, stats = st.source, st.tally, st.pipeline.stats
    elapsed = max(stats.elapsed_s, 1e-9)
    out = {
        "source": source.name,
        "source_id": st.sid,
        "live": source.live,
        "model": cfg.classifier.model,
        "device": str(clf.device),
        "precision": clf.precision,
        "frames_in": stats.frames_in,
        "frames_out": tally.frames_out,
        "faces": tally.faces,
        "flagged": tally.flagged,
        "unusable": tally.unusable,  # too small, blurry or unsure to classify; in no label count
        "detector": st.pipeline.detector.kind,
        "labels": {label: tally.labels.get(label, 0) for label in clf.labels},
        "fps": round(tally.frames_out / elapsed, 3),
        "faces_per_s": round(tally.faces / elapsed, 3),
        "dropped": stats.dropped,
        "elapsed_s": round(stats.elapsed_s, 3),
        "classified": stats.classified,
        "batches": stats.batches,
        "mean_batch": round(stats.mean_batch, 3),
        "latency_s": stats.latency_s,
        "tracks": [t.as_dict() for t in sorted(stats.tracks, key=lambda t: t.id)],
        "tracks_omitted": st.pipeline.track_log.omitted,  # the oldest, beyond the 10 000 kept
        "threshold": cfg.classifier.threshold,
        "stopped_by": signal.Signals(signum).name if signum else None,
        "outputs": {
            k: v
            for k, v in (
                ("video", str(st.video.path) if isinstance(st.video, VideoSink) else ""),
                ("events", str(st.events.path) if st.events is not None else ""),
                ("summary", cfg.output.summary),
            )
            if v
        },
    }
    h = source.health()
    if h is not None and h.network:
        out["reconnects"], out["outages"], out["down_s"] = h.reconnects, h.outages, h.down_s
    if st.error is not None:
        out["error"] = str(st.error)
    return out


def _print_summary(s: dict[str, Any]) -> None:
    if "sources" in s:
        for sid, one in s["sources"].items():
            print(f"[{sid}] ", end="")
            _print_summary(one)
        return
    lines = [
        f"{counted(s['frames_out'], 'frame')} out of {s['frames_in']} read in {s['elapsed_s']:.1f} s "
        f"({s['fps']:.1f} fps); {counted(s['faces'], 'face')} in {counted(len(s['tracks']), 'track')}, {s['classified']} classified, "
        f"{s['flagged']} flagged, {s['unusable']} unusable; {s['dropped']} dropped"
        + (f"; stopped by {s['stopped_by']}" if s["stopped_by"] else ""),
    ]
    lat = s["latency_s"]
    if lat.get("p50") is not None:
        lines.append(
            f"latency (capture to output): p50 {lat['p50'] * 1e3:.0f} ms, p95 {lat['p95'] * 1e3:.0f} ms, p99 {lat['p99'] * 1e3:.0f} ms"
        )
    counts = [f"{k} {v}" for k, v in sorted(s["labels"].items(), key=lambda kv: -kv[1]) if v]
    if counts:
        lines.append("labels: " + ", ".join(counts))
    written = [p for p in s["outputs"].values() if Path(p).is_file()]  # only what is really there
    if written:
        lines.append("wrote: " + ", ".join(written))
    if s.get("segments"):
        lines.append(f"segments: {counted(len(s['segments']), 'file')}, {s['segments'][0]} ... {s['segments'][-1]}")
    print("\n".join(printable(line) for line in lines), flush=True)
