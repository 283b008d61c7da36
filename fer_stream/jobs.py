"""The command line's jobs, wired from settings: analyse a stream, classify still images, pull models."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import Any, Sequence

from .config import Config
from .errors import SourceError
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


def _load_models(cfg: Config, *, detector: bool = True, live: bool = False) -> tuple[Any, Any]:
    from .classify import EmotionClassifier
    from .detect import FaceDetector

    c = cfg.classifier
    clf = EmotionClassifier(
        c.model, c.device, max_batch=c.max_batch, threshold=c.threshold, precision=c.precision,
        threads=c.threads or auto_threads(live), fast_preprocess=c.tensor_preprocess,
    )
    det = None
    if detector:
        d = cfg.detector
        det = FaceDetector(d.model or None, min_confidence=d.min_confidence, margin=d.crop_margin)
    return clf, det


def make_tracker(cfg: Config) -> Any:
    from .track import IoUTracker

    return IoUTracker(cfg.tracking.iou_threshold, cfg.tracking.max_missed)


def make_smoother(cfg: Config) -> Any:
    from .smooth import Smoother

    t = cfg.tracking
    return Smoother(t.smoothing, alpha=t.ema_alpha, window=t.window)


def _check_output_paths(cfg: Config) -> None:
    """Fail before the models load if an output cannot be created."""
    from .sinks import writable_path

    for path in (cfg.output.video, cfg.output.events, cfg.output.summary):
        if path:
            writable_path(path)


def _want_display(cfg: Config, source: Source) -> bool:
    from .sinks import display_available

    setting = cfg.display.enabled
    if setting == "auto":
        return isinstance(source, WebcamSource) and display_available()
    return bool(setting)


class _StopOnSignal:
    """SIGINT/SIGTERM ask the pipeline to stop (outputs are finalized); a second one aborts."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.pipeline.stop()


def run_stream(cfg: Config) -> int:
    """Analyse ``cfg.source.input`` end to end; returns the process exit code."""
    from tqdm import tqdm

    from .pipeline import Pipeline
    from .sinks import DisplaySink, EventSink, Tally, VideoSink, write_json

    if not cfg.source.input:
        raise SourceError("no source given; use --source 0 for a webcam, --source FILE for a video, or --source rtsp://...")
    _check_output_paths(cfg)
    out = cfg.output
    with ExitStack() as stack:
        source = stack.enter_context(open_source(cfg.source.input, live=True if cfg.source.live else None))
        display = _want_display(cfg, source)
        clf, det = _load_models(cfg, live=source.live)
        stack.callback(det.close)
        log.info("classifier %s on %s, labels %s", cfg.classifier.model, clf.device, ", ".join(clf.labels))

        sinks: list[Any] = []
        tally = Tally()
        sinks.append(tally)
        video = None
        if out.video:
            video = stack.enter_context(VideoSink(
                out.video, width=source.width, height=source.height, fps=source.fps,
                time_base=None if source.live else source.time_base,
                audio_from=source.audio_path if out.audio else None, crf=out.crf, preset=out.preset,
            ))
            sinks.append(video)
        if out.events:
            sinks.append(stack.enter_context(EventSink(out.events)))
        window = stack.enter_context(DisplaySink(cfg.display.title)) if display else None
        if window is not None:
            sinks.append(window)

        pipeline = Pipeline(
            source, clf, det,
            max_frames=cfg.source.max_frames or None,
            batch_wait=cfg.classifier.batch_wait_ms / 1000.0,
            warmup=cfg.classifier.warmup,
            tracker=make_tracker(cfg), smoother=make_smoother(cfg),
            classify_every=cfg.classifier.classify_every, live_max_hz=cfg.classifier.live_max_hz,
            frame_queue=cfg.queues.frames, face_queue=cfg.queues.faces, result_queue=cfg.queues.results,
        )
        total = None if source.live else source.frame_count
        if cfg.source.max_frames and total:
            total = min(total, cfg.source.max_frames)
        bar = tqdm(
            total=total, unit="frame", disable=not out.progress, dynamic_ncols=True, file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 5.0, desc=Path(source.name).name if not source.live else source.name,
        )
        stack.callback(bar.close)
        with _StopOnSignal(pipeline) as stopper, pipeline as results:
            for result in results:
                for sink in sinks:
                    sink.write(result)
                bar.update(1)
                if tally.frames_out % 10 == 0:
                    bar.set_postfix(faces=tally.faces, flagged=tally.flagged, refresh=False)
                if window is not None and window.quit:
                    pipeline.stop()
        stats = pipeline.stats
        if video is not None and stats.source_ended and tally.frames_out == stats.frames_in:
            video.end_of_input()
        bar.close()
        summary = _summary(cfg, source, clf, tally, stats, stopper.signum)
    # Sinks are closed (MP4 finalized, log flushed) before the summary says they were written.
    if out.summary:
        write_json(out.summary, summary)
    _print_summary(summary)
    if stopper.signum is not None:
        return 128 + stopper.signum
    return 0


