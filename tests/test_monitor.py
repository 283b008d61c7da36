"""The --serve HTTP server on its own: bounded clients, timeouts, silent hang-ups, Host and token checks."""

import http.client
import os
import socket
import threading
import time

import numpy as np
import pytest

from fer_stream.frames import Frame, FrameResult
from fer_stream.health import SourceHealth
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import Monitor, PreviewSink, parse_address


def _get(port, path, host=None, headers=None, family_host="127.0.0.1"):
    c = http.client.HTTPConnection(family_host, port, timeout=5)
    h = dict(headers or {})
    if host is not None:
        c.putrequest("GET", path, skip_host=True)
        c.putheader("Host", host)
        for k, v in h.items():
            c.putheader(k, v)
        c.endheaders()
    else:
        c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


@pytest.fixture
def monitor():
    with Monitor("127.0.0.1", 0, Metrics(), max_clients=8, max_viewers=2, timeout=1.0) as mon:
        mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
        yield mon


def test_idle_and_half_sent_clients_cannot_exhaust_the_server(monitor):
    port = monitor.server.server_address[1]
    threads_before = threading.active_count()
    idle = []
    for i in range(200):  # far more than max_clients: the extra ones are closed at once
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request
        idle.append(s)
    time.sleep(0.3)
    assert threading.active_count() - threads_before <= 8 + 1
    time.sleep(1.5)  # the 1 s timeout frees every slot the slow clients held
    assert _get(port, "/healthz")[0] == 200
    for s in idle:
        s.close()
    assert len(os.listdir("/proc/self/fd")) < 200  # the server kept no descriptor of the turned-away clients


def test_clients_hanging_up_are_silent(monitor, capfd):
    port = monitor.server.server_address[1]
    for path in ("/healthz", "/metrics", "/sources/cam1/jpeg", "/nope"):
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # reset before the answer is read
    time.sleep(0.5)
    assert _get(port, "/healthz")[0] == 200
    assert capfd.readouterr().err == ""


def test_host_header_token_and_plain_headers():
    with Monitor("127.0.0.1", 0, Metrics(), token="s3cr3t") as mon:
        mon.add_source("door", lambda: SourceHealth("cam", "streaming"))
        port = mon.server.server_address[1]
        assert _get(port, "/healthz")[0] == 401
        assert _get(port, "/healthz", headers={"Authorization": "Bearer s3cr3t"})[0] == 200
        assert _get(port, "/healthz?token=s3cr3t")[0] == 200
        assert _get(port, "/healthz?token=wrong")[0] == 401
        code, headers, _ = _get(port, "/healthz", host="attacker.example", headers={"Authorization": "Bearer s3cr3t"})
        assert code == 421  # a DNS-rebinding page names its own host
        assert _get(port, "/healthz", host=f"localhost:{port}", headers={"Authorization": "Bearer s3cr3t"})[0] == 200
        code, headers, body = _get(port, "/sources/nope/mjpeg", headers={"Authorization": "Bearer s3cr3t"})
        assert code == 404 and b"door" not in body  # a 404 does not list the cameras
        assert headers["Server"] == "fer-stream"  # no Python version


def test_ipv6_loopback_address():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    assert parse_address("[::1]:9108") == ("::1", 9108)
    try:
        mon = Monitor("::1", 0, Metrics())
    except Exception as e:  # a machine with IPv6 switched off
        pytest.skip(f"no IPv6 loopback: {e}")
    with mon:
        mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
        port = mon.server.server_address[1]
        assert mon.url == f"http://[::1]:{port}"
        assert _get(port, "/healthz", family_host="::1")[0] == 200


def test_mjpeg_is_encoded_once_per_frame_whatever_the_viewers():
    sink = PreviewSink()
    sink.write(FrameResult(Frame(0, 0.0, np.zeros((240, 320, 3), np.uint8))))
    got = []
    workers = [threading.Thread(target=lambda: got.append(sink.jpeg(timeout=2))) for _ in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(got) == 50 and len({g[1] for g in got}) == 1 and sink.encodes == 1


def test_viewers_are_capped(monitor):
    port = monitor.server.server_address[1]
    monitor.previews["cam1"] = sink = PreviewSink()
    sink.write(FrameResult(Frame(0, 0.0, np.zeros((64, 64, 3), np.uint8))))
    viewers = []
    for _ in range(2):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/sources/cam1/mjpeg")
        r = c.getresponse()  # kept open: a response dropped closes its socket, ending that viewer
        assert r.status == 200
        viewers.append((c, r))
    assert _get(port, "/sources/cam1/mjpeg")[0] == 503  # a third viewer waits its turn
    for c, r in viewers:
        r.close()
        c.close()
