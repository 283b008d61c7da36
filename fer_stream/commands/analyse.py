"""``fer-stream --source ...``, the default command: analyse one or several sources into their
outputs (:func:`fer_stream.analysis.run.analyse`), print the summary, exit with the outcome."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fer_stream import __version__
from fer_stream.commands.options import model_flags, setting_flags
from fer_stream.config import Config
from fer_stream.errors import counted, printable

__all__ = ["handle", "parser", "print_summary", "run_stream"]  # and `analyse` (below), for the old path fer_stream.jobs


def __getattr__(name: str) -> object:
    if name == "analyse":  # the old path's name, from the engine, loaded only when asked for
        from fer_stream.analysis.run import analyse

        return analyse
    raise AttributeError(name)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream",
        description="Real-time facial-expression analysis of a webcam, video file or camera stream.",
        epilog="other commands: fer-stream image --help | fer-stream bench --help | fer-stream parity --help | "
        "fer-stream batch --help | fer-stream fleet --help | fer-stream eval --help | fer-stream export --help | fer-stream train --help | "
        "fer-stream models pull --help | "
        "fer-stream config --help",
    )
    p.add_argument("--version", action="version", version=f"fer-stream {__version__}")
    p.add_argument(
        "--source",
        metavar="[ID=]SRC",
        action="append",
        help="webcam index (0), video file, or URL (rtsp://...); repeat for several cameras, optionally named: --source door=rtsp://...",
    )
    setting_flags(
        p,
        (
            "serve.address",
            "serve.token",
            "output.segment_seconds",
            "source.max_reconnects",
            "source.stall_timeout_s",
            "source.transport",
            "output.video",
            "output.events",
            "output.summary",
            "output.episodes",
            "output.privacy",
            "output.face_images",
            "publish.mqtt",
            "publish.mqtt_discovery",
            "publish.webhook",
            "publish.webhook_secret",
            "output.report",
            "output.timeline",
            "output.timeline_seconds",
            "output.overwrite",
            "source.max_frames",
            "source.max_pixels",
            "source.live",
            "classifier.classify_every",
            "classifier.live_max_hz",
            "tracking.smoothing",
            "display.enabled",
            "output.progress",
            "classifier.batch_wait_ms",
            "classifier.warmup",
            "output.audio",
            "output.crf",
            "output.preset",
            "output.landmarks",
            "output.draw_rejected",
            "review.dir",
        ),
    )
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return run_stream(cfg)


def run_stream(cfg: Config) -> int:
    """Analyse every configured source end to end; returns the process exit code."""
    # The engine loads here, not at the top: it brings numpy, PyAV and the pipeline, and this
    # module is also the root parser, so `fer-stream --help` would wait for them.
    from fer_stream.analysis.run import analyse

    outcome = analyse(cfg)
    print_summary(outcome.summary.as_dict())
    if outcome.errors and not outcome.several:
        raise outcome.errors[0][1]
    if outcome.errors:
        for sid, error in outcome.errors:
            print(f"fer-stream: error: source {sid}: {printable(str(error))}", file=sys.stderr)
        return 1
    if outcome.signum is not None:
        return 128 + outcome.signum
    return 0


def print_summary(s: dict[str, Any]) -> None:
    """A summary (as its file has it) in a few lines: counts, latency, labels, files written; each source's of several."""
    if "sources" in s:
        for sid, one in s["sources"].items():
            print(f"[{sid}] ", end="")
            print_summary(one)
        return
    lines = [
        f"{counted(s['frames_out'], 'frame')} out of {s['frames_in']} read in {s['elapsed_s']:.1f} s "
        f"({s['fps']:.1f} fps); {counted(s['faces'], 'face')} in {counted(len(s['tracks']), 'track')}, {s['classified']} classified, "
        f"{s['flagged']} flagged, {s['unusable']} unusable, {s.get('rejected', 0)} rejected as no face; {s['dropped']} dropped"
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
