"""Monitoring endpoints for headless servers: ``fer-stream --serve HOST:PORT``.

* ``/healthz``: JSON with each source's state (streaming, reconnecting, failed, ended), frames,
  age of the last frame, reconnects and last error; HTTP 200 while every source streams, else 503.
* ``/metrics``: Prometheus text format (see :mod:`fer_stream.metrics`).
* ``/sources/<id>/mjpeg``: the live annotated picture as an MJPEG stream (open it in a browser or
  VLC); ``/sources/<id>/jpeg`` gives one still.

The server is the standard library's threading HTTP server: a handful of endpoints polled by a
monitoring system and a few viewers need nothing more.

>>> with Monitor("127.0.0.1", 0, Metrics()) as mon:     # doctest: +SKIP
...     print(mon.url)
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np

from .errors import ConfigError
from .frames import FrameResult
from .metrics import Metrics
from .sinks import Sink

BOUNDARY = "fer-stream-frame"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT`` or ``HOST:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
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

    def write(self, result: FrameResult) -> None:
        image = result.annotated if result.annotated is not None else result.frame.image
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
        if cached is not None and cached[0] == seq:
            return cached
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        self._jpeg = (seq, buf.tobytes())
        return self._jpeg


class Monitor:
    """The HTTP server of ``--serve``, running on a background thread while the context is open."""

    def __init__(self, host: str, port: int, metrics: Metrics) -> None:
        self.metrics = metrics
        self.health: dict[str, Callable[[], dict[str, Any]]] = {}
        self.previews: dict[str, PreviewSink] = {}
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                monitor._route(self)

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror}; pick another port with --serve HOST:PORT") from None
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add_source(self, source_id: str, health: Callable[[], dict[str, Any]]) -> PreviewSink:
        self.health[source_id] = health
        self.previews[source_id] = preview = PreviewSink()
        return preview

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="fer-serve", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    # -- routes --------------------------------------------------------------------------------

    def healthz(self) -> tuple[int, dict[str, Any]]:
        sources = {sid: read() for sid, read in self.health.items()}
        ok = bool(sources) and all(s.get("state") == "streaming" for s in sources.values())
        return (200 if ok else 503), {"status": "ok" if ok else "degraded", "sources": sources}

    def _route(self, req: BaseHTTPRequestHandler) -> None:
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
                self._send(req, 404, "text/plain", f"no source '{sid}'; sources: {', '.join(self.previews)}\n".encode())
            elif kind == "mjpeg":
                self._mjpeg(req, preview)
            elif kind == "jpeg":
                got = preview.jpeg(timeout=5.0)
                if got is None:
                    self._send(req, 503, "text/plain", b"no frame yet\n")
                else:
                    self._send(req, 200, "image/jpeg", got[1])
            else:
                self._send(req, 404, "text/plain", b"use /sources/<id>/mjpeg or /sources/<id>/jpeg\n")
        elif path == "/":
            links = "".join(f'<li>{s}: <a href="/sources/{s}/mjpeg">live</a></li>' for s in self.previews)
            page = f"<html><body><h1>fer-stream</h1><ul>{links}</ul><p><a href='/healthz'>/healthz</a> " \
                   f"<a href='/metrics'>/metrics</a></p></body></html>"
            self._send(req, 200, "text/html; charset=utf-8", page.encode())
        else:
            self._send(req, 404, "text/plain", b"not found; try /healthz, /metrics or /sources/<id>/mjpeg\n")

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
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away
