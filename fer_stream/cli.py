"""The ``fer-stream`` command line.

    fer-stream --source 0                                   # webcam, on screen
    fer-stream --source talk.mp4 --output talk.annotated.mp4 --events talk.jsonl
    fer-stream batch ARCHIVE/ more/*.mp4 list.txt --out RESULTS/ [--jobs 2] [--ray auto]
    fer-stream fleet --ray auto site-a.toml site-b.toml     # camera groups as Ray actors, each with /metrics
    fer-stream image face.jpg [more.jpg ...] [--dir FACES] [--json] [--no-detect]
    fer-stream bench --video talk.mp4 [--images FACES] [--json]   # speed on this machine
    fer-stream parity --device cuda [--precision fp16] [--images FACES] [--json]   # device vs CPU
    fer-stream eval FACES_BY_CLASS/ [--out REPORT/] [--json]      # accuracy, F1, confusion matrix
    fer-stream export --format onnx fer.onnx [--model M]          # then --backend onnxruntime --model fer.onnx
    fer-stream train FACES_BY_CLASS/ --model BASE --out MY_MODEL/  # fine-tune
    fer-stream review REVIEW/ [--serve 127.0.0.1:9110]     # label the faces a run kept with --review REVIEW/
    fer-stream models pull                                  # fetch both models for offline use
    fer-stream config                                       # print the effective settings as TOML

A user's mistake ends in one line, ``fer-stream: error: ...``, and a non-zero exit; ``--debug``
(or ``FER_STREAM_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import cast

from fer_stream.commands.options import overrides
from fer_stream.config import Config, load_config
from fer_stream.errors import FerStreamError, printable

# command -> the module of fer_stream.commands that owns it: its parser() and handle(cfg, args).
# Only the chosen command's module is imported: several compute with torch or OpenCV at their top,
# and `fer-stream --help` or a mistyped flag should not wait seconds for them.
COMMANDS = {
    "run": "analyse",
    "batch": "batch",
    "fleet": "fleet",
    "image": "image",
    "bench": "bench",
    "parity": "parity",
    "eval": "evaluate",
    "export": "export",
    "train": "train",
    "review": "review",
    "models": "pull",
    "config": "settings",
}
Handler = Callable[[Config, argparse.Namespace], int]


def command(name: str) -> ModuleType:
    """The module of command ``name`` (a key of :data:`COMMANDS`)."""
    return importlib.import_module(f"fer_stream.commands.{COMMANDS[name]}")


def make_parser(name: str) -> argparse.ArgumentParser:
    return cast(argparse.ArgumentParser, command(name).parser())


class _OneLineFormatter(logging.Formatter):
    """Log messages with control characters escaped: a file or URL named in one cannot forge lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("fer-stream: %(levelname)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.addLevelName(logging.INFO, "info")
    logging.addLevelName(logging.DEBUG, "debug")
    if not debug:
        for noisy in ("libav", "transformers", "httpx", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fer-stream`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in COMMANDS else "run"
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    try:
        module = command(name)
    except ImportError as e:  # a broken install (a module or a dependency missing): one line, not a traceback
        if os.environ.get("FER_STREAM_DEBUG"):
            raise
        print(f"fer-stream: error: cannot load the {name} command ({printable(str(e))}); reinstall fer-stream", file=sys.stderr)
        return 1
    args = module.parser().parse_args(argv)
    handle: Handler = module.handle
    debug = bool(args.debug or os.environ.get("FER_STREAM_DEBUG"))
    _setup_logging(debug)
    try:
        given = overrides(args)
        if args.debug and hasattr(args, "setting:output.draw_rejected"):  # a command that draws: --debug shows rejected boxes too
            given.setdefault("output.draw_rejected", True)
        return handle(load_config(getattr(args, "config", None), given), args)
    except FerStreamError as e:
        if debug:
            logging.getLogger("fer_stream").exception("traceback")
        print(f"fer-stream: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fer-stream: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: still one line unless debugging
        if debug:
            raise
        what = printable(f"{type(e).__name__}: {e}")
        print(f"fer-stream: internal error: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
