"""One video of an archive: what identifies it, where its outputs go, and its run.

Shared by ``fer-stream batch`` on one machine (:mod:`fer_stream.analysis.local`) and on Ray
(:mod:`fer_stream.analysis.ray`): :func:`analyse_video` runs one video into its folder with models
already loaded and returns the manifest record of the attempt.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from fer_stream.analysis.run import analyse
from fer_stream.analysis.signals import StopOnSignal
from fer_stream.analysis.streams import FrameBar
from fer_stream.analysis.summary import SourceSummary
from fer_stream.config import Config, with_settings
from fer_stream.errors import FerStreamError, SinkError, printable
from fer_stream.io.manifest import DONE, FAILED, STOPPED
from fer_stream.model.contract import Classifier

if TYPE_CHECKING:  # cv2 at its top
    from fer_stream.model.detector import Detector

OUTPUTS = {
    "video": "annotated.mp4",
    "events": "events.jsonl",
    "episodes": "episodes.jsonl",
    "summary": "summary.json",
    "report": "report.html",
    "timeline": "timeline.csv",
}  # what each video's folder holds
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")


def plain_name(name: object) -> bool:
    """A folder name the batch may use under ``--out``: letters, digits, ``.``, ``_`` and ``-``, not ``.`` or ``..``

    >>> [plain_name(n) for n in ("talk-1.mp4", "../victim", "/etc", "..", "a/b")]
    [True, False, False, False, False]
    """
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name) is not None and name not in (".", "..")


def folder_problem(out_dir: Path, name: object) -> str | None:
    """Why ``out_dir/name`` may not hold a video's outputs (None: it may): the name must be plain, and
    the folder, if it exists, a real folder directly under ``out_dir``, not a link to somewhere else."""
    if not plain_name(name):
        return "is not a plain name"
    folder = out_dir / str(name)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if folder.resolve().parent != out_dir.resolve():
        return "is not directly under --out"
    return None


def outputs_present(out_dir: Path, rec: dict[str, Any]) -> bool:
    """Whether every output a manifest record lists is a file in its own folder (none listed: no)."""
    name, outputs = rec.get("name"), rec.get("outputs")
    if not isinstance(outputs, dict) or not outputs or folder_problem(out_dir, name) is not None:
        return False
    for kind, path in outputs.items():
        if OUTPUTS.get(kind) is None or path != f"{name}/{OUTPUTS[kind]}":
            return False
        try:
            if not stat.S_ISREG(os.lstat(out_dir / str(name) / OUTPUTS[kind]).st_mode):
                return False
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class Job:
    """One input of the batch, with what identifies its current version."""

    spec: str  # path (absolute) or URL, as opened
    key: str
    shown: str  # for people: the path, or the URL without its password
    size: int | None = None
    mtime_ns: int | None = None
    name: str = ""  # its folder under DIR
    error: str = ""  # why it cannot be run at all (a listed file that does not exist): recorded as failed

    def identity(self) -> dict[str, Any]:
        """The manifest fields that say which input, and which version of it, a record is about."""
        return {"input": self.shown, "key": self.key, "name": self.name, "size": self.size, "mtime_ns": self.mtime_ns}

    def failed(self, error: str) -> dict[str, Any]:
        """The manifest record of an attempt that failed with ``error``."""
        return {**self.identity(), "status": FAILED, "finished": now(), "error": error}


def video_config(cfg: Config, job: Job, folder: Path, *, video: bool) -> Config:
    """The settings of one video's run: its input, its folder's outputs, no progress bar or server,
    and a URL that does not answer given up after the batch's reconnect budget (never waited on for ever)."""
    s = cfg.source
    one = with_settings(
        cfg,
        {
            "source.input": job.spec,
            "source.id": "cam1",
            "source.live": False,
            "source.max_reconnects": s.batch_max_reconnects,
            "source.max_outage_s": s.batch_max_outage_s,
            "output.video": str(folder / OUTPUTS["video"]) if video else "",
            "output.events": str(folder / OUTPUTS["events"]),
            "output.episodes": str(folder / OUTPUTS["episodes"]),
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


def prepare_folder(folder: Path) -> str | None:
    """Make ``folder`` (its parent exists) ready for a video's outputs, with an older attempt's files
    removed; returns why it cannot be used (a link planted there, a file), else None."""
    problem = folder_problem(folder.parent, folder.name)
    if problem is None:
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            return f"cannot create the output folder '{printable(str(folder))}': {e.strerror}"
        problem = folder_problem(folder.parent, folder.name)  # as it is now, created
    if problem is not None:
        return f"the output folder '{printable(str(folder))}' {problem}; nothing was written there"
    try:
        remove_outputs(folder)  # a re-run never leaves an older attempt's file looking like this one's
    except OSError as e:
        return f"cannot remove the earlier outputs in '{printable(str(folder))}': {e.strerror}"
    return None


def analyse_video(
    cfg: Config,
    job: Job,
    folder: Path,
    *,
    video: bool,
    classifier: Classifier,
    detector: Detector,
    stopper: StopOnSignal | None = None,
    bar: FrameBar | None = None,
) -> dict[str, Any]:
    """Run one video into ``folder``; returns its manifest record (status done, failed or stopped).

    ``bar`` (tqdm-like) counts its frames.
    """
    started = time.time()
    record = job.identity()
    problem = prepare_folder(folder)
    if problem is not None:
        return job.failed(problem)
    try:
        outcome = analyse(video_config(cfg, job, folder, video=video), classifier=classifier, detector=detector, stopper=stopper, bar=bar)
    except SinkError:
        raise  # an output failing (disk full) stops the batch
    except FerStreamError as e:
        return {**record, "status": FAILED, "error": str(e), "elapsed_s": round(time.time() - started, 3), "finished": now()}
    s = outcome.summary
    assert isinstance(s, SourceSummary)  # one source per video (video_config)
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
        "frames": s.frames_out,
        "faces": s.faces,
        "classified": s.classified,
        "flagged": s.flagged,
        "unusable": s.unusable,
        "rejected": s.rejected,
        "tracks": len(s.tracks),
        "labels": {k: v for k, v in s.labels.items() if v},
        "elapsed_s": round(time.time() - started, 3),
        "finished": now(),
    }


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def remove_outputs(folder: Path) -> None:
    """Delete the batch's own files in ``folder`` (before a video runs again); nothing else there.

    Never through a link: a ``folder`` that is a link is left alone, and a link named like an output
    is removed itself, not what it points to.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:  # missing, a link, not a folder: nothing of ours to remove
        return
    try:
        for name in OUTPUTS.values():
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)


class VideoProgress:
    """A batch's progress and records: each finished video's record goes to ``record`` (the manifest)
    and a failure gets a warning line; one bar counts videos and faces, and one bar per running video
    its frames. Safe to call from worker threads.

    On a terminal the frame bars stand below the video bar and vanish when their video ends; in a log
    (stderr not a terminal) each video's bar ends in one line with its frame count.
    """

    def __init__(self, cfg: Config, total: int, record: Callable[[dict[str, Any]], None]) -> None:
        self._record = record
        self._lock = threading.Lock()
        self._enabled = cfg.output.progress
        self._tty = sys.stderr.isatty()
        self._frames: dict[str, tqdm] = {}  # job key -> its frame bar
        self.faces = 0
        self.bar = tqdm(
            total=total,
            unit="video",
            desc="videos",
            disable=not self._enabled,
            dynamic_ncols=True,
            file=sys.stderr,
            mininterval=0.5 if self._tty else 10.0,
        )

    def started(self, job: Job, total: int | None = None) -> tqdm:
        """The frame bar of ``job``, made when it starts (tqdm: ``update``, ``reset(total)``)."""
        with self._lock:
            bar = self._frames.get(job.key)
            if bar is None:
                bar = self._frames[job.key] = tqdm(
                    total=total,
                    unit="frame",
                    desc=printable(job.name)[:40],
                    disable=not self._enabled,
                    dynamic_ncols=True,
                    file=sys.stderr,
                    leave=not self._tty,  # a log keeps each video's last count; a terminal its video bar
                    position=None if self._tty else 0,  # moving the cursor to stack bars works on terminals only
                    mininterval=0.5 if self._tty else 10.0,
                )
            return bar

    def frames(self, job: Job, done: int, total: int | None) -> None:
        """Set ``job``'s frame count (for bars updated from elsewhere, as Ray's tasks are)."""
        bar = self.started(job, total)
        with self._lock:
            if total is not None and bar.total != total:
                bar.total = total
            if done > bar.n:
                bar.update(done - bar.n)

    def finished(self, job: Job, rec: dict[str, Any]) -> None:
        with self._lock:
            self._record(rec)
            bar = self._frames.pop(job.key, None)
            if bar is not None:
                if rec.get("frames") and rec["frames"] > bar.n:
                    bar.update(rec["frames"] - bar.n)
                bar.close()
            if rec["status"] == FAILED:
                tqdm.write(f"fer-stream: warning: {printable(job.shown)}: {printable(str(rec['error']))}", file=sys.stderr)
            self.faces += int(rec.get("faces") or 0)
            self.bar.update(1)
            self.bar.set_postfix(faces=self.faces, refresh=False)

    def close(self) -> None:
        with self._lock:
            for bar in self._frames.values():
                bar.close()
            self._frames.clear()
        self.bar.close()
