"""The bounded HTTP server under ``--serve``: the standard library's threading server, with limits.

At most ``max_clients`` connections at once and :data:`PROBE_SLOTS` more, whose requests are
marked ``probe_only`` (the routes answer only ``/healthz`` and ``/metrics`` there); beyond them a
connection is closed at once. A request's head must arrive within ``head_timeout`` seconds of the
connection (one deadline, not per read) and a socket silent for ``timeout`` seconds is dropped. A
client that hangs up is logged at debug level only. What a request gets is up to ``answer``.

GET goes to ``answer``; POST only to the paths ``post_paths`` matches (the review page's labels),
every other POST and every other method gets the standard library's 501 before any check. A POST's
body is read by :meth:`Handler.json_body`: JSON only, ``Content-Length`` required, bounded in size
and due by the same kind of deadline as the head.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from fer_stream.errors import ConfigError
from fer_stream.serve.access import is_loopback

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PROBE_SLOTS = 2  # connections beyond max_clients, kept for /healthz and /metrics
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)
log = logging.getLogger("fer_stream.serve.monitor")

Address = tuple[str, int]
JSON_TYPE = "application/json"


class Refusal(Exception):
    """A request answered with ``code`` and a one-line ``reason`` (text/plain) instead of its route's answer."""

    def __init__(self, code: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.headers = code, reason, headers or {}


class _HeadReader(io.RawIOBase):
    """The socket's bytes, the request head due by one deadline: a timeout on each read alone lets a
    client that sends a byte now and then hold its connection for ever."""

    def __init__(self, sock: socket.socket, deadline: float, idle: float) -> None:
        self.sock, self.deadline, self.idle = sock, deadline, idle
        self.head_done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: WriteableBuffer) -> int:
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

    def due(self, deadline: float) -> None:
        """Reads are due by ``deadline`` again (a request body), until :meth:`done`."""
        self.deadline, self.head_done = deadline, False


