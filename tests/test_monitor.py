"""The --serve HTTP server on its own: bounded clients, head deadlines, probe slots, silent hang-ups,
Host and token checks, and the "starting" state while the models load."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDIA, ROOT, run_cli, wait_until

from fer_stream.errors import ConfigError
from fer_stream.frames import Frame, FrameResult
from fer_stream.health import SourceHealth
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import PROBE_SLOTS, Monitor, PreviewSink, check_token, host_name, is_local_address, parse_address

WAIT = 120.0  # generous: the machine may be busy
REFUSED = (OSError, http.client.HTTPException)  # refused, reset, timed out, closed before an answer


def _get(port, path, host=None, headers=None, family_host="127.0.0.1", timeout=30.0):
    c = http.client.HTTPConnection(family_host, port, timeout=timeout)
    try:
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
        return r.status, dict(r.getheaders()), body
    finally:
        c.close()


@pytest.fixture
def monitor():
    with Monitor("127.0.0.1", 0, Metrics(), max_clients=8, max_viewers=2, timeout=1.0) as mon:
        mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
        yield mon


@pytest.fixture
def sockets():
    """Client sockets a test opens, all closed when it ends."""
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for s in held:
            s.close()


def _served(mon: Monitor, n: int) -> bool:
    """Whether the server has taken all of ``n`` connections off its queue (served or turned away)."""
    c = mon.connections()
    return c["accepted"] + c["turned_away"] >= n


def test_idle_and_half_sent_clients_cannot_exhaust_the_server(monitor, sockets):
    port = monitor.server.server_address[1]
    threads_before = threading.active_count()
    for i in range(200):  # far more than max_clients: the extra ones are closed at once
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request
        sockets.append(s)
    wait_until(lambda: _served(monitor, 200), WAIT, "the server to take every connection")
    c = monitor.connections()
    assert c["peak"] <= 8 + PROBE_SLOTS and c["turned_away"] > 0  # never more at once, the rest closed at once
    assert threading.active_count() - threads_before <= 8 + PROBE_SLOTS
    wait_until(lambda: monitor.connections()["open"] == 0, WAIT, "the 1 s timeout to free every slot")
    assert _get(port, "/healthz")[0] == 200
    for s in sockets:
        s.close()
    assert len(os.listdir("/proc/self/fd")) < 200  # the server kept no descriptor of the turned-away clients


def test_slow_clients_cannot_keep_health_probes_out(sockets):
    """Every slot held by a client trickling its request: /healthz and /metrics still answer."""
    with Monitor("127.0.0.1", 0, Metrics(), max_clients=8, timeout=60.0, head_timeout=600.0) as mon:
        mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
        port = mon.server.server_address[1]
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(s)
        wait_until(lambda: mon.connections()["accepted"] == 8, WAIT, "8 slow clients holding every slot")
        # The probe slots are given back after each answer: the server notes a probe's connection
        # closed a moment after the client has read its answer (later on a busy machine), so each
        # probe waits for that first; more than two probes in a row without it could be turned away.
        for _ in range(3):
            wait_until(lambda: mon.connections()["open"] == 8, WAIT, "the probe slots given back")
            code, _, body = _get(port, "/healthz")
            assert code == 200 and json.loads(body)["sources"]["cam1"]["state"] == "streaming"
            wait_until(lambda: mon.connections()["open"] == 8, WAIT, "the probe slots given back")
            code, _, body = _get(port, "/metrics")
            assert code == 200 and b"fer_stream_ready 1.0" in body
        code, _, body = _get(port, "/")  # anything else waits for a slot of its own
        assert code == 503 and b"/healthz and /metrics still answer" in body
        # The slow ones are still held (their deadline is far); the probes' connections are closed.
        wait_until(lambda: mon.connections()["open"] == 8, WAIT, "only the 8 slow clients open")
        assert mon.connections()["open"] == 8
    for s in sockets:  # stopping the server closed them
        s.settimeout(WAIT)
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass


def test_a_request_head_trickled_a_byte_at_a_time_is_dropped_at_its_deadline(sockets):
    """The head timeout runs from the connection, not from each read: a byte every 0.2 s does not reset it."""
    head_timeout = 1.0
    with Monitor("127.0.0.1", 0, Metrics(), max_clients=8, timeout=60.0, head_timeout=head_timeout) as mon:
        port = mon.server.server_address[1]
        opened: dict[socket.socket, float] = {}
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(s)
            opened[s] = time.monotonic()
        closed: dict[socket.socket, float] = {}
        deadline = time.monotonic() + WAIT
        while len(closed) < len(opened) and time.monotonic() < deadline:
            for s in [s for s in opened if s not in closed]:
                try:
                    s.sendall(b"a")  # one more byte of a header that never ends
                    readable, _, _ = select.select([s], [], [], 0)
                    if readable and s.recv(1024) == b"":
                        closed[s] = time.monotonic()
                except OSError:  # reset: closed by the server
                    closed[s] = time.monotonic()
            time.sleep(0.2)
        assert len(closed) == len(opened), f"{len(opened) - len(closed)} trickling clients still connected after {WAIT:g} s"
        assert all(closed[s] - opened[s] >= head_timeout * 0.9 for s in opened)  # given their time, then dropped
        wait_until(lambda: mon.connections()["open"] == 0, WAIT, "every slot freed")
        assert _get(port, "/metrics")[0] == 200


def test_clients_hanging_up_are_silent(monitor, capfd):
    port = monitor.server.server_address[1]
    for path in ("/healthz", "/metrics", "/sources/cam1/jpeg", "/nope"):
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # reset before the answer is read
    wait_until(lambda: _served(monitor, 80) and monitor.connections()["open"] == 0, WAIT, "every reset connection handled")
    assert _get(port, "/healthz")[0] == 200
    assert capfd.readouterr().err == ""


def test_answers_at_once_while_starting():
    """Before the sources are registered: /healthz 503 "starting", /api/state likewise, /metrics ready 0."""
    with Monitor("127.0.0.1", 0, Metrics(), starting=True) as mon:
        port = mon.server.server_address[1]
        code, _, body = _get(port, "/healthz")
        assert code == 503 and json.loads(body) == {"status": "starting", "state": "starting", "sources": {}}
        code, _, body = _get(port, "/api/state")
        assert code == 200 and json.loads(body)["state"] == "starting"
        code, _, body = _get(port, "/metrics")
        assert code == 200 and b"fer_stream_ready 0.0" in body
        assert _get(port, "/sources/door/mjpeg")[0] == 503
        assert _get(port, "/")[0] == 200
        mon.add_source("door", lambda: SourceHealth("cam", "streaming"))
        mon.ready()
        code, _, body = _get(port, "/healthz")
        assert code == 200 and json.loads(body)["state"] == "running"
        assert b"fer_stream_ready 1.0" in _get(port, "/metrics")[2]
        assert json.loads(_get(port, "/api/state")[2])["sources"]["door"]["health"]["state"] == "streaming"


def test_a_run_answers_healthz_while_its_models_load(monkeypatch):
    """A real run (analyse) whose classifier load blocks until the test releases it."""
    from rtsp import free_port

    import fer_stream.analysis.run as run_module
    from fer_stream.config import load_config

    loading, release = threading.Event(), threading.Event()

    def blocked_load(*args, **kwargs):
        loading.set()
        release.wait(WAIT)
        raise ConfigError("released by the test")  # ends the run here: no model is needed

    monkeypatch.setattr(run_module, "load_models", blocked_load)
    # Detector files are resolved before the classifier loads (tested in test_models_and_images.py); this
    # test needs none of them (no ../shared in the fast tier): the run goes on to the model load.
    monkeypatch.setattr(run_module, "check_detector_files", lambda *a, **k: None)
    port = free_port()
    cfg = load_config(None, {"source.input": f"rtsp://127.0.0.1:{free_port()}/cam", "serve.address": f"127.0.0.1:{port}"})
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            run_module.analyse(cfg)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        assert loading.wait(WAIT), "the run never reached the model load"
        code, _, body = wait_until(lambda: _get(port, "/healthz", timeout=5), WAIT, "/healthz to answer", ignore=REFUSED)
        assert code == 503 and json.loads(body)["state"] == "starting"
        code, _, body = _get(port, "/metrics")
        assert code == 200 and b"fer_stream_ready 0.0" in body
        assert json.loads(_get(port, "/api/state")[2])["state"] == "starting"
    finally:
        release.set()
        t.join(WAIT)
    assert not t.is_alive() and isinstance(outcome[0], ConfigError)
    with pytest.raises(OSError):  # the failed run closed its server
        socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()


def test_host_header_token_and_plain_headers():
    token = "s3cr3t-0123456789abcdef"
    bearer = {"Authorization": f"Bearer {token}"}
    with Monitor("127.0.0.1", 0, Metrics(), token=token) as mon:
        mon.add_source("door", lambda: SourceHealth("cam", "streaming"))
        port = mon.server.server_address[1]
        assert _get(port, "/healthz")[0] == 401
        assert _get(port, "/healthz", headers=bearer)[0] == 200
        assert _get(port, f"/healthz?token={token}")[0] == 200
        assert _get(port, "/healthz?token=wrong")[0] == 401
        code, headers, _ = _get(port, "/healthz", host="attacker.example", headers=bearer)
        assert code == 421  # a DNS-rebinding page names its own host
        assert _get(port, "/healthz", host=f"localhost:{port}", headers=bearer)[0] == 200
        code, headers, body = _get(port, "/sources/nope/mjpeg", headers=bearer)
        assert code == 404 and b"door" not in body  # a 404 does not list the cameras
        assert headers["Server"] == "fer-stream"  # no Python version
        assert headers["X-Content-Type-Options"] == "nosniff"


def _local_ipv4() -> set[str]:
    """This machine's IPv4 addresses, from its routing table (Linux)."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return {"127.0.0.1"}
    return {prev.strip().removeprefix("|-- ") for prev, line in zip(lines, lines[1:]) if "/32 host LOCAL" in line}