def _summary(cfg: Config, source: Source, clf: Any, tally: Any, stats: Any, signum: int | None) -> dict[str, Any]:
    elapsed = max(stats.elapsed_s, 1e-9)
    return {
        "source": source.name,
        "live": source.live,
        "model": cfg.classifier.model,
        "device": str(clf.device),
        "precision": clf.precision,
        "frames_in": stats.frames_in,
        "frames_out": tally.frames_out,
        "faces": tally.faces,
        "flagged": tally.flagged,
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
        "threshold": cfg.classifier.threshold,
        "stopped_by": signal.Signals(signum).name if signum else None,
        "outputs": {k: v for k, v in (("video", cfg.output.video), ("events", cfg.output.events),
                                      ("summary", cfg.output.summary)) if v},
    }


def _print_summary(s: dict[str, Any]) -> None:
    lines = [
        f"{s['frames_out']} frames out of {s['frames_in']} read in {s['elapsed_s']:.1f} s "
        f"({s['fps']:.1f} fps); {s['faces']} faces in {len(s['tracks'])} tracks, {s['classified']} classified, "
        f"{s['flagged']} flagged; {s['dropped']} dropped"
        + (f"; stopped by {s['stopped_by']}" if s["stopped_by"] else ""),
    ]
    lat = s["latency_s"]
    if lat.get("p50") is not None:
        lines.append(f"latency (capture to output): p50 {lat['p50'] * 1e3:.0f} ms, p95 {lat['p95'] * 1e3:.0f} ms, "
                     f"p99 {lat['p99'] * 1e3:.0f} ms")
    counts = [f"{k} {v}" for k, v in sorted(s["labels"].items(), key=lambda kv: -kv[1]) if v]
    if counts:
        lines.append("labels: " + ", ".join(counts))
    if s["outputs"]:
        lines.append("wrote: " + ", ".join(s["outputs"].values()))
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
    try:
        per_image: list[tuple[Path, list[Face]]] = []
        for f in files:
            image = read_image(f)
            if det is not None:
                faces = det.detect(image)
            else:
                faces = [Face(Box(0, 0, image.shape[1], image.shape[0]), 1.0, np.ascontiguousarray(image))]
            per_image.append((f, faces))
        crops = [face.crop for _, faces in per_image for face in faces]
        predictions = iter(clf.predict(crops))  # one pass, full batches across images
        results = [(f, [face.with_prediction(next(predictions)) for face in faces]) for f, faces in per_image]
    finally:
        if det is not None:
            det.close()
    if as_json:
        doc = [{"image": str(f), "faces": [_face_json(face, detect) for face in faces]} for f, faces in results]
        print(json.dumps(doc, indent=2))
        return 0
    for f, faces in results:
        if not faces:
            print(f"{f}: no face found")
            continue
        print(f"{f}: {len(faces)} face{'s' if len(faces) != 1 else ''}")
        for i, face in enumerate(faces, 1):
            p = face.prediction
            b = face.box
            where = f"box x={b.x} y={b.y} w={b.w} h={b.h}" if detect else "whole image"
            flag = "  (low confidence)" if p.flagged else ""
            print(f"  face {i}: {where}{flag}")
            for label, prob in p.probs:
                print(f"    {label:<10} {prob:6.1%}")
    return 0


def _face_json(face: Any, detected: bool) -> dict[str, Any]:
    p = face.prediction
    return {
        "box": face.box.as_list(),
        "score": round(face.score, 4) if detected else None,
        "label": p.label,
        "confidence": round(p.confidence, 6),
        "flagged": p.flagged,
        "probs": {k: round(v, 6) for k, v in p.probs},
    }


def pull_models(cfg: Config, *, force: bool) -> int:
    """Download the detector into the cache and the classifier into the Hugging Face cache."""
    from .models import cached_detector_path, download_detector, pull_classifier

    cached = cached_detector_path()
    if force or not cached.is_file():
        t = time.monotonic()
        download_detector(cached)
        print(f"detector: downloaded to {cached} ({cached.stat().st_size / 1e6:.1f} MB, {time.monotonic() - t:.1f} s)")
    else:
        print(f"detector: already cached at {cached}")
    folder = pull_classifier(cfg.classifier.model)
    print(f"classifier: {cfg.classifier.model} ready at {folder}")
    return 0