class Handler(BaseHTTPRequestHandler):
    """One connection: the head read through its deadline, each GET (and POST to ``post_paths``)
    handed to the server's ``answer``; any other request gets the standard library's 501 first."""

    server: BoundedServer
    probe_only = False  # on a slot kept for /healthz and /metrics

    def version_string(self) -> str:
        return "fer-stream"  # not the Python version

    def setup(self) -> None:
        self.timeout = self.server.client_timeout  # type: ignore[misc]  # per read and write: a silent client is dropped
        super().setup()
        self.rfile.close()  # read through the head deadline instead
        self._head = _HeadReader(self.connection, time.monotonic() + self.server.head_timeout, self.server.client_timeout)
        self.rfile = io.BufferedReader(self._head)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self._head.done()
        return ok

    def log_message(self, format: str, *args: object) -> None:  # no access log on stderr
        pass

    def do_GET(self) -> None:
        try:
            self.server.answer(self)
        except GONE:
            log.debug("client %s went away", self.client_address[0])

    def do_POST(self) -> None:
        posts = self.server.post_paths
        if posts is None or posts.fullmatch(self.path.split("?")[0].rstrip("/")) is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")  # as if POST were not defined
            return
        self.do_GET()

    def json_body(self, limit: int) -> Any:
        """The request's JSON body, at most ``limit`` bytes, due by the head deadline's length; a
        :class:`Refusal` for anything else: 415 not JSON, 411 no ``Content-Length``, 413 too big, 400 bad."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != JSON_TYPE:
            raise Refusal(415, f"send the body as {JSON_TYPE}")
        length = self.headers.get("Content-Length")
        if length is None or self.headers.get("Transfer-Encoding") is not None:
            raise Refusal(411, "Content-Length required")
        if not (length.isascii() and length.isdigit()):
            raise Refusal(400, "bad Content-Length")
        if int(length) > limit:
            raise Refusal(413, f"body too large: at most {limit} bytes")
        self._head.due(time.monotonic() + self.server.head_timeout)
        try:
            data = self.rfile.read(int(length))
        finally:
            self._head.done()
        if len(data) < int(length):
            raise Refusal(400, "body shorter than its Content-Length")
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise Refusal(400, "body is not JSON") from None

    def send(self, code: int, ctype: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        """A whole answer: status, the usual headers (never cached, never sniffed), ``headers`` and ``body``."""
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def refuse(self, refusal: Refusal) -> None:
        self.send(refusal.code, "text/plain", refusal.reason.encode() + b"\n", refusal.headers)


class ProbeHandler(Handler):
    probe_only = True


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_clients`` (+ :data:`PROBE_SLOTS`) at once; ``counts`` says how it went."""

    daemon_threads = True
    request_queue_size = 64  # waiting connections the kernel holds; beyond them, refused

    def __init__(
        self,
        address: Address,
        answer: Callable[[Handler], None],
        *,
        max_clients: int,
        timeout: float,
        head_timeout: float,
        post_paths: re.Pattern[str] | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.answer = answer
        self.post_paths = post_paths
        self.client_timeout = timeout
        self.head_timeout = head_timeout
        self._slots = threading.BoundedSemaphore(max_clients)
        self._probe_slots = threading.BoundedSemaphore(PROBE_SLOTS)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()  # connections being served, closed when the server stops
        self.counts = {"accepted": 0, "turned_away": 0, "probe_only": 0, "finished": 0, "peak": 0}
        super().__init__(address, Handler)

    def process_request(self, request: socket.socket, client_address: Address) -> None:  # type: ignore[override]  # TCP: a socket
        probe = False
        if not self._slots.acquire(blocking=False):
            if not self._probe_slots.acquire(blocking=False):  # full: turn the client away at once
                with self._lock:
                    self.counts["turned_away"] += 1
                self.shutdown_request(request)
                return
            probe = True
        with self._lock:
            self.counts["accepted"] += 1
            self.counts["probe_only"] += probe
            self._open.add(request)
            self.counts["peak"] = max(self.counts["peak"], len(self._open))
        args = (request, client_address, probe)
        threading.Thread(target=self._serve_one, args=args, name="fer-serve-client", daemon=True).start()

    def _serve_one(self, request: socket.socket, client_address: Address, probe: bool) -> None:
        try:
            (ProbeHandler if probe else Handler)(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.discard(request)
                self.counts["finished"] += 1
            self.shutdown_request(request)
            (self._probe_slots if probe else self._slots).release()

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Address) -> None:
        log.debug("client %s: connection error", client_address[0], exc_info=True)

    def connections(self) -> dict[str, int]:
        """Connections accepted, turned away, on a probe slot, finished, open at most at once (peak), and open now."""
        with self._lock:
            return {**self.counts, "open": len(self._open)}

    def drop_clients(self) -> None:
        """Wake the threads still reading or writing: they end at once."""
        with self._lock:
            clients = list(self._open)
        for sock in clients:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket (IPv6 in brackets)."""
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{name}]:{port}" if ":" in name else f"http://{name}:{port}"

    def start(self, name: str) -> None:
        """Serve on a daemon thread called ``name`` until :meth:`stop`."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close the socket and end every open connection."""
        thread = getattr(self, "_thread", None)
        if thread is not None:
            self.shutdown()
            thread.join()
        self.server_close()
        self.drop_clients()


def bind(
    host: str,
    port: int,
    answer: Callable[[Handler], None],
    *,
    token: str,
    exposes: str,
    token_hint: str,
    max_clients: int,
    timeout: float,
    head_timeout: float,
    post_paths: re.Pattern[str] | None = None,
) -> BoundedServer:
    """A :class:`BoundedServer` bound to ``host:port``, or one :class:`ConfigError` line naming the fix.

    Listening beyond loopback with no token logs a warning that anyone who can reach the port
    ``exposes`` (e.g. "sees the cameras") and how to set one (``token_hint``).
    """
    try:
        server = BoundedServer(
            (host, port), answer, max_clients=max_clients, timeout=timeout, head_timeout=head_timeout, post_paths=post_paths
        )
    except (OSError, OverflowError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"cannot serve on {host}:{port}: {reason}; pick another address with --serve HOST:PORT") from None
    if not is_loopback(host) and not token:
        log.warning("serving on %s without a token: anyone who can reach this port %s; set %s", host, exposes, token_hint)
    return server