def _foreign_ipv4() -> str:
    """A documentation address (RFC 5737) that is not this machine's."""
    return next(a for a in ("203.0.113.77", "198.51.100.77", "192.0.2.77") if a not in _local_ipv4())


def test_every_interface_without_a_token_answers_only_to_this_machine_s_names():
    """Bound to 0.0.0.0 with no token: a page on another domain (DNS rebinding) is refused, this machine's names are not."""
    extra = ["cams.example.com", "CAMS.example.com:9108", "[fd00::7]"]
    for allowed in ("", "cams.example.com, [fd00::7]:9108"):
        with Monitor("0.0.0.0", 0, Metrics(), allowed_hosts=allowed) as mon:
            mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
            port = mon.server.server_address[1]
            foreign = ("attacker.example", f"attacker.example:{port}", "localhost.attacker.example", _foreign_ipv4(), "[fd00::8]")
            for host in (*foreign, "", "a b", "x@127.0.0.1", *([] if allowed else extra)):
                assert _get(port, "/healthz", host=host)[0] == 421, (allowed, host)
            hostname = socket.gethostname()
            names = ["localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}", hostname, f"{hostname.upper()}:{port}"]
            names += [f"{a}:{port}" for a in sorted(_local_ipv4())]  # every interface's address
            for host in names + (extra if allowed else []):  # and serve.allowed_hosts
                assert _get(port, "/healthz", host=host)[0] == 200, (allowed, host)
    # With a token the token is the defence: any Host (a proxy's name) is accepted, the token still required.
    token = "0123456789abcdef-token"
    with Monitor("0.0.0.0", 0, Metrics(), token=token) as mon:
        mon.health["cam1"] = lambda: SourceHealth("cam", "streaming")
        port = mon.server.server_address[1]
        assert _get(port, "/healthz", host="cams.proxy.example")[0] == 401
        assert _get(port, "/healthz", host="cams.proxy.example", headers={"Authorization": f"Bearer {token}"})[0] == 200


