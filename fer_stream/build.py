"""Settings -> objects: the classifier, detector, tracker, smoother and pipeline a config describes.

Every command builds its models here, so a setting means the same thing everywhere.

>>> from fer_stream.config import load_config
>>> queue_sizes(load_config(None, {"queues.max_mb": 64}), 1920 * 1080 * 3)
(2, 2, 2)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fer_stream.config import Config
from fer_stream.io.sources import Source
from fer_stream.model.contract import Classifier
from fer_stream.stream.watch import NULL_WATCH, Watch

log = logging.getLogger("fer_stream")

if TYPE_CHECKING:  # the real imports wait until a factory runs: torch, OpenCV and MediaPipe load slowly
    from fer_stream.model.classifier import EmotionClassifier
    from fer_stream.model.detector import Detector
    from fer_stream.serve.metrics import Metrics
    from fer_stream.stream.live import LiveClassifier
    from fer_stream.stream.pipeline import Pipeline
    from fer_stream.stream.smooth import Smoother
    from fer_stream.stream.track import IoUTracker

    _metrics_watch: type[Watch] = Metrics  # the server's metrics are what a pipeline's watch is told


def auto_threads(live: bool) -> int | None:
    """CPU threads for the classifier: live runs leave one core to decoding, detection and output."""
    if not live:
        return None  # torch's default: every core
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def threshold_of(cfg: Config) -> float:
    """The confidence under which answers are flagged: the user's ``classifier.threshold``, or with
    ``auto`` the model's own (its config.json's ``fer_stream.threshold``), else 0.7."""
    from fer_stream.model.calibration import FALLBACK_THRESHOLD, model_calibration

    t = cfg.classifier.threshold
    if t != "auto":
        return float(t)
    own = model_calibration(cfg.classifier.model).threshold
    return FALLBACK_THRESHOLD if own is None else own


def make_classifier(
    cfg: Config,
    *,
    model: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> EmotionClassifier:
    """The classifier the settings describe; keyword arguments override single settings."""
    from fer_stream.model.classifier import EmotionClassifier

    c = cfg.classifier
    return EmotionClassifier(
        model or c.model,
        device or c.device,
        max_batch=c.max_batch,
        threshold=threshold_of(cfg) if model is None else None,  # another model: its own threshold
        precision=precision or c.precision,
        threads=threads,
        fast_preprocess=c.tensor_preprocess,
        backend=backend or c.backend,
        tta=c.tta,
    )


def make_pipeline(
    cfg: Config,
    source: Source,
    classifier: Classifier,
    detector: Detector,
    *,
    shared: LiveClassifier | None = None,
    watch: Watch | None = None,
    source_id: str = "cam",
    warmup: bool | None = None,
    max_frames: int | None = None,
) -> Pipeline:
    """A pipeline in the mode its source asks for (exact for files, live for cameras and ``--live``),
    with the settings' batching, scheduling, tracking, smoothing and queues.

    ``shared``: the live classifier of several cameras, used when the source is live (a file
    keeps its own exact batching). ``watch``: the run's metrics. ``warmup`` and ``max_frames``
    override the settings.
    """
    # Imported here: the pipeline's modules import torch and OpenCV.
    from fer_stream.io.privacy import Privacy
    from fer_stream.stream.modes import pick_mode
    from fer_stream.stream.overlay import Overlay
    from fer_stream.stream.pipeline import Pipeline, QueueSizes

    c, q = cfg.classifier, cfg.queues
    mode = pick_mode(
        bool(source.live),
        classifier,
        smoother=make_smoother(cfg),
        classify_every=c.classify_every,
        batch_wait=c.batch_wait_ms / 1000.0,
        live_max_hz=c.live_max_hz,
        shared=shared,
    )
    return Pipeline(
        source,
        detector,
        mode,
        tracker=make_tracker(cfg),
        overlay=Overlay(draw_rejected=cfg.output.draw_rejected, privacy=Privacy(cfg.output.privacy, cfg.output.face_images)),
        queues=QueueSizes(q.frames, q.faces, q.results, q.max_mb),  # lengths fitted to each frame's size as it comes
        watch=watch if watch is not None else NULL_WATCH,
        max_frames=max_frames if max_frames is not None else cfg.source.max_frames or None,
        source_id=source_id,
        warmup=c.warmup if warmup is None else warmup,
    )


def queue_sizes(cfg: Config, frame_bytes: int) -> tuple[int, int, int]:
    """The frame, face and result queue lengths for frames of ``frame_bytes``: the settings'
    counts, shortened to hold at most ``queues.max_mb`` of frames (see ``fit_queues``; the
    pipeline fits them again whenever the frame size changes)."""
    from fer_stream.stream.pipeline import fit_queues

    q = cfg.queues
    return fit_queues((q.frames, q.faces, q.results), frame_bytes, q.max_mb)


def load_models(
    cfg: Config, *, detector: bool = True, live: bool = False, webcam: bool = False, follow: bool = True
) -> tuple[EmotionClassifier, Detector | None]:
    """The classifier (threads for a live run) and, unless ``detector`` is false, the detector
    (``follow``: false for unrelated images); the detector's model files are found first (the
    classifier takes seconds to load)."""
    if detector:
        check_detector_files(cfg, webcams=(webcam,))
    clf = make_classifier(cfg, threads=cfg.classifier.threads or auto_threads(live))
    return clf, make_detector(cfg, webcam=webcam, follow=follow) if detector else None


def check_detector_files(cfg: Config, *, webcams: Iterable[bool] = (False,)) -> None:
    """Every model file the configured detector needs (for sources that are or are not webcams) is
    found, or downloaded, now: all the missing ones are named in one error, before anything slow loads."""
    from fer_stream.model.detector import MODEL_FILES, resolve_kind
    from fer_stream.model.detector_files import resolve_detector_models

    d = cfg.detector
    kinds = {f for webcam in set(webcams) for f in MODEL_FILES.get(resolve_kind(d.kind, webcam=webcam), ())}
    if verifies(cfg):
        kinds.add("landmark")
    explicit = {"short": d.model or None, "full": d.full_model or None, "landmark": d.landmark_model or None}
    resolve_detector_models({k: explicit[k] for k in ("short", "full", "landmark") if k in kinds})


def verifies(cfg: Config) -> bool:
    """Whether the face landmark model checks the boxes: ``detector.verify``, where LiteRT is
    installed (on Windows it is not: the detector's boxes are used as they are, said once in the log)."""
    from fer_stream.model.detector import litert_available

    if not cfg.detector.verify:
        return False
    if litert_available():
        return True
    if not _warned_no_litert:
        _warned_no_litert.append(True)
        log.warning("LiteRT (ai-edge-litert) is not installed: boxes are not verified by the face landmark model")
    return False


_warned_no_litert: list[bool] = []


def make_detector(
    cfg: Config, *, webcam: bool = False, kind: str | None = None, verify: bool | None = None, follow: bool = True
) -> Detector:
    """The configured detector; ``auto`` resolves by source (``webcam``), ``kind`` and ``verify``
    override the settings. With ``detector.verify`` (the default) the face landmark model checks
    every box and, with ``follow``, follows faces from frame to frame (false: unrelated images)."""
    from fer_stream.model.detector import make_detector as build
    from fer_stream.model.detector import resolve_kind
    from fer_stream.model.quality import QualityGate

    d, q = cfg.detector, cfg.quality
    verify = verifies(cfg) if verify is None else verify
    gate = QualityGate(q.min_face_px, q.min_sharpness, q.min_score, q.max_yaw)
    base = build(
        resolve_kind(kind or d.kind, webcam=webcam),
        short_model=d.model or None,
        full_model=d.full_model or None,
        min_confidence=d.min_confidence,
        full_min_confidence=d.full_min_confidence,
        margin=d.crop_margin,
        tile=d.tile_size,
        overlap=d.tile_overlap,
        quality=gate,
        verify_below=0.0 if verify else 0.25,  # the landmark model checks every box instead
        threads=d.threads,
    )
    if not verify:
        return base
    from fer_stream.model.detector_files import resolve_landmark_model
    from fer_stream.model.landmarks import FaceLandmarker
    from fer_stream.model.mesh import MeshDetector

    try:
        landmarker = FaceLandmarker(resolve_landmark_model(d.landmark_model or None), threads=d.threads)
    except BaseException:
        base.close()
        raise
    return MeshDetector(
        base,
        landmarker,
        min_presence=d.min_presence,
        rescan_every=d.rescan_every,
        follow=follow,
        align=d.align,
        margin=d.crop_margin,
        quality=gate,
    )


def make_tracker(cfg: Config) -> IoUTracker:
    from fer_stream.stream.track import IoUTracker

    return IoUTracker(cfg.tracking.iou_threshold, cfg.tracking.max_missed)


def make_smoother(cfg: Config) -> Smoother:
    from fer_stream.stream.smooth import Smoother

    t = cfg.tracking
    return Smoother(t.smoothing, alpha=t.ema_alpha, window=t.window)
