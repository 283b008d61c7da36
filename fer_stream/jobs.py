"""The command line's jobs, wired from settings: analyse a stream, classify still images, pull models."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Sequence

from .config import Config
from .errors import ConfigError, SourceError
from .sources import Source, WebcamSource, open_source

log = logging.getLogger("fer_stream")


def auto_threads(live: bool) -> int | None:
    """CPU threads for the classifier: live runs leave one core to decoding, detection and output."""
    if not live:
        return None  # torch's default: every core
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def make_classifier(cfg: Config, *, model: str | None = None, device: str | None = None, precision: str | None = None,
                    threads: int | None = None, backend: str | None = None) -> Any:
    """The classifier the settings describe; keyword arguments override single settings."""
    from .classify import EmotionClassifier

    c = cfg.classifier
    return EmotionClassifier(
        model or c.model, device or c.device, max_batch=c.max_batch, threshold=c.threshold,
        precision=precision or c.precision, threads=threads, fast_preprocess=c.tensor_preprocess,
        backend=backend or c.backend,
    )


def make_pipeline(cfg: Config, source: Source, clf: Any, det: Any, **kwargs: Any) -> Any:
    """A pipeline with the settings' batching, tracking, smoothing and scheduling; ``kwargs`` add or override."""
    from .pipeline import Pipeline

    c = cfg.classifier
    frames, faces, results = queue_sizes(cfg, source.width * source.height * 3)
    options: dict[str, Any] = dict(
        max_frames=cfg.source.max_frames or None, batch_wait=c.batch_wait_ms / 1000.0, warmup=c.warmup,
        tracker=make_tracker(cfg), smoother=make_smoother(cfg), classify_every=c.classify_every,
        live_max_hz=c.live_max_hz, frame_queue=frames, face_queue=faces, result_queue=results,
    )
    options.update(kwargs)
    return Pipeline(source, clf, det, **options)


def queue_sizes(cfg: Config, frame_bytes: int) -> tuple[int, int, int]:
    """The frame, face and result queue lengths: the settings' counts, shortened so that all of
    them together hold at most ``queues.max_mb`` of frames (results hold two pictures each:
    the frame and its annotated copy). Each keeps at least 2 so the stages still overlap."""
    q = cfg.queues
    if frame_bytes <= 0:  # a camera not connected yet: its size is unknown
        return q.frames, q.faces, q.results
    budget = q.max_mb * (1 << 20) // frame_bytes  # frames' worth of memory
    wanted = q.frames + q.faces + 2 * q.results * 2  # results and the output queue, two pictures each
    if wanted <= budget:
        return q.frames, q.faces, q.results
    scale = budget / wanted
    return tuple(max(2, int(n * scale)) for n in (q.frames, q.faces, q.results))  # type: ignore[return-value]


def _load_models(cfg: Config, *, detector: bool = True, live: bool = False, webcam: bool = False) -> tuple[Any, Any]:
    clf = make_classifier(cfg, threads=cfg.classifier.threads or auto_threads(live))
    return clf, make_detector(cfg, webcam=webcam) if detector else None


def make_detector(cfg: Config, *, webcam: bool = False, kind: str | None = None) -> Any:
    """The configured detector; ``auto`` resolves by source (``webcam``), ``kind`` overrides the setting."""
    from .detect import make_detector as build, resolve_kind
    from .quality import QualityGate

    d, q = cfg.detector, cfg.quality
    return build(resolve_kind(kind or d.kind, webcam=webcam), short_model=d.model or None, full_model=d.full_model or None,
                 min_confidence=d.min_confidence, full_min_confidence=d.full_min_confidence, margin=d.crop_margin, tile=d.tile_size, overlap=d.tile_overlap,
                 quality=QualityGate(q.min_face_px, q.min_sharpness, q.min_score))


def make_tracker(cfg: Config) -> Any:
    from .track import IoUTracker

    return IoUTracker(cfg.tracking.iou_threshold, cfg.tracking.max_missed)


