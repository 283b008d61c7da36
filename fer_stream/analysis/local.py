"""``fer-stream batch`` on this machine: several videos at once, each in its own pipeline (decoding,
detection and tracking on its thread), all feeding one classifier loaded once, which fills its
batches with faces of whichever videos have some waiting (:mod:`fer_stream.model.service`)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from fer_stream.analysis.archive import Job, VideoProgress, analyse_video
from fer_stream.analysis.signals import StopOnSignal
from fer_stream.build import check_detector_files, make_classifier, make_detector
from fer_stream.config import Config
from fer_stream.errors import SinkError

if TYPE_CHECKING:  # cv2 at its top
    from fer_stream.model.detector import Detector

log = logging.getLogger("fer_stream")


def run_local(cfg: Config, todo: list[Job], out_dir: Path, *, jobs: int, video: bool, progress: VideoProgress) -> None:
    """Every job into ``out_dir/<name>/``, ``jobs`` at once; records through ``progress``.

    An output failing (disk full) stops the batch with its error; a signal stops it as an interrupt.
    """
    from fer_stream.model.service import ClassifierService  # torch at its top

    check_detector_files(cfg)  # every missing model file in one line, before the classifier loads
    clf = make_classifier(cfg, threads=cfg.classifier.threads or None)
    log.info("classifier %s on %s, labels %s", cfg.classifier.model, clf.device, ", ".join(clf.labels))
    if cfg.classifier.warmup:
        clf.warmup()
    workers = min(jobs, len(todo))
    pending: queue.Queue[Job] = queue.Queue()
    for job in todo:
        pending.put(job)
    fatal: list[BaseException] = []
    service = ClassifierService(clf)
    with ExitStack() as stack:
        detectors: list[Detector] = [stack.enter_context(make_detector(cfg)) for _ in range(workers)]  # one per worker, loaded here
        stack.enter_context(service)
        signals = stack.enter_context(StopOnSignal())

        def work(detector: Detector) -> None:
            client = service.client()
            while not fatal and signals.signum is None:
                try:
                    job = pending.get_nowait()
                except queue.Empty:
                    return
                folder = out_dir / job.name
                bar = progress.started(job)
                try:
                    rec = analyse_video(cfg, job, folder, video=video, classifier=client, detector=detector, stopper=signals, bar=bar)
                except SinkError as e:
                    fatal.append(e)
                    progress.finished(job, job.failed(str(e)))
                    for p in list(signals.pipelines):
                        p.stop()
                    return
                except Exception as e:  # a bug on one video: recorded, the others go on
                    log.debug("video %s", job.shown, exc_info=True)
                    rec = job.failed(f"internal error: {type(e).__name__}: {e}")
                progress.finished(job, rec)

        threads = [
            threading.Thread(target=_guarded, args=(lambda d=d: work(d), fatal), name=f"fer-batch-{i}", daemon=True)
            for i, d in enumerate(detectors)
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
    log.info(
        "classifier batches %s, %d mixed across videos, model busy %.1f s", dict(service.batch_sizes), service.mixed_batches, service.busy_s
    )
    if fatal:
        raise fatal[0]
    if signals.signum is not None:
        raise KeyboardInterrupt


def _guarded(work: Callable[[], None], fatal: list[BaseException]) -> None:
    try:
        work()
    except BaseException as e:  # e.g. the detector failing to load: the batch ends with its error
        fatal.append(e)
