"""What each ``--serve`` URL answers: one table, :data:`ROUTES`, and :func:`answer` that applies it.

Every GET goes through the same steps, once: the ``Host`` and token checks (421, 401); on a probe
slot only ``/healthz`` and ``/metrics`` (503 "server busy"); the first route whose pattern matches
the whole path (query and trailing ``/`` dropped), else 404; under ``/sources/`` a 503 "starting"
until the sources are registered. Under ``/review`` the review page's endpoints
(:mod:`fer_stream.serve.review`) when the run keeps a review store, else 404. Other methods than
GET get the standard library's 501, but for POST to ``/review/api/labels`` when there is a store.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fer_stream.serve import review
from fer_stream.serve.dashboard import PAGE
from fer_stream.serve.preview import PreviewSink
from fer_stream.serve.server import GONE, Handler, Refusal, log

if TYPE_CHECKING:
    from fer_stream.serve.monitor import Monitor

BOUNDARY = "fer-stream-frame"
JSON = "application/json"
TEXT = "text/plain"
NOT_FOUND = b"not found; try /, /healthz, /metrics or /sources/<id>/mjpeg\n"
BUSY = b"server busy: every connection is in use; /healthz and /metrics still answer\n"
STARTING = b"starting: the models are loading; try again in a few seconds\n"

Answer = Callable[["Monitor", Handler, "re.Match[str]"], None]


@dataclass(frozen=True)
class Route:
    """A path pattern (matched whole) and what answers it."""

    pattern: re.Pattern[str]
    answer: Answer
    probe: bool = False  # answered on the slots kept for monitoring systems too
    needs_sources: bool = False  # 503 "starting" until the sources are registered

    @classmethod
    def at(cls, pattern: str, answer: Answer, *, probe: bool = False, needs_sources: bool = False) -> Route:
        return cls(re.compile(pattern, re.DOTALL), answer, probe, needs_sources)


def healthz(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    code, body = mon.healthz()
    req.send(code, JSON, json.dumps(body, indent=2).encode())


def metrics(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    req.send(200, "text/plain; version=0.0.4; charset=utf-8", mon.metrics.exposition())


def page(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    req.send(200, "text/html; charset=utf-8", PAGE.encode())


def state(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    req.send(200, JSON, json.dumps(mon.dashboard_state()).encode())


def source(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    """``/sources/<id>/mjpeg`` or ``/sources/<id>/jpeg``; a 404 never lists the sources."""
    preview = mon.previews.get(match["sid"])
    if preview is None:
        req.send(404, TEXT, b"no such source\n")
    elif match["kind"] == "mjpeg":
        if not mon.viewers.acquire(blocking=False):
            req.send(503, TEXT, b"too many viewers; try again later\n")
            return
        try:
            mjpeg(mon, req, preview)
        finally:
            mon.viewers.release()
    elif match["kind"] == "jpeg":
        got = preview.jpeg(timeout=5.0)
        if got is None:
            req.send(503, TEXT, b"no frame yet\n")
        else:
            req.send(200, "image/jpeg", got[1])
    else:
        req.send(404, TEXT, b"use /sources/<id>/mjpeg or /sources/<id>/jpeg\n")


def not_found(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    req.send(404, TEXT, NOT_FOUND)


def review_pages(mon: Monitor, req: Handler, match: re.Match[str]) -> None:
    """``/review...``: the review page and its endpoints, where the run keeps a review store."""
    if mon.review is None or not review.answer(mon.review, req, match.string):
        req.send(404, TEXT, NOT_FOUND)


ROUTES = (
    Route.at("/healthz", healthz, probe=True),
    Route.at("/metrics", metrics, probe=True),
    Route.at("/sources/(?P<sid>[^/]*)/(?P<kind>[^/]*)", source, needs_sources=True),
    Route.at("/sources/.+", not_found, needs_sources=True),  # deeper paths: "starting" too, then 404
    Route.at("/", page),
    Route.at("/api/state", state),
    Route.at("/review(?:/.*)?", review_pages),
)


def find(path: str) -> tuple[Route, re.Match[str]] | None:
    """The first route matching all of ``path``, with its match."""
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is not None:
            return route, match
    return None


def answer(mon: Monitor, req: Handler) -> None:
    """Answer one GET (or POST of an answer; see the module's text)."""
    refusal = mon.access.refusal(req.headers.get("Host") or "", req.headers.get("Authorization") or "", req.path)
    if refusal is not None:
        req.send(refusal[0], TEXT, refusal[1])
        return
    found = find(req.path.split("?")[0].rstrip("/") or "/")
    if req.probe_only and (found is None or not found[0].probe):
        req.send(503, TEXT, BUSY)
    elif found is None:
        req.send(404, TEXT, NOT_FOUND)
    elif found[0].needs_sources and mon.starting:
        req.send(503, TEXT, STARTING)
    else:
        route, match = found
        try:
            route.answer(mon, req, match)
        except Refusal as r:
            req.refuse(r)


def mjpeg(mon: Monitor, req: Handler, preview: PreviewSink) -> None:
    """The live picture as ``multipart/x-mixed-replace``, each new frame once, until the viewer or the server goes."""
    req.send_response(200)
    req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
    req.send_header("Cache-Control", "no-store")
    req.end_headers()
    seq = -1
    try:
        while not mon.closing.is_set():
            got = preview.jpeg(after=seq, timeout=1.0)
            if got is None:
                continue
            seq, data = got
            req.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode())
            req.wfile.write(data + b"\r\n")
            req.wfile.flush()
            time.sleep(preview.min_interval)
    except GONE:
        log.debug("viewer %s went away", req.client_address[0])
