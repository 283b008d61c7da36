"""Monitoring endpoints for headless servers: ``fer-stream --serve HOST:PORT``.

* ``/healthz``: JSON with each source's state (streaming, reconnecting, failed, ended), frames,
  age of the last frame, reconnects and last error; HTTP 200 while every source streams, else 503.
  While the models load it answers at once: 503 ``{"status": "starting", "state": "starting"}``.
* ``/metrics``: Prometheus text format (see :mod:`fer_stream.serve.metrics`); ``fer_stream_ready``
  is 0 while starting.
* ``/sources/<id>/mjpeg``: the live annotated picture as an MJPEG stream (open it in a browser or
  VLC); ``/sources/<id>/jpeg`` gives one still.
* ``/``: the dashboard (see :mod:`fer_stream.serve.dashboard`): every camera's picture, state, current
  tracks, label mix and recent flagged faces; ``/api/state`` is its JSON.
* ``/review``: with a review store (``--review DIR``), the page to label its flagged faces on, and
  its endpoints (:mod:`fer_stream.serve.review`); the dashboard links to it.

The server is the standard library's threading HTTP server, bounded (:mod:`fer_stream.serve.server`):
at most ``max_clients`` connections at once (``max_viewers`` of them MJPEG streams) and
:data:`PROBE_SLOTS` more that answer only ``/healthz`` and ``/metrics`` (so a monitoring system
still gets through when every other slot is taken); beyond them a connection is closed at once. A
request's head (request line and headers) must arrive within ``head_timeout`` seconds of the
connection (not per read: a client trickling a byte at a time is dropped too) and a socket silent
for ``timeout`` seconds is dropped, so no client can hold threads, descriptors or the pipeline; a
client that hangs up is logged at debug level only. Each URL's answer is in the table of
:mod:`fer_stream.serve.routes`.

A request must name this server in its ``Host`` header (:mod:`fer_stream.serve.access`), so a
DNS-rebinding page (whose ``Host`` is the attacker's domain) cannot reach it: the bound address
(with ``localhost`` for loopback); bound to every interface (``0.0.0.0``, ``::``) without a
token, any address of this machine, ``localhost`` or the host name; always the names in
``allowed_hosts`` (``serve.allowed_hosts``). With a ``token`` (at least 16 characters) every
request must carry it (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``), and on every interface
any ``Host`` is accepted unless ``allowed_hosts`` lists them. A handful of endpoints polled by a monitoring system and a few
viewers need no bigger server.

>>> with Monitor("127.0.0.1", 0, Metrics()) as mon:     # doctest: +SKIP
...     print(mon.url)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from fer_stream.health import SourceHealth
from fer_stream.io.review import ReviewStore
from fer_stream.io.sinks import Sink
from fer_stream.serve import routes
from fer_stream.serve.access import (
    MIN_TOKEN,
    PLACEHOLDER_TOKENS,
    WILDCARDS,
    Access,
    check_token,
    host_name,
    is_local_address,
    is_loopback,
    local_names,
    parse_address,
    split_hosts,
)
from fer_stream.serve.dashboard import SourceView
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.preview import Both, PreviewSink
from fer_stream.serve.review import LABELS_PATH, ReviewSite
from fer_stream.serve.routes import BOUNDARY
from fer_stream.serve.server import PROBE_SLOTS, bind

PROBES = ("/healthz", "/metrics")  # what the probe slots answer: the routes marked probe


class Monitor:
    """The HTTP server of ``--serve``, running on a background thread while the context is open.

    With ``starting=True`` it answers from the moment it is entered: ``/healthz`` 503 "starting"
    (and ``/api/state`` likewise) until :meth:`ready`, once every source is registered. With
    ``review`` (the run's review store) it serves the review page under ``/review`` too.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Metrics,
        *,
        token: str = "",
        max_clients: int = 32,
        max_viewers: int = 8,
        timeout: float = 10.0,
        head_timeout: float = 10.0,
        allowed_hosts: str | Iterable[str] = (),
        starting: bool = False,
        review: ReviewStore | None = None,
    ) -> None:
        check_token(token)
        self.review = None if review is None else ReviewSite(review)
        self.metrics = metrics
        self.health: dict[str, Callable[[], SourceHealth]] = {}
        self.previews: dict[str, PreviewSink] = {}
        self.views: dict[str, SourceView] = {}
        self.episodes: dict[str, Callable[[], dict[str, Any]]] = {}  # source -> its open episodes and counts
        self.token = token
        self.viewers = threading.BoundedSemaphore(max_viewers)  # MJPEG streams at once
        self._ready = threading.Event()
        if not starting:
            self._ready.set()
        metrics.ready.set(0 if starting else 1)
        self.access = Access(host, token, allowed_hosts)
        self.server = bind(
            host,
            port,
            functools.partial(routes.answer, self),
            token=token,
            exposes="sees the cameras",
            token_hint="--serve-token (or serve.token, $FER_STREAM_SERVE_TOKEN)",
            max_clients=max_clients,
            timeout=timeout,
            head_timeout=head_timeout,
            post_paths=None if review is None else LABELS_PATH,
        )
        self.closing = threading.Event()  # set on exit: MJPEG streams end

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def starting(self) -> bool:
        return not self._ready.is_set()

    def ready(self) -> None:
        """Every source is registered: /healthz reports them from now on."""
        self._ready.set()
        self.metrics.ready.set(1)

    def connections(self) -> dict[str, int]:
        """Connections accepted, turned away, on a probe slot, finished, open at most at once (peak), and open now."""
        return self.server.connections()

    def host_allowed(self, header: str) -> bool:
        """Whether a ``Host`` header names this server (see the module's text)."""
        return self.access.host_allowed(header)

    def add_source(self, source_id: str, health: Callable[[], SourceHealth]) -> Sink:
        """Register a source; the returned sink feeds its preview and its dashboard card."""
        self.health[source_id] = health
        self.previews[source_id] = preview = PreviewSink()
        self.views[source_id] = view = SourceView()
        return Both(preview, view)

    def watch_episodes(self, source_id: str, state: Callable[[], dict[str, Any]]) -> None:
        """Show ``state()`` (open episodes, counts) on the source's dashboard card."""
        self.episodes[source_id] = state

    def healthz(self) -> tuple[int, dict[str, Any]]:
        """``/healthz``: status code and body; 200 while every source streams."""
        if self.starting:
            return 503, {"status": "starting", "state": "starting", "sources": {}}
        sources = {sid: read().as_dict() for sid, read in list(self.health.items())}
        ok = bool(sources) and all(s.get("state") == "streaming" for s in sources.values())
        return (200 if ok else 503), {"status": "ok" if ok else "degraded", "state": "running", "sources": sources}

    def dashboard_state(self) -> dict[str, Any]:
        """``/api/state``: each source's health and view (tracks, label mix, flagged faces), and with a
        review store its counts (``review``: faces, reviewed, unreviewed, ...)."""
        code, health = self.healthz()
        review = {"review": self.review.store.counts()} if self.review is not None else {}
        if self.starting:
            return {**health, **review}
        return {
            "status": health["status"],
            "state": health["state"],
            "sources": {
                sid: {
                    "health": health["sources"][sid],
                    **view.state(),
                    **({"episodes": self.episodes[sid]()} if sid in self.episodes else {}),
                }
                for sid, view in self.views.items()
            },
            **review,
        }

    def _episodes(self, sid: str) -> dict[str, Any]:
        return {"episodes": self.episodes[sid]()} if sid in self.episodes else {}

    def __enter__(self) -> Monitor:
        self.server.start("fer-serve")
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self.server.stop()


# Moved to serve/access.py, serve/preview.py and serve/server.py; still importable from here.
__all__ = [
    "BOUNDARY",
    "MIN_TOKEN",
    "PLACEHOLDER_TOKENS",
    "PROBES",
    "PROBE_SLOTS",
    "WILDCARDS",
    "Monitor",
    "PreviewSink",
    "check_token",
    "host_name",
    "is_local_address",
    "is_loopback",
    "local_names",
    "parse_address",
    "split_hosts",
]
