"""``fer-stream review DIR``: the review page for a review store, served until Ctrl-C.

The store is one a run filled (``fer-stream --source VIDEO --review DIR``); several people can
label at once, each under their own name (the page keeps it), the latest answer per face winning.
The server is ``--serve``'s (:mod:`fer_stream.serve.review_server`): 127.0.0.1 unless told, the
``Host`` checked, a token (``--token``, ``serve.token`` or ``$FER_STREAM_SERVE_TOKEN``) required
when given. The page's address goes to stderr (with port 0, the port the system chose).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from fer_stream.analysis.signals import StopOnSignal
from fer_stream.config import Config
from fer_stream.errors import ConfigError
from fer_stream.io.review import ReviewStore, valid_reviewer
from fer_stream.serve.access import parse_address
from fer_stream.serve.review_server import ReviewServer

DEFAULT_ADDRESS = "127.0.0.1:9110"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream review",
        description="Serve the page to label a review store's flagged faces on (keys 1-9 for the labels, n not a face, "
        "s skip, u undo); answers go to DIR/labels.jsonl. Runs until Ctrl-C.",
    )
    p.add_argument("dir", metavar="DIR", help="the review store a run made with --review DIR")
    p.add_argument(
        "--serve",
        metavar="[HOST:]PORT",
        default=DEFAULT_ADDRESS,
        help=f"address to serve the page on; port 0 picks a free one (default {DEFAULT_ADDRESS})",
    )
    p.add_argument(
        "--token", metavar="TOKEN", help="require this token (at least 16 characters); default serve.token or $FER_STREAM_SERVE_TOKEN"
    )
    p.add_argument("--by", metavar="NAME", default="", help="the name answers are recorded under when the reviewer gives none")
    p.add_argument("--config", metavar="PATH", help="settings file (TOML): serve.token, serve.allowed_hosts, serve.max_clients")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


class _Stop:
    """What the signal handler stops: the wait in :func:`handle`."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def stop(self) -> None:
        self.event.set()


def handle(cfg: Config, args: argparse.Namespace) -> int:
    store = ReviewStore.open(args.dir)
    if not valid_reviewer(args.by):
        raise ConfigError(f"--by '{args.by}': a reviewer name has at most 40 letters, digits, spaces, '.', '@' or '-'")
    token = args.token or cfg.serve.token or os.environ.get("FER_STREAM_SERVE_TOKEN", "")
    host, port = parse_address(args.serve)
    stop = _Stop()
    server = ReviewServer(
        store, host, port, token=token, by=args.by, allowed_hosts=cfg.serve.allowed_hosts, max_clients=cfg.serve.max_clients
    )
    with StopOnSignal([stop]), server:
        counts = store.counts()
        hint = " (add ?token=TOKEN)" if token else ""
        print(
            f"fer-stream: review page at {server.url}/review{hint}: {counts['unreviewed']} of {counts['faces']} faces unreviewed; "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        while not stop.event.wait(0.5):
            pass
    counts = store.counts()
    print(f"fer-stream: review server stopped; {counts['reviewed']} of {counts['faces']} faces reviewed", file=sys.stderr)
    return 0
