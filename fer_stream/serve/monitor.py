"""Monitoring endpoints for headless servers: ``fer-stream --serve HOST:PORT``.

* ``/healthz``: JSON with each source's state (streaming, reconnecting, failed, ended), frames,
  age of the last frame, reconnects and last error; HTTP 200 while every source streams, else 503.
* ``/metrics``: Prometheus text format (see :mod:`fer_stream.serve.metrics`).
* ``/sources/<id>/mjpeg``: the live annotated picture as an MJPEG stream (open it in a browser or
  VLC); ``/sources/<id>/jpeg`` gives one still.
* ``/``: the dashboard (see :mod:`fer_stream.serve.dashboard`): every camera's picture, state, current
  tracks, label mix and recent flagged faces; ``/api/state`` is its JSON.

The server is the standard library's threading HTTP server, bounded: at most ``max_clients``
connections at once (``max_viewers`` of them MJPEG streams), each socket timing out after
``timeout`` seconds of silence, so no client can hold threads, descriptors or the pipeline; a
client that hangs up is logged at debug level only. A request must name this server in its
``Host`` header (a DNS-rebinding page cannot reach a loopback server), and with a ``token``
every request must carry it (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``). A handful of
endpoints polled by a monitoring system and a few viewers need no bigger server.

>>> with Monitor("127.0.0.1", 0, Metrics()) as mon:     # doctest: +SKIP
...     print(mon.url)
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from fer_stream.errors import ConfigError
from fer_stream.frames import FrameResult
from fer_stream.health import SourceHealth
from fer_stream.io.sinks import Sink
from fer_stream.serve.dashboard import PAGE, SourceView
from fer_stream.serve.metrics import Metrics

BOUNDARY = "fer-stream-frame"
log = logging.getLogger("fer_stream.serve.monitor")
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT`` or ``HOST:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"  # [::1]:9108 is IPv6
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--serve '{text}' must be PORT or HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    return host, int(port)


class PreviewSink(Sink):
    """Keeps each source's newest annotated frame for the MJPEG endpoint; encodes only when watched."""

    def __init__(self, quality: int = 80, max_fps: float = 15.0) -> None:
        self.quality = quality
        self.min_interval = 1.0 / max_fps
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._encode = threading.Lock()  # one encode per frame, however many viewers ask
        self.encodes = 0

    def write(self, result: FrameResult) -> None:
        image = result.picture
        with self._cond:
            self._image, self._seq = image, self._seq + 1
            self._cond.notify_all()

    def jpeg(self, after: int = -1, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The newest frame as JPEG once one newer than ``after`` exists (``None`` on timeout)."""
        import cv2

        with self._cond:
            if not self._cond.wait_for(lambda: self._image is not None and self._seq > after, timeout):
                return None
            seq, image, cached = self._seq, self._image, self._jpeg
        if cached is not None and cached[0] >= seq:
            return cached
        with self._encode:
            cached = self._jpeg
            if cached is not None and cached[0] >= seq:  # another viewer encoded it meanwhile
                return cached
            assert image is not None  # waited for above
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            self.encodes += 1
            self._jpeg = (seq, buf.tobytes())
            return self._jpeg


class _Both(Sink):
    """Hands each result to the preview and to the dashboard's view."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def write(self, result: FrameResult) -> None:
        for sink in self.sinks:
            sink.write(result)


class Monitor:
    """The HTTP server of ``--serve``, running on a background thread while the context is open."""

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
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.metrics = metrics
        self.health: dict[str, Callable[[], SourceHealth]] = {}
        self.previews: dict[str, PreviewSink] = {}
        self.views: dict[str, SourceView] = {}
        self.token = token
        self._viewers = threading.BoundedSemaphore(max_viewers)
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def version_string(self) -> str:
                return "fer-stream"  # not the Python version

            def setup(self) -> None:
                self.timeout = timeout  # type: ignore[misc]  # per connection: a silent or slow client is dropped
                super().setup()

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

            def do_GET(self) -> None:
                try:
                    monitor._route(self)
                except _GONE:
                    log.debug("client %s went away", self.client_address[0])

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            request_queue_size = 64  # waiting connections the kernel holds; beyond them, refused
            _slots = threading.BoundedSemaphore(max_clients)

            def process_request(self, request: Any, client_address: Any) -> None:
                if not self._slots.acquire(blocking=False):  # full: turn the client away at once
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    self._slots.release()

            def handle_error(self, request: Any, client_address: Any) -> None:
                log.debug("client %s: connection error", client_address[0], exc_info=True)

        try:
            self.server = Server((host, port), Handler)
        except (OSError, OverflowError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"cannot serve on {host}:{port}: {reason}; pick another address with --serve HOST:PORT") from None
        bound_port = self.server.server_address[1]
        names = {host, f"[{host}]"} | ({"localhost", "127.0.0.1", "[::1]"} if is_loopback(host) else set())
        self._any_host = host in ("0.0.0.0", "::") and not allowed_hosts
        self.allowed_hosts = {h.lower() for n in names | set(allowed_hosts) for h in (n, f"{n}:{bound_port}")}
        if not is_loopback(host) and not token:
            log.warning(
                "serving on %s without a token: anyone who can reach this port sees the cameras; "
                "set --serve-token (or serve.token, $FER_STREAM_SERVE_TOKEN)",
                host,
            )
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"

    def add_source(self, source_id: str, health: Callable[[], SourceHealth]) -> Sink:
        """Register a source; the returned sink feeds its preview and its dashboard card."""
        self.health[source_id] = health
        self.previews[source_id] = preview = PreviewSink()
        self.views[source_id] = view = SourceView()
        return _Both(preview, view)

    def dashboard_state(self) -> dict[str, Any]:
        """``/api/state``: each source's health and view (tracks, label mix, flagged faces)."""
        code, health = self.healthz()
        return {
            "status": health["status"],
            "sources": {sid: {"health": health["sources"][sid], **view.state()} for sid, view in self.views.items()},
        }

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="fer-serve", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    # -- routes --------------------------------------------------------------------------------

    def healthz(self) -> tuple[int, dict[str, Any]]:
        sources = {sid: read().as_dict() for sid, read in self.health.items()}
        ok = bool(sources) and all(s.get("state") == "streaming" for s in sources.values())
        return (200 if ok else 503), {"status": "ok" if ok else "degraded", "sources": sources}

    def _allowed(self, req: BaseHTTPRequestHandler) -> bool:
        """Host names this server (DNS rebinding), and the token when one is set."""
        host = (req.headers.get("Host") or "").lower()
        if not self._any_host and host not in self.allowed_hosts:
            self._send(req, 421, "text/plain", b"unknown Host; use the address fer-stream serves on\n")
            return False
        if self.token:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
            given = (req.headers.get("Authorization") or "").removeprefix("Bearer ").strip() or (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                self._send(req, 401, "text/plain", b"token required: Authorization: Bearer TOKEN or ?token=TOKEN\n")
                return False
        return True

    def _route(self, req: BaseHTTPRequestHandler) -> None:
        if not self._allowed(req):
            return
        path = req.path.split("?")[0].rstrip("/") or "/"
        if path == "/healthz":
            code, body = self.healthz()
            self._send(req, code, "application/json", json.dumps(body, indent=2).encode())
        elif path == "/metrics":
            self._send(req, 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition())
        elif path.startswith("/sources/") and path.count("/") == 3:
            _, _, sid, kind = path.split("/")
            preview = self.previews.get(sid)
            if preview is None:
                self._send(req, 404, "text/plain", b"no such source\n")
            elif kind == "mjpeg":
                if not self._viewers.acquire(blocking=False):
                    self._send(req, 503, "text/plain", b"too many viewers; try again later\n")
                    return
                try:
                    self._mjpeg(req, preview)
                finally:
                    self._viewers.release()
            elif kind == "jpeg":
                got = preview.jpeg(timeout=5.0)
                if got is None:
                    self._send(req, 503, "text/plain", b"no frame yet\n")
                else:
                    self._send(req, 200, "image/jpeg", got[1])
            else:
                self._send(req, 404, "text/plain", b"use /sources/<id>/mjpeg or /sources/<id>/jpeg\n")
        elif path == "/":
            self._send(req, 200, "text/html; charset=utf-8", PAGE.encode())
        elif path == "/api/state":
            self._send(req, 200, "application/json", json.dumps(self.dashboard_state()).encode())
        else:
            self._send(req, 404, "text/plain", b"not found; try /, /healthz, /metrics or /sources/<id>/mjpeg\n")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
        req.send_response(code)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        req.wfile.write(body)

    def _mjpeg(self, req: BaseHTTPRequestHandler, preview: PreviewSink) -> None:
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        req.end_headers()
        seq = -1
        try:
            while not self._closing.is_set():
                got = preview.jpeg(after=seq, timeout=1.0)
                if got is None:
                    continue
                seq, data = got
                req.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode())
                req.wfile.write(data + b"\r\n")
                req.wfile.flush()
                time.sleep(preview.min_interval)
        except _GONE:
            log.debug("viewer %s went away", req.client_address[0])
