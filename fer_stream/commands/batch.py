"""``fer-stream batch INPUTS... --out DIR``: a video archive, every video analysed once.

Inputs are video files, folders (searched recursively for videos), glob patterns and text files
listing paths or URLs (one per line, ``#`` comments). Each video gets ``DIR/<name>/`` with
``annotated.mp4``, ``events.jsonl``, ``episodes.jsonl``, ``summary.json``, ``report.html`` and ``timeline.csv``;
``DIR/manifest.jsonl`` records every attempt (see :mod:`fer_stream.io.manifest`). A re-run skips
finished, unchanged videos and runs the rest (new, changed, failed or interrupted ones);
``--retry-failed`` runs only those that failed, ``--force`` runs them all again. An entry of a list
file that does not exist is recorded as failed, and so is a URL that still does not answer after
``source.batch_max_reconnects`` attempts or ``source.batch_max_outage_s`` seconds; the rest runs.
A folder name the manifest gives is used only if it is a plain name of a real folder directly under
``DIR`` (see :func:`make_jobs`).

On one machine, ``--jobs`` videos are decoded, detected and tracked at once, each in its own
pipeline, while one classifier (loaded once) serves them all and fills its batches with faces of
whichever videos have some waiting (:mod:`fer_stream.model.service`). With ``--ray`` the
videos go to a Ray cluster instead (:mod:`fer_stream.analysis.ray`).

>>> run_batch(load_config(), ["talks/"], "out")         # doctest: +SKIP
0
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fer_stream.analysis.archive import Job, VideoProgress, folder_problem, outputs_present
from fer_stream.analysis.local import run_local
from fer_stream.analysis.ray import connect, run_on_ray
from fer_stream.commands.options import model_flags, setting_flags
from fer_stream.config import Config, render, with_settings
from fer_stream.errors import ConfigError, SinkError, SourceError, counted, printable
from fer_stream.io.manifest import DONE, FAILED, STOPPED, Manifest, input_key, legacy_key
from fer_stream.io.sources import redact

log = logging.getLogger("fer_stream")

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".flv", ".wmv", ".3gp")
_GLOB = re.compile(r"[*?\[]")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream batch",
        description="Analyse many videos: each gets OUT/<name>/ with annotated.mp4, events.jsonl, episodes.jsonl, summary.json, "
        "report.html and timeline.csv; OUT/manifest.jsonl records every attempt. A re-run skips finished, "
        "unchanged videos and runs new, changed, failed and interrupted ones.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, folders (searched recursively), glob patterns ('talks/**/*.mp4') or .txt lists of paths/URLs",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created if missing)")
    p.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="videos decoded and detected at once, all feeding one classifier (default 2)"
    )
    p.add_argument("--force", action="store_true", help="run every input again, finished or not")
    p.add_argument("--retry-failed", action="store_true", help="run only the inputs whose last attempt failed")
    p.add_argument("--no-video", dest="video", action="store_false", help="no annotated MP4s (events, summaries and reports only)")
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run on Ray (pip install 'fer-stream[ray]'): auto = a Ray of this machine's own (or the cluster "
        "$RAY_ADDRESS names), or a cluster's HOST:PORT or ray://HOST:10001",
    )
    setting_flags(
        p,
        (
            "source.max_frames",
            "classifier.classify_every",
            "tracking.smoothing",
            "output.timeline_seconds",
            "classifier.batch_wait_ms",
            "classifier.warmup",
            "output.audio",
            "output.crf",
            "output.preset",
            "output.landmarks",
            "output.draw_rejected",
            "output.progress",
            "review.dir",
        ),
    )
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return run_batch(
        cfg, args.inputs, args.out, jobs=args.jobs, force=args.force, retry_failed=args.retry_failed, video=args.video, ray=args.ray
    )


# -- inputs -------------------------------------------------------------------------------------


def expand_inputs(items: Sequence[str], *, exclude: Path | None = None) -> list[str]:
    """Files, folders, globs and list files -> video paths (absolute) and URLs, in order, each once."""
    found: list[str] = []
    for item in items:
        found += _expand(item, depth=0)
    out, seen = [], set()
    for spec in found:
        if "://" not in spec:
            p = Path(spec).resolve()
            if exclude is not None and p.is_relative_to(exclude):
                continue  # never our own outputs
            spec = str(p)
        if spec not in seen:
            seen.add(spec)
            out.append(spec)
    return out


def _expand(item: str, depth: int) -> list[str]:
    """``item``'s inputs; a list file's entry that does not exist stays, to be recorded as failed."""
    text = item.strip()
    if "://" in text:
        return [text]
    p = Path(text).expanduser()
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())
    if p.is_file() and p.suffix.lower() in (".txt", ".list", ".lst"):
        if depth > 0:
            raise ConfigError(f"list file '{p}' names another list file; lists cannot nest")
        out = []
        for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                target = line if "://" in line or Path(line).expanduser().is_absolute() else str(p.parent / line)
                out += _expand(target, depth + 1)
        return out
    if p.is_file():
        return [str(p)]
    if _GLOB.search(text):
        return sorted(
            f for f in glob.glob(os.path.expanduser(text), recursive=True) if Path(f).suffix.lower() in VIDEO_SUFFIXES and Path(f).is_file()
        )
    if depth > 0:
        return [text]  # one missing entry of a list: that entry fails, the others run
    raise SourceError(f"input '{printable(text)}' does not exist; give video files, folders, glob patterns or a .txt list of paths")


def make_jobs(specs: Sequence[str], known: dict[str, dict[str, Any]], out_dir: Path) -> list[Job]:
    """Jobs with their version (size, mtime) and folder name.

    A name the manifest gives an input is kept if it is still a plain folder of its own directly under
    ``out_dir`` (the manifest is a file anyone with access to ``out_dir`` can edit); otherwise the input
    gets a fresh name, with a warning. A file that cannot be read becomes a job with an ``error``.
    """
    taken = {rec["name"] for rec in known.values() if isinstance(rec.get("name"), str)}
    used: set[str] = set()  # this run's folders: never two inputs in one
    jobs = []
    for spec in specs:
        key = input_key(spec)
        url = "://" in spec
        shown = redact(spec) if url else spec
        size = mtime = None
        error = ""
        if not url:
            try:
                st = os.stat(spec)
            except OSError as e:
                error = f"cannot read '{printable(spec)}': {e.strerror}"
            else:
                size, mtime = st.st_size, st.st_mtime_ns
        name = known.get(key, {}).get("name") or ""
        if name:
            problem = folder_problem(out_dir, name) or ("is taken by another input" if name in used else None)
            if problem is not None:
                fresh = _free_name(_base_name(spec, url), key, taken | used, out_dir)
                log.warning(
                    "manifest names the folder '%s' for %s, which %s; running it again in '%s'", printable(str(name)), shown, problem, fresh
                )
                name = fresh
        else:
            name = _free_name(_base_name(spec, url), key, taken | used, out_dir)
        taken.add(name)
        used.add(name)
        jobs.append(Job(spec, key, shown, size, mtime, name, error))
    return jobs


def adopt_legacy_keys(specs: Sequence[str], known: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``known`` with the records of URLs keyed as earlier versions keyed them (on the full URL)
    under their key now, so those inputs resume; their next record has the new key."""
    out = dict(known)
    for spec in specs:
        key, old = input_key(spec), legacy_key(spec)
        if key not in out and old != key and old in out:
            out[key] = {**out[old], "key": key}
    return out


