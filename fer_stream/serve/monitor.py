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

The server is the standard library's threading HTTP server, bounded: at most ``max_clients``
connections at once (``max_viewers`` of them MJPEG streams) and :data:`PROBE_SLOTS` more that
answer only ``/healthz`` and ``/metrics`` (so a monitoring system still gets through when every
other slot is taken); beyond them a connection is closed at once. A request's head (request line
and headers) must arrive within ``head_timeout`` seconds of the connection (not per read: a client
trickling a byte at a time is dropped too) and a socket silent for ``timeout`` seconds is dropped,
so no client can hold threads, descriptors or the pipeline; a client that hangs up is logged at
debug level only.

A request must name this server in its ``Host`` header, so a DNS-rebinding page (whose ``Host``
is the attacker's domain) cannot reach it: the bound address (with ``localhost`` for loopback);
bound to every interface (``0.0.0.0``, ``::``) without a token, any address of this machine,
``localhost`` or the host name; always the names in ``allowed_hosts`` (``serve.allowed_hosts``).
With a ``token`` (at least 16 characters) every request must carry it (``Authorization: Bearer
TOKEN`` or ``?token=TOKEN``), and on every interface any ``Host`` is accepted unless
``allowed_hosts`` lists them. A handful of endpoints polled by a monitoring system and a few
viewers need no bigger server.

>>> with Monitor("127.0.0.1", 0, Metrics()) as mon:     # doctest: +SKIP
...     print(mon.url)
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
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
PROBE_SLOTS = 2  # connections beyond max_clients, kept for /healthz and /metrics
PROBES = ("/healthz", "/metrics")
MIN_TOKEN = 16
PLACEHOLDER_TOKENS = ("change-me", "changeme")  # what samples and tutorials ship
WILDCARDS = ("0.0.0.0", "::", "")
log = logging.getLogger("fer_stream.serve.monitor")
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)
_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")  # a host name or an IPv4 address


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


def check_token(token: str) -> None:
    """A token must be hard to guess: at least :data:`MIN_TOKEN` characters, not a sample's placeholder."""
    how = f"use at least {MIN_TOKEN} random characters, e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
    if token.strip().lower() in PLACEHOLDER_TOKENS:
        raise ConfigError(f"the serve token is the samples' placeholder '{token.strip()}', which anyone can guess; {how}")
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(f"the serve token has {len(token)} characters, too few to be safe; {how}")


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lower case, without port, brackets or a final dot; ``None`` if malformed."""
    h = header.strip().lower()
    if h.startswith("["):  # [IPv6]:port
        name, sep, rest = h[1:].partition("]")
        if not sep or not _is_ip(name, 6) or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return name
    if h.count(":") > 1:  # an IPv6 address without brackets (browsers add them)
        return h if _is_ip(h, 6) else None
    name, sep, port = h.partition(":")
    name = name.rstrip(".")
    if not _NAME.match(name) or (sep and not port.isdigit()):
        return None
    return name


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def is_local_address(text: str) -> bool:
    """Whether ``text`` is an IP address of this machine (it can be bound to): loopback or an interface's."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:
        return False
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(ip), 0))
        except OSError:
            return False
    return True


def local_names() -> set[str]:
    """Names of this machine that need no look-up: ``localhost`` and the host name (with and without its domain)."""
    name = socket.gethostname().lower().rstrip(".")
    return {"localhost", name, name.split(".")[0]} - {""}


def split_hosts(text: str) -> set[str]:
    """``serve.allowed_hosts`` ("a.example, 10.0.0.21:9108") as names, lower case, ports dropped."""
    names = {host_name(h) for h in re.split(r"[\s,]+", text) if h}
    return {n for n in names if n}


