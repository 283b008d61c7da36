"""One video of an archive: what identifies it, where its outputs go, and its run.

Shared by ``fer-stream batch`` on one machine (:mod:`fer_stream.commands.batch`) and on Ray
(:mod:`fer_stream.commands.cluster`): :func:`analyse_video` runs one video into its folder with models
already loaded and returns the manifest record of the attempt.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fer_stream.commands.run import analyse
from fer_stream.config import Config, with_settings
from fer_stream.errors import FerStreamError, SinkError
from fer_stream.io.manifest import DONE, FAILED, STOPPED

OUTPUTS = {
    "video": "annotated.mp4",
    "events": "events.jsonl",
    "summary": "summary.json",
    "report": "report.html",
    "timeline": "timeline.csv",
}  # what each video's folder holds


@dataclass(frozen=True)
class Job:
    """One input of the batch, with what identifies its current version."""

    spec: str  # path (absolute) or URL, as opened
    key: str
    shown: str  # for people: the path, or the URL without its password
    size: int | None = None
    mtime_ns: int | None = None
    name: str = ""  # its folder under DIR

    def identity(self) -> dict[str, Any]:
        """The manifest fields that say which input, and which version of it, a record is about."""
        return {"input": self.shown, "key": self.key, "name": self.name, "size": self.size, "mtime_ns": self.mtime_ns}

    def failed(self, error: str) -> dict[str, Any]:
        """The manifest record of an attempt that failed with ``error``."""
        return {**self.identity(), "status": FAILED, "finished": now(), "error": error}


def video_config(cfg: Config, job: Job, folder: Path, *, video: bool) -> Config:
    """The settings of one video's run: its input, its folder's outputs, no progress bar or server."""
    one = with_settings(
        cfg,
        {
            "source.input": job.spec,
            "source.id": "cam1",
            "source.live": False,
            "output.video": str(folder / OUTPUTS["video"]) if video else "",
            "output.events": str(folder / OUTPUTS["events"]),
            "output.summary": str(folder / OUTPUTS["summary"]),
            "output.report": str(folder / OUTPUTS["report"]),
            "output.timeline": str(folder / OUTPUTS["timeline"]),
            "output.overwrite": True,  # the folder is the batch's own (the manifest names it)
            "output.progress": False,
            "output.segment_seconds": 0.0,
            "serve.address": "",
            "display.enabled": False,
        },
    )
    return dataclasses.replace(one, sources=())


def analyse_video(
    cfg: Config, job: Job, folder: Path, *, video: bool, classifier: Any, detector: Any, stopper: Any = None
) -> dict[str, Any]:
    """Run one video into ``folder``; returns its manifest record (status done, failed or stopped)."""
    started = time.time()
    record = job.identity()
    remove_outputs(folder)  # a re-run never leaves an older attempt's file looking like this one's
    folder.mkdir(parents=True, exist_ok=True)
    try:
        outcome = analyse(video_config(cfg, job, folder, video=video), classifier=classifier, detector=detector, stopper=stopper)
    except SinkError:
        raise  # an output failing (disk full) stops the batch
    except FerStreamError as e:
        return {**record, "status": FAILED, "error": str(e), "elapsed_s": round(time.time() - started, 3), "finished": now()}
    s = outcome.summary
    error = str(outcome.errors[0][1]) if outcome.errors else None
    if outcome.errors and isinstance(outcome.errors[0][1], SinkError):
        raise outcome.errors[0][1]
    status = FAILED if error else STOPPED if outcome.signum is not None else DONE
    outputs = {k: f"{job.name}/{name}" for k, name in OUTPUTS.items() if (folder / name).is_file()}
    return {
        **record,
        "status": status,
        "error": error,
        "outputs": outputs,
        "frames": s["frames_out"],
        "faces": s["faces"],
        "classified": s["classified"],
        "flagged": s["flagged"],
        "unusable": s["unusable"],
        "tracks": len(s["tracks"]),
        "labels": {k: v for k, v in s["labels"].items() if v},
        "elapsed_s": round(time.time() - started, 3),
        "finished": now(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def remove_outputs(folder: Path) -> None:
    """Delete the batch's own files in ``folder`` (before a video runs again); nothing else there."""
    for name in OUTPUTS.values():
        (folder / name).unlink(missing_ok=True)


class VideoProgress:
    """A batch's records as they finish: each goes to ``record`` (the manifest), a failure gets a
    warning line, and one progress bar counts videos and faces. Safe to call from worker threads."""

    def __init__(self, cfg: Config, total: int, record: Callable[[dict[str, Any]], None]) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._record = record
        self._lock = threading.Lock()
        self.faces = 0
        self.bar = tqdm(
            total=total,
            unit="video",
            disable=not cfg.output.progress,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 10.0,
        )

    def started(self, job: Job) -> None:
        self.bar.set_description_str(job.name[:30], refresh=False)

    def finished(self, job: Job, rec: dict[str, Any]) -> None:
        with self._lock:
            self._record(rec)
            if rec["status"] == FAILED:
                self._tqdm.write(f"fer-stream: warning: {job.shown}: {rec['error']}", file=sys.stderr)
            self.faces += int(rec.get("faces") or 0)
            self.bar.update(1)
            self.bar.set_postfix(faces=self.faces, refresh=False)

    def close(self) -> None:
        self.bar.close()