def _base_name(spec: str, url: bool) -> str:
    if url:
        rest = redact(spec).split("://", 1)[1].rsplit("@", 1)[-1]
        base = rest.split("?")[0]
    else:
        base = Path(spec).stem
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "video"
    return base[:80]


def _free_name(base: str, key: str, taken: set[Any], out_dir: Path) -> str:
    """``base``, unless another input has it or a folder of that name exists that the batch did not make."""
    for name in (base, f"{base}-{key[:8]}", f"{base}-{key}"):
        if name not in taken and not os.path.lexists(out_dir / name):  # a dangling link is taken too
            return name
    raise ConfigError(f"cannot name an output folder for '{base}' in {out_dir}; remove stale folders there")


# -- what to run ---------------------------------------------------------------------------------


def settings_hash(cfg: Config, *, video: bool) -> str:
    """What decides the results: every setting except inputs, output paths and interface ones."""
    neutral = with_settings(
        cfg,
        {
            "source.input": "",
            "source.id": "cam1",
            "output.video": "",
            "output.events": "",
            "output.summary": "",
            "output.report": "",
            "output.timeline": "",
            "output.overwrite": False,
            "output.progress": True,
            "source.max_reconnects": -1,
            "source.max_outage_s": 0.0,
            "source.batch_max_reconnects": 3,
            "source.batch_max_outage_s": 60.0,
            "serve.address": "",
            "serve.token": "",
            "display.enabled": "auto",
        },
    )
    text = render(neutral) + f"video={video}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan(
    jobs: list[Job], known: dict[str, dict[str, Any]], out_dir: Path, settings: str, *, force: bool, retry_failed: bool
) -> tuple[list[Job], list[Job]]:
    """(to run, to skip)."""
    todo: list[Job] = []
    skip: list[Job] = []
    for job in jobs:
        rec = known.get(job.key)
        if force:
            todo.append(job)
        elif rec is None or (rec.get("status") == DONE and not _unchanged(job, rec, out_dir, settings)):
            (skip if retry_failed else todo).append(job)  # new or changed
        elif rec.get("status") == DONE:
            skip.append(job)
        else:  # failed or interrupted
            todo.append(job)
    return todo, skip