def make_smoother(cfg: Config) -> Any:
    from .smooth import Smoother

    t = cfg.tracking
    return Smoother(t.smoothing, alpha=t.ema_alpha, window=t.window)


def _want_display(cfg: Config, source: Source) -> bool:
    from .sinks import display_available

    setting = cfg.display.enabled
    if setting == "auto":
        return isinstance(source, WebcamSource) and display_available()
    return bool(setting)


class StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP ask the pipelines to stop (outputs are finalized); a second one aborts.

    Install it on the main thread; runs on other threads register their pipelines with ``watching``.
    """

    def __init__(self, pipelines: list[Any] | None = None) -> None:
        self.pipelines = list(pipelines or [])
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> StopOnSignal:
        # SIGHUP too: a closed terminal or SSH session finalizes the outputs instead of losing them.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)

    @contextmanager
    def watching(self, pipelines: list[Any]) -> Iterator[None]:
        """Stop ``pipelines`` on a signal while the block runs (at once if one came already)."""
        with self._lock:
            self.pipelines.extend(pipelines)
        if self.signum is not None:
            for p in pipelines:
                p.stop()
        try:
            yield
        finally:
            with self._lock:
                for p in pipelines:
                    self.pipelines.remove(p)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        with self._lock:
            pipelines = list(self.pipelines)
        for p in pipelines:
            p.stop()


def _source_ids(cfg: Config) -> list[tuple[str, str]]:
    """``(id, input)`` for every source: ``[[sources]]`` / repeated ``--source``, else ``[source].input``."""
    from .config import valid_id

    if cfg.sources:
        return list(cfg.sources)
    if not cfg.source.input:
        raise SourceError("no source given; use --source 0 for a webcam, --source FILE for a video, or --source rtsp://...")
    sid = cfg.source.id or "cam1"
    if not valid_id(sid):
        raise ConfigError(f"source id '{sid}' must be letters, digits, - and _ (it names files and metrics)")
    return [(sid, cfg.source.input)]


def _open(cfg: Config, sid: str, spec: str) -> Source:
    """A source for ``spec``; network URLs reconnect after outages."""
    from .reconnect import ReconnectingSource
    from .sources import NETWORK_SCHEMES

    s = cfg.source
    if spec.strip().lower().startswith(NETWORK_SCHEMES):
        src = ReconnectingSource(
            spec.strip(), source_id=sid, transport=s.transport, open_timeout=s.open_timeout_s,
            stall_timeout=s.stall_timeout_s, backoff_initial=s.reconnect_initial_s, backoff_max=s.reconnect_max_s,
            max_reconnects=None if s.max_reconnects < 0 else s.max_reconnects, max_pixels=s.max_pixels,
        )
        return src  # connects on its reading thread, once the models are loaded (no stale burst of frames)
    return open_source(spec, live=True if s.live else None, max_pixels=s.max_pixels)


def _output_path(template: str, sid: str, several: bool, what: str) -> str:
    if not template:
        return ""
    if several and "{source}" not in template:
        raise ConfigError(f"with several sources, put {{source}} in the {what} path (e.g. out/{{source}}.mp4) so each camera has its own")
    return template.replace("{source}", sid)


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
        self.error: BaseException | None = None
        self.timeline: Any = None

    def health(self) -> dict[str, Any]:
        if hasattr(self.source, "health"):
            h = self.source.health()
        else:
            h = {"url": self.source.name, "state": "streaming", "frames": self.pipeline.stats.frames_in if self.pipeline else 0}
        if self.error is not None:
            h["state"], h["last_error"] = "failed", str(self.error)
        elif self.pipeline is not None and self.pipeline.stats.source_ended:
            h["state"] = "ended"
        return h

    def state(self) -> dict[str, Any]:
        stats = self.pipeline.stats if self.pipeline is not None else None
        return {
            "dropped": stats.dropped if stats else 0,
            "reconnects": getattr(self.source, "reconnects", 0),
            "failures": getattr(self.source, "attempts", 0),
            "up": self.health().get("state") == "streaming",
            "queues": self.pipeline.queue_depths() if self.pipeline is not None else {},
        }


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
            print(f"fer-stream: error: source {sid}: {error}", file=sys.stderr)
        return 1
    if outcome.signum is not None:
        return 128 + outcome.signum
    return 0


def analyse(cfg: Config, *, classifier: Any = None, detector: Any = None, stopper: StopOnSignal | None = None) -> Outcome:
    """Run every configured source through the pipeline into its outputs and write the summary.

    ``classifier`` and ``detector`` (one source only) reuse models already loaded, as ``batch``
    does across videos; they are not closed here. ``stopper`` is a signal handler installed by the
    caller (runs on other threads); without one, this call installs its own.
    """
    from tqdm import tqdm

    from .live import LiveClassifier
    from .sinks import (DisplaySink, EventSink, SegmentedVideoSink, Tally, VideoSink, check_output, writable_path,
                        write_json)

    specs = _source_ids(cfg)
    several = len(specs) > 1
    out = cfg.output
    paths = {sid: (_output_path(out.video, sid, several, "--output"), _output_path(out.events, sid, several, "--events"))
             for sid, _ in specs}
    people = {sid: (_output_path(out.report, sid, several, "--report"), _output_path(out.timeline, sid, several, "--timeline"))
              for sid, _ in specs}  # the HTML report and the per-second CSV
    inputs = tuple(spec for _, spec in specs)
    segmented = out.segment_seconds > 0
    for path in [p for pair in paths.values() for p in pair] + [p for pair in people.values() for p in pair] + [out.summary]:
        if path:  # before the models load: never the input, never an existing file unless asked
            if segmented and path in (p[0] for p in paths.values()):
                writable_path(path)  # segments get new, time-stamped names
            else:
                check_output(path, inputs=inputs, overwrite=out.overwrite)
    if several and cfg.display.enabled is True:
        raise ConfigError("--display shows one source; run one fer-stream per window, or use --serve for live previews")
    monitor = metrics = None
    with ExitStack() as stack:
        if cfg.serve.address:  # bound first: a bad or busy address fails before anything loads
            from .metrics import Metrics
            from .monitor import Monitor, parse_address

            metrics = Metrics()
            sv = cfg.serve
            monitor = Monitor(*parse_address(sv.address), metrics, token=sv.token or os.environ.get("FER_STREAM_SERVE_TOKEN", ""),
                              max_clients=sv.max_clients, max_viewers=sv.max_viewers)
            stack.callback(monitor.server.server_close)
        streams = [_Stream(sid, stack.enter_context(_open(cfg, sid, spec))) for sid, spec in specs]
        any_live = any(st.source.live for st in streams)
        clf = classifier if classifier is not None else _load_models(cfg, detector=False, live=any_live)[0]
        if detector is not None and not several:
            detectors = [detector]
        else:
            detectors = [make_detector(cfg, webcam=isinstance(st.source, WebcamSource)) for st in streams]  # one per detect thread
            for d in detectors:
                stack.callback(d.close)
        log.info("detector %s", ", ".join(f"{st.sid}: {d.kind}" for st, d in zip(streams, detectors)))
        log.info("classifier %s on %s, labels %s", cfg.classifier.model, clf.device, ", ".join(clf.labels))
        shared = None
        if several:
            shared = LiveClassifier(clf, make_smoother(cfg), max_hz=cfg.classifier.live_max_hz)
            if metrics is not None:
                shared.on_batch = metrics.batch
        for st, detector in zip(streams, detectors):
            src = st.source
            st.tally = Tally()
            st.sinks.append(st.tally)
            video_path, events_path = paths[st.sid]
            if video_path and out.segment_seconds > 0:
                st.video = stack.enter_context(SegmentedVideoSink(
                    out.video, source_id=st.sid, seconds=out.segment_seconds, fps=src.fps or 30.0, crf=out.crf, preset=out.preset))
            elif video_path:
                st.video = stack.enter_context(VideoSink(
                    video_path, width=src.width, height=src.height, fps=src.fps or 30.0,
                    time_base=None if src.live else src.time_base,
                    audio_from=src.audio_path if out.audio else None, crf=out.crf, preset=out.preset,
                ))
            if st.video is not None:
                st.sinks.append(st.video)
            if events_path:
                st.sinks.append(stack.enter_context(EventSink(events_path, source_id=st.sid if several else None)))
            if any(people[st.sid]):
                from .report import TimelineSink

                st.timeline = TimelineSink(clf.labels, bucket_s=out.timeline_seconds, threshold=cfg.classifier.threshold)
                st.sinks.append(st.timeline)
            if not several and _want_display(cfg, src):
                st.window = stack.enter_context(DisplaySink(cfg.display.title))
                st.sinks.append(st.window)
            st.pipeline = make_pipeline(
                cfg, src, clf, detector, warmup=cfg.classifier.warmup and st is streams[0],
                live_classifier=shared if src.live else None, source_id=st.sid, metrics=metrics,
            )
            if monitor is not None:
                st.sinks.append(monitor.add_source(st.sid, st.health))
                metrics.watch(st.sid, st.state)
        if monitor is not None:  # answers once every source is registered
            stack.enter_context(monitor)
            log.warning("serving %s/healthz, /metrics and /sources/<id>/mjpeg", monitor.url)
        bar = None
        if not several:
            src = streams[0].source
            total = None if src.live else src.frame_count
            if cfg.source.max_frames and total:
                total = min(total, cfg.source.max_frames)
            bar = tqdm(
                total=total, unit="frame", disable=not out.progress, dynamic_ncols=True, file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 5.0, desc=Path(src.name).name if not src.live else src.name,
            )
            stack.callback(bar.close)
        pipelines = [st.pipeline for st in streams]
        with (nullcontext(stopper) if stopper is not None else StopOnSignal()) as signals, signals.watching(pipelines):
            with ExitStack() as running:
                results = [running.enter_context(p) for p in pipelines]
                if shared is not None:
                    stop_shared = threading.Event()
                    worker = threading.Thread(target=_run_shared, args=(shared, stop_shared, pipelines), name="fer-classify", daemon=True)
                    worker.start()
                    running.callback(worker.join, 5.0)
                    running.callback(stop_shared.set)
                if several:
                    stop_all = lambda: [p.stop() for p in pipelines]  # noqa: E731
                    threads = [threading.Thread(target=_consume, args=(st, it, None, stop_all), name=f"fer-out-{st.sid}",
                                                daemon=True) for st, it in zip(streams, results)]
                    for t in threads:
                        t.start()
                    while any(t.is_alive() for t in threads):
                        for t in threads:
                            t.join(0.2)
                else:
                    _consume(streams[0], results[0], bar, streams[0].pipeline.stop)
        for st in streams:
            stats = st.pipeline.stats
            if isinstance(st.video, VideoSink) and stats.source_ended and st.tally.frames_out == stats.frames_in:
                st.video.end_of_input()
        if bar is not None:
            bar.close()
        summaries = {st.sid: _summary(cfg, st, clf, signals.signum) for st in streams}
        mixed = shared.mixed_batches if shared is not None else 0
        errors = [(st.sid, st.error) for st in streams if st.error is not None]
    # Sinks are closed (MP4 finalized, log flushed) before the summary says they were written.
    summary = summaries[specs[0][0]] if not several else _combined(summaries, signals.signum)
    if several:
        summary["mixed_batches"] = mixed  # classifier batches holding faces of more than one camera
    if several:
        for st in streams:
            if isinstance(st.video, SegmentedVideoSink):
                summary["sources"][st.sid]["segments"] = [str(p) for p in st.video.closed_segments]
    elif isinstance(streams[0].video, SegmentedVideoSink):
        summary["segments"] = [str(p) for p in streams[0].video.closed_segments]
    for st in streams:
        report_path, timeline_path = people[st.sid]
        if st.timeline is not None:
            from .report import write_report, write_timeline

            if timeline_path:
                write_timeline(timeline_path, st.timeline)
            if report_path:
                write_report(report_path, st.timeline, summaries[st.sid], _report_settings(cfg))
            summaries[st.sid]["outputs"].update({k: v for k, v in (("report", report_path), ("timeline", timeline_path)) if v})
    if out.summary:
        write_json(out.summary, summary)
    return Outcome(summary, errors, signals.signum, several)


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
    from .errors import FerStreamError, SinkError

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
    return {"model": c.model, "device": c.device, "precision": c.precision, "threshold": c.threshold,
            "classify every": c.classify_every, "smoothing": cfg.tracking.smoothing, "detector": d.kind,
            "detector confidence (short / full)": f"{d.min_confidence} / {d.full_min_confidence}",
            "quality minimums (px / sharpness / score)": f"{q.min_face_px} / {q.min_sharpness} / {q.min_score}",
            "timeline bucket": f"{cfg.output.timeline_seconds:g} s"}


def _combined(summaries: dict[str, dict[str, Any]], signum: int | None) -> dict[str, Any]:
    total = {k: sum(s[k] for s in summaries.values()) for k in ("frames_in", "frames_out", "faces", "flagged", "unusable", "dropped", "classified")}
    first = next(iter(summaries.values()))
    return {
        **total,
        "sources": summaries,
        "model": first["model"], "device": first["device"], "precision": first["precision"],
        "elapsed_s": max(s["elapsed_s"] for s in summaries.values()),
        "stopped_by": signal.Signals(signum).name if signum else None,
    }


def _summary(cfg: Config, st: _Stream, clf: Any, signum: int | None) -> dict[str, Any]:
    from .sinks import VideoSink

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
        "outputs": {k: v for k, v in (("video", str(st.video.path) if isinstance(st.video, VideoSink) else ""),
                                      ("events", next((str(x.path) for x in st.sinks if type(x).__name__ == "EventSink"), "")),
                                      ("summary", cfg.output.summary)) if v},
    }
    if hasattr(source, "health"):
        h = source.health()
        out["reconnects"], out["outages"], out["down_s"] = h["reconnects"], h["outages"], h["down_s"]
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
        f"{s['frames_out']} frames out of {s['frames_in']} read in {s['elapsed_s']:.1f} s "
        f"({s['fps']:.1f} fps); {s['faces']} faces in {len(s['tracks'])} tracks, {s['classified']} classified, "
        f"{s['flagged']} flagged, {s['unusable']} unusable; {s['dropped']} dropped"
        + (f"; stopped by {s['stopped_by']}" if s["stopped_by"] else ""),
    ]
    lat = s["latency_s"]
    if lat.get("p50") is not None:
        lines.append(f"latency (capture to output): p50 {lat['p50'] * 1e3:.0f} ms, p95 {lat['p95'] * 1e3:.0f} ms, "
                     f"p99 {lat['p99'] * 1e3:.0f} ms")
    counts = [f"{k} {v}" for k, v in sorted(s["labels"].items(), key=lambda kv: -kv[1]) if v]
    if counts:
        lines.append("labels: " + ", ".join(counts))
    written = [p for p in s["outputs"].values() if Path(p).is_file()]  # only what is really there
    if written:
        lines.append("wrote: " + ", ".join(written))
    if s.get("segments"):
        lines.append(f"segments: {len(s['segments'])} files, {s['segments'][0]} ... {s['segments'][-1]}")
    print("\n".join(lines), flush=True)


def classify_images(cfg: Config, paths: Sequence[str], folder: str | None, *, detect: bool, as_json: bool) -> int:
    """Print the faces and their 7 emotions for each image."""
    import numpy as np

    from .frames import Box, Face
    from .images import IMAGE_SUFFIXES, check_image_file, list_images, read_image

    files = [Path(p) for p in paths]
    if folder:
        found = list_images(folder)
        if not found:
            raise SourceError(f"folder '{folder}' holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        files += found
    if not files:
        raise SourceError("no images given; pass image files or --dir FOLDER")
    for f in files:
        check_image_file(f)  # before the models load
    clf, det = _load_models(cfg, detector=detect)
    if det is None:  # ready-cropped faces: each image is one face, checked for quality like a detected one
        from .quality import QualityGate

        q = cfg.quality
        gate = QualityGate(q.min_face_px, q.min_sharpness, 0.0)
    doc: list[dict[str, Any]] = []
    failed = 0
    try:
        # In chunks: a folder of large photos never sits in memory at once; batches still span images.
        for start in range(0, len(files), IMAGE_CHUNK):
            per_image: list[tuple[Path, list[Face]]] = []
            for f in files[start : start + IMAGE_CHUNK]:
                try:
                    image = read_image(f)
                except SourceError as e:  # one bad image is reported; the others go on
                    failed += 1
                    print(f"fer-stream: warning: skipped {e}", file=sys.stderr)
                    doc.append({"image": str(f), "error": str(e)})
                    continue
                if det is not None:
                    faces = det.detect(image)
                else:
                    box = Box(0, 0, image.shape[1], image.shape[0])
                    faces = [Face(box, 1.0, np.ascontiguousarray(image), quality=gate.assess(image, box, 1.0))]
                per_image.append((f, faces))
                del image
            crops = [face.crop for _, faces in per_image for face in faces if face.usable]
            predictions = iter(clf.predict(crops))
            for f, faces in per_image:
                faces = [face.with_prediction(next(predictions)) if face.usable else face for face in faces]
                if as_json:
                    doc.append({"image": str(f), "faces": [_face_json(face, detect) for face in faces]})
                else:
                    _print_image(f, faces, detect)
    finally:
        if det is not None:
            det.close()
    if as_json:
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0


IMAGE_CHUNK = 16  # images read, detected and classified together


def _print_image(f: Path, faces: list[Any], detect: bool) -> None:
    if not faces:
        print(f"{f}: no face found")
        return
    print(f"{f}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
    for i, face in enumerate(faces, 1):
        p = face.prediction
        b = face.box
        where = f"box x={b.x} y={b.y} w={b.w} h={b.h}" if detect else "whole image"
        if p is None:
            q = face.quality
            print(f"  face {i}: {where}  unusable ({q.reason}: {q.size_px} px, sharpness {q.sharpness:g}, "
                  f"score {q.score:.2f}); not classified")
            continue
        flag = "  (low confidence)" if p.flagged else ""
        print(f"  face {i}: {where}{flag}")
        for label, prob in p.probs:
            print(f"    {label:<10} {prob:6.1%}")


def _face_json(face: Any, detected: bool) -> dict[str, Any]:
    p = face.prediction
    out: dict[str, Any] = {"box": face.box.as_list(), "score": round(face.score, 4) if detected else None}
    if face.quality is not None:
        out["quality"] = face.quality.as_dict()
    if p is None:
        return out
    return {
        **out,
        "label": p.label,
        "confidence": round(p.confidence, 6),
        "flagged": p.flagged,
        "probs": {k: round(v, 6) for k, v in p.probs},
    }


def pull_models(cfg: Config, *, force: bool) -> int:
    """Download both detector models into the cache and the classifier into the Hugging Face cache."""
    from .models import DETECTOR_MODELS, cached_detector_path, download_detector, pull_classifier

    for kind in DETECTOR_MODELS:
        cached = cached_detector_path(kind)
        if force or not cached.is_file():
            t = time.monotonic()
            download_detector(cached, kind=kind)
            print(f"detector ({kind}-range): downloaded to {cached} ({cached.stat().st_size / 1e6:.1f} MB, "
                  f"{time.monotonic() - t:.1f} s)")
        else:
            print(f"detector ({kind}-range): already cached at {cached}")
    folder = pull_classifier(cfg.classifier.model)
    print(f"classifier: {cfg.classifier.model} ready at {folder}")
    return 0