class _HeadReader(io.RawIOBase):
    """The socket's bytes, the request head due by one deadline: a timeout on each read alone lets a
    client that sends a byte now and then hold its connection for ever."""

    def __init__(self, sock: socket.socket, deadline: float, idle: float) -> None:
        self.sock, self.deadline, self.idle = sock, deadline, idle
        self.head_done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self.head_done:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request head not complete in time")
            self.sock.settimeout(min(left, self.idle))
        return self.sock.recv_into(buf)

    def done(self) -> None:
        """The head is in: from now on only the per-read (and per-write) timeout applies."""
        self.head_done = True
        self.sock.settimeout(self.idle)


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
    """The HTTP server of ``--serve``, running on a background thread while the context is open.

    With ``starting=True`` it answers from the moment it is entered: ``/healthz`` 503 "starting"
    (and ``/api/state`` likewise) until :meth:`ready`, once every source is registered.
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
    ) -> None:
        check_token(token)
        self.metrics = metrics
        self.health: dict[str, Callable[[], SourceHealth]] = {}
        self.previews: dict[str, PreviewSink] = {}
        self.views: dict[str, SourceView] = {}
        self.token = token
        self._viewers = threading.BoundedSemaphore(max_viewers)
        self._ready = threading.Event()
        if not starting:
            self._ready.set()
        metrics.ready.set(0 if starting else 1)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # connections being served, closed when the server stops
        self.counts = {"accepted": 0, "turned_away": 0, "probe_only": 0, "finished": 0, "peak": 0}
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            probe_only = False  # on a slot kept for /healthz and /metrics

            def version_string(self) -> str:
                return "fer-stream"  # not the Python version

            def setup(self) -> None:
                self.timeout = timeout  # type: ignore[misc]  # per read and write: a silent client is dropped
                super().setup()
                self.rfile.close()  # read through the head deadline instead
                self._head = _HeadReader(self.connection, time.monotonic() + head_timeout, timeout)
                self.rfile = io.BufferedReader(self._head)

            def parse_request(self) -> bool:
                ok = super().parse_request()
                self._head.done()
                return ok

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

            def do_GET(self) -> None:
                try:
                    monitor._route(self)
                except _GONE:
                    log.debug("client %s went away", self.client_address[0])

        class ProbeHandler(Handler):
            probe_only = True

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        slots = threading.BoundedSemaphore(max_clients)
        probe_slots = threading.BoundedSemaphore(PROBE_SLOTS)

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True
            request_queue_size = 64  # waiting connections the kernel holds; beyond them, refused

            def process_request(self, request: Any, client_address: Any) -> None:
                probe = False
                if not slots.acquire(blocking=False):
                    if not probe_slots.acquire(blocking=False):  # full: turn the client away at once
                        monitor._count("turned_away")
                        self.shutdown_request(request)
                        return
                    probe = True
                with monitor._lock:
                    monitor.counts["accepted"] += 1
                    monitor.counts["probe_only"] += probe
                    monitor._open.add(request)
                    monitor.counts["peak"] = max(monitor.counts["peak"], len(monitor._open))
                args = (request, client_address, probe)
                threading.Thread(target=self._serve_one, args=args, name="fer-serve-client", daemon=True).start()

            def _serve_one(self, request: Any, client_address: Any, probe: bool) -> None:
                try:
                    (ProbeHandler if probe else Handler)(request, client_address, self)
                except Exception:
                    self.handle_error(request, client_address)
                finally:
                    with monitor._lock:
                        monitor._open.discard(request)
                        monitor.counts["finished"] += 1
                    self.shutdown_request(request)
                    (probe_slots if probe else slots).release()

            def handle_error(self, request: Any, client_address: Any) -> None:
                log.debug("client %s: connection error", client_address[0], exc_info=True)

        try:
            self.server = Server((host, port), Handler)
        except (OSError, OverflowError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise ConfigError(f"cannot serve on {host}:{port}: {reason}; pick another address with --serve HOST:PORT") from None
        extra = split_hosts(allowed_hosts if isinstance(allowed_hosts, str) else ",".join(allowed_hosts))
        self._names = {host.lower()} | extra
        self._any_address = False  # any IP address of this machine
        self._any_host = False
        if is_loopback(host):
            self._names |= {"localhost", "127.0.0.1", "::1"}
        elif host in WILDCARDS:
            if token and not extra:
                self._any_host = True  # the token is the defence; names behind proxies vary
            else:
                self._names |= local_names() | {"127.0.0.1", "::1"}
                self._any_address = True
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

    @property
    def starting(self) -> bool:
        return not self._ready.is_set()

    def ready(self) -> None:
        """Every source is registered: /healthz reports them from now on."""
        self._ready.set()
        self.metrics.ready.set(1)

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def connections(self) -> dict[str, int]:
        """Connections accepted, turned away, on a probe slot, finished, open at most at once (peak), and open now."""
        with self._lock:
            return {**self.counts, "open": len(self._open)}

    def add_source(self, source_id: str, health: Callable[[], SourceHealth]) -> Sink:
        """Register a source; the returned sink feeds its preview and its dashboard card."""
        self.health[source_id] = health
        self.previews[source_id] = preview = PreviewSink()
        self.views[source_id] = view = SourceView()
        return _Both(preview, view)

    def dashboard_state(self) -> dict[str, Any]:
        """``/api/state``: each source's health and view (tracks, label mix, flagged faces)."""
        code, health = self.healthz()
        if self.starting:
            return health
        return {
            "status": health["status"],
            "state": health["state"],
            "sources": {sid: {"health": health["sources"][sid], **view.state()} for sid, view in self.views.items()},
        }

    def __enter__(self) -> Monitor:
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="fer-serve", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
        self.server.server_close()
        with self._lock:
            clients = list(self._open)
        for sock in clients:  # wake the threads still reading or writing: they end at once
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- routes --------------------------------------------------------------------------------

    def healthz(self) -> tuple[int, dict[str, Any]]:
        if self.starting:
            return 503, {"status": "starting", "state": "starting", "sources": {}}
        sources = {sid: read().as_dict() for sid, read in list(self.health.items())}
        ok = bool(sources) and all(s.get("state") == "streaming" for s in sources.values())
        return (200 if ok else 503), {"status": "ok" if ok else "degraded", "state": "running", "sources": sources}

    def host_allowed(self, header: str) -> bool:
        """Whether a ``Host`` header names this server (see the module's text)."""
        if self._any_host:
            return True
        name = host_name(header)
        if name is None:
            return False
        return name in self._names or (self._any_address and is_local_address(name))

    def _allowed(self, req: BaseHTTPRequestHandler) -> bool:
        """Host names this server (DNS rebinding), and the token when one is set."""
        if not self.host_allowed(req.headers.get("Host") or ""):
            body = b"unknown Host; use an address or name of this machine, or list the name in serve.allowed_hosts\n"
            self._send(req, 421, "text/plain", body)
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
        if getattr(req, "probe_only", False) and path not in PROBES:
            self._send(req, 503, "text/plain", b"server busy: every connection is in use; /healthz and /metrics still answer\n")
        elif path == "/healthz":
            code, body = self.healthz()
            self._send(req, code, "application/json", json.dumps(body, indent=2).encode())
        elif path == "/metrics":
            self._send(req, 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.exposition())
        elif path.startswith("/sources/") and self.starting:
            self._send(req, 503, "text/plain", b"starting: the models are loading; try again in a few seconds\n")
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
        req.send_header("X-Content-Type-Options", "nosniff")
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