def test_host_names_and_local_addresses():
    assert host_name("LocalHost:9108") == "localhost" and host_name("[::1]:80") == "::1" and host_name("cam.local.") == "cam.local"
    assert host_name("::1") == "::1" and host_name("[fd00::7]") == "fd00::7" and host_name("10.0.0.21:9108") == "10.0.0.21"
    for bad in ("", "a b", "x@y", "[::1", "host:port", "host:", "[::1]x", "[::1]:", "a:1:b", "[cam]", "a..b"):
        assert host_name(bad) is None, bad
    assert is_local_address("127.0.0.1") and is_local_address("::1") or not socket.has_ipv6
    assert not is_local_address(_foreign_ipv4()) and not is_local_address("0.0.0.0") and not is_local_address("example.com")
    assert all(is_local_address(a) for a in _local_ipv4())


def test_weak_tokens_are_refused_in_one_line():
    for weak in ("s3cr3t", "change-me", "CHANGE-ME", "x" * 15):
        with pytest.raises(ConfigError) as e:
            Monitor("127.0.0.1", 0, Metrics(), token=weak)
        assert "\n" not in str(e.value) and "at least 16" in str(e.value)
        if "change" not in weak.lower():
            assert weak not in str(e.value)  # a token is not printed (the public placeholder is named)
    check_token("")  # no token: allowed (a warning beyond loopback)
    check_token("x" * 16)