def _unchanged(job: Job, rec: dict[str, Any], out_dir: Path, settings: str) -> bool:
    """A finished record still true: same file version and settings, in this job's folder, every output there."""
    return (
        rec.get("size") == job.size
        and rec.get("mtime_ns") == job.mtime_ns
        and rec.get("settings") == settings
        and rec.get("name") == job.name
        and outputs_present(out_dir, rec)
    )


# -- the batch -----------------------------------------------------------------------------------


def run_batch(
    cfg: Config,
    inputs: Sequence[str],
    out: str,
    *,
    jobs: int = 2,
    force: bool = False,
    retry_failed: bool = False,
    video: bool = True,
    ray: str | None = None,
) -> int:
    """Analyse every input into ``out``; returns the exit code (1 if any video failed)."""
    if force and retry_failed:
        raise ConfigError("--force runs everything again; --retry-failed only what failed: choose one")
    if jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    out_dir = Path(out).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out '{out}' is a file; give a folder (it is created if missing)")
    specs = expand_inputs(inputs, exclude=out_dir)
    if not specs:
        raise SourceError(f"no videos found in {', '.join(inputs)} (looked for {', '.join(VIDEO_SUFFIXES)})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SinkError(f"cannot create output folder '{out}': {e.strerror}") from None
    manifest = Manifest(out_dir / "manifest.jsonl")
    known = adopt_legacy_keys(specs, manifest.latest())
    all_jobs = make_jobs(specs, known, out_dir)
    settings = settings_hash(cfg, video=video)
    todo, skipped = plan(all_jobs, known, out_dir, settings, force=force, retry_failed=retry_failed)
    where = printable(str(out_dir))
    print(
        f"{counted(len(all_jobs), 'input')}: {len(todo)} to run, {len(skipped)} skipped (finished or not asked for); results in {where}",
        file=sys.stderr,
        flush=True,
    )
    if not todo:
        return _report(manifest, all_jobs, 0.0)
    started = time.monotonic()

    def record(rec: dict[str, Any]) -> None:
        manifest.append({**rec, "settings": settings})

    if ray and any(not job.error for job in todo):
        connect(ray)  # an unreachable cluster is one line, before any bar
    progress = VideoProgress(cfg, len(todo), record)
    try:
        for job in todo:
            if job.error:  # a listed file that is not there: recorded as failed, the others run
                progress.finished(job, job.failed(job.error))
        runnable = [job for job in todo if not job.error]
        if runnable and ray:
            run_on_ray(cfg, runnable, out_dir, ray, video=video, progress=progress)
        elif runnable:
            run_local(cfg, runnable, out_dir, jobs=jobs, video=video, progress=progress)
    finally:
        progress.close()
    return _report(manifest, all_jobs, time.monotonic() - started)


def _report(manifest: Manifest, jobs: list[Job], elapsed: float) -> int:
    """Print the batch's outcome from the manifest; 1 if any input's last attempt failed."""
    latest = adopt_legacy_keys([j.spec for j in jobs], manifest.latest())
    recs = [latest.get(j.key, {}) for j in jobs]
    done = [r for r in recs if r.get("status") == DONE]
    failed = [(j, r) for j, r in zip(jobs, recs) if r.get("status") in (FAILED, STOPPED)]
    faces = sum(r["faces"] for r in done if isinstance(r.get("faces"), int))  # a record is a line anyone could have edited
    line = f"{len(done)} of {counted(len(jobs), 'video')} done, {len(failed)} failed"
    if elapsed:
        line += f"; this run {elapsed:.1f} s"
    print(f"{line}; {counted(faces, 'face')} in all; manifest {printable(str(manifest.path))}", flush=True)
    for job, rec in failed:
        print(f"  failed: {printable(job.shown)}: {printable(str(rec.get('error') or rec.get('status')))}", flush=True)
    return 1 if failed else 0