def test_samples_ship_no_token_and_the_cli_refuses_a_weak_one(tmp_path):
    from conftest import run_cli

    from fer_stream.config import load_config

    for sample in sorted((ROOT / "samples").rglob("*.toml")):
        assert load_config(sample).serve.token == "", sample  # a token in a sample is known to everyone
    env = dict(os.environ, HF_HUB_OFFLINE="1", FER_STREAM_SERVE_TOKEN="change-me")
    args = ["--source", "rtsp://127.0.0.1:9/cam", "--model", "nobody/not-loaded", "--serve", "127.0.0.1:0"]
    r = run_cli(args, env, timeout=WAIT)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "placeholder" in lines[0] and "not-loaded" not in r.stderr, r.stderr
    r = run_cli([*args, "--serve-token", "short-token"], env, timeout=WAIT)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "11 characters" in lines[0] and "short-token" not in r.stderr, r.stderr


def test_a_fleet_group_with_a_weak_token_fails_before_any_cluster_starts(tmp_path, monkeypatch):
    import fer_stream.commands.fleet as cluster

    def no_ray(address: str) -> None:
        raise AssertionError("Ray was asked to connect before the groups' tokens were checked")

    monkeypatch.setattr(cluster, "connect", no_ray)
    group = tmp_path / "site-x.toml"
    group.write_text('[[sources]]\ninput = "rtsp://cam/1"\n[serve]\naddress = "0.0.0.0:9108"\ntoken = "change-me"\n')
    with pytest.raises(ConfigError, match="^group config .*site-x.toml.*placeholder") as e:
        cluster.run_fleet([str(group)], "auto")
    assert "\n" not in str(e.value)


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
    workers = [threading.Thread(target=lambda: got.append(sink.jpeg(timeout=WAIT))) for _ in range(50)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(got) == 50 and len({g[1] for g in got}) == 1 and sink.encodes == 1


def test_viewers_are_capped(monitor):
    port = monitor.server.server_address[1]
    monitor.previews["cam1"] = sink = PreviewSink()
    sink.write(FrameResult(Frame(0, 0.0, np.zeros((64, 64, 3), np.uint8))))
    viewers = []  # (connection, response): both kept, since a response dropped closes its socket, ending that viewer
    try:
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
            c.request("GET", "/sources/cam1/mjpeg")
            viewers.append((c, c.getresponse()))
            assert viewers[-1][1].status == 200
        assert _get(port, "/sources/cam1/mjpeg")[0] == 503  # a third viewer waits its turn
    finally:
        for c, r in viewers:
            r.close()
            c.close()


def _raw(port: int, request: bytes) -> tuple[str, bytes]:
    """Send ``request`` as it is; the status line and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def test_every_route_of_the_table_and_what_is_not_one(monitor):
    """Paths are matched whole, after the query and trailing slashes are dropped; anything else is a 404 that names the routes."""
    port = monitor.server.server_address[1]
    monitor.previews["cam1"] = sink = PreviewSink()
    sink.write(FrameResult(Frame(0, 0.0, np.zeros((64, 64, 3), np.uint8))))
    for path in ("/", "//", "/?x=1", "/healthz", "/healthz/", "/healthz?x=1", "/metrics", "/metrics/", "/api/state", "/api/state/"):
        assert _get(port, path)[0] == 200, path
    code, headers, body = _get(port, "/sources/cam1/jpeg/")
    assert code == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert _get(port, "/")[1]["Content-Type"] == "text/html; charset=utf-8"
    assert _get(port, "/metrics")[1]["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    code, _, body = _get(port, "/sources/cam1/png")
    assert code == 404 and body == b"use /sources/<id>/mjpeg or /sources/<id>/jpeg\n"
    for path in ("/sources/nope/png", "/sources//jpeg"):  # an unknown source first, whatever the kind
        assert _get(port, path)[:3:2] == (404, b"no such source\n"), path
    for path in ("/API/STATE", "/sources", "/sources/cam1", "/sources/cam1/jpeg/x", "/index.html", "/%68ealthz", "/healthz#x"):
        code, headers, body = _get(port, path)
        assert (code, body) == (404, b"not found; try /, /healthz, /metrics or /sources/<id>/mjpeg\n"), path
        assert headers["Content-Type"] == "text/plain" and headers["Cache-Control"] == "no-store"


def test_only_get_is_answered(monitor):
    """Other methods get the standard library's 501 before any check or route (HEAD has no body)."""
    port = monitor.server.server_address[1]
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"):
        status, body = _raw(port, f"{method} /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
        assert status == f"HTTP/1.0 501 Unsupported method ('{method}')", status
        assert (method == "HEAD") == (body == b"")


def test_under_sources_everything_waits_for_the_models_and_the_rest_answers():
    with Monitor("127.0.0.1", 0, Metrics(), starting=True) as mon:
        port = mon.server.server_address[1]
        for path in ("/sources/door/jpeg", "/sources/door/png", "/sources/a/b/c", "/sources/x/"):
            code, _, body = _get(port, path)
            assert code == 503 and body.startswith(b"starting: the models are loading"), path
        assert _get(port, "/sources")[0] == 404 and _get(port, "/nope")[0] == 404 and _get(port, "/")[0] == 200
        mon.ready()
        assert _get(port, "/sources/a/b/c")[0] == 404 and _get(port, "/sources/door/jpeg")[0] == 404


def test_probe_slots_answer_health_and_metrics_only_and_still_check_the_token(sockets):
    token = "s3cr3t-0123456789abcdef"
    with Monitor("127.0.0.1", 0, Metrics(), token=token, max_clients=1, timeout=60.0, head_timeout=600.0) as mon:
        mon.add_source("door", lambda: SourceHealth("cam", "streaming"))
        port = mon.server.server_address[1]
        slow = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        slow.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sockets.append(slow)
        wait_until(lambda: mon.connections()["accepted"] == 1, WAIT, "the slow client holding the one slot")
        bearer = {"Authorization": f"Bearer {token}"}
        assert _get(port, "/healthz")[0] == 401  # the token first, on a probe slot too
        assert _get(port, "/healthz/", headers=bearer)[0] == 200 and _get(port, "/metrics?x=1", headers=bearer)[0] == 200
        for path in ("/", "/api/state", "/sources/door/jpeg", "/nope"):
            code, _, body = _get(port, path, headers=bearer)
            assert code == 503 and b"server busy" in body, path
        assert _get(port, "/healthz", host="attacker.example", headers=bearer)[0] == 421
        assert mon.connections()["probe_only"] >= 7


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def test_serving_is_information_not_a_warning(tiny_model, cli_env):
    r = run_cli(["--source", str(MEDIA[0]), "--model", str(tiny_model), "--max-frames", "3", "--serve", "127.0.0.1:0", "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    serving = [l for l in r.stderr.splitlines() if "serving" in l]
    assert len(serving) == 1 and re.match(r"fer-stream: serving http://127\.0\.0\.1:\d+/ \(dashboard\)", serving[0]), r.stderr
    assert "warning" not in serving[0] and "3 frames out of 3" in r.stdout
