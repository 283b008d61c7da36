"""Publishers against real receivers: Debian's mosquitto broker (started here) and a local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import MEDIA, Procs, run_cli

from fer_stream.errors import ConfigError
from fer_stream.serve.mqtt import MqttPublisher, parse_mqtt_url
from fer_stream.serve.webhook import SIGNATURE, WebhookPublisher
from fer_stream.stream.episode_sink import record_key

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
if not Path(MOSQUITTO).exists() and os.environ.get("FER_STREAM_REQUIRE_BROKER") == "1":
    raise RuntimeError("FER_STREAM_REQUIRE_BROKER=1 but mosquitto is not installed; see .ci/run")
needs_broker = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="Debian's mosquitto is not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, deadline: float = 60.0, what: str = "") -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Broker:
    """mosquitto on a free loopback port, with persistence (a subscriber's session outlives a restart)."""

    def __init__(self, procs: Procs, folder: Path) -> None:
        self.procs, self.port = procs, _free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {folder}/\n"
            "autosave_interval 1\nmax_inflight_messages 20\n"
        )
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = self.procs.start([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        _wait(up, what="mosquitto to listen")

    def stop(self) -> None:
        assert self.proc is not None
        self.procs.stop(self.proc)  # SIGTERM: mosquitto saves its sessions, then exits


class Subscriber:
    """A persistent-session subscriber to PREFIX/#, keeping every message (topic, payload, retain, dup)."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}", clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.ready = threading.Event()

        def on_connect(client, userdata, flags, reason, properties):
            client.subscribe([(f"{prefix}/#", 1), ("homeassistant/#", 1)])

        self.client.on_connect = on_connect
        self.client.on_subscribe = lambda *a: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(30), "the subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), bool(msg.dup)))

    def on(self, topic: str) -> list[tuple[bytes, bool, bool]]:
        with self.lock:
            return [(p, r, d) for t, p, r, d in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(procs, tmp_path):
    return Broker(procs, tmp_path)


def test_a_rejected_url_setting_never_shows_its_password(cli_env, tmp_path):
    r = run_cli(["--source", "x.mp4", "--mqtt", "tcp://u:hunter2@broker"], cli_env)
    assert r.returncode != 0 and "hunter2" not in r.stderr and "u:***@broker" in r.stderr
    r = run_cli(["--source", "x.mp4", "--webhook", "hooks.example/x?token=hunter2"], cli_env)
    assert r.returncode != 0 and "hunter2" not in r.stderr


def test_mqtt_urls_are_checked_and_their_passwords_never_shown():
    assert parse_mqtt_url("mqtt://u:p%40ss@broker.lan:1884/site/a") == ("broker.lan", 1884, "site/a", "u", "p@ss", False)
    assert parse_mqtt_url("mqtts://broker") == ("broker", 8883, "fer-stream", None, None, True)
    for bad in ("http://broker", "mqtt://u:hunter2@broker:99999", "mqtt://broker/a/#"):
        with pytest.raises(ConfigError) as e:
            parse_mqtt_url(bad)
        assert "hunter2" not in str(e.value)


@needs_broker
def test_a_run_publishes_its_episodes_alerts_and_state_to_a_real_broker(broker, tiny_model, cli_env, tmp_path):
    sub = Subscriber(broker.port, "site")
    try:
        video = next(p for p in MEDIA if "portrait" in p.name)
        cfg = tmp_path / "alerts.toml"
        cfg.write_text('[[alerts]]\nlabel = "*"\nmin_seconds = 1\nmin_faces = 3\n')
        episodes, summary = tmp_path / "ep.jsonl", tmp_path / "s.json"
        args = ["--source", f"door={video}", "--model", str(tiny_model), "--max-frames", "90", "-q", "--config", str(cfg)]
        args += ["--mqtt", f"mqtt://user:hunter2@127.0.0.1:{broker.port}/site", "--mqtt-discovery"]
        r = run_cli(args + ["--episodes", str(episodes), "--summary", str(summary)], cli_env)
        assert r.returncode == 0, r.stderr
        assert "hunter2" not in r.stderr + r.stdout + summary.read_text()
        logged = [json.loads(line) for line in episodes.read_text().splitlines()]
        want = {record_key(x) for x in logged if x["type"] != "alert"}
        alerts = {record_key(x) for x in logged if x["type"] == "alert"}
        assert want and alerts
        got = lambda topic: {record_key(json.loads(p)) for p, _, _ in sub.on(topic)}
        _wait(lambda: got("site/door/episodes") == want and got("site/door/alerts") == alerts, what="every record on the broker")
        _wait(lambda: any(p == b"offline" for p, _, _ in sub.on("site/status")), what="status offline at the end")
        states = [json.loads(p) for p, _, _ in sub.on("site/door/state")]
        assert states and {"label", "faces", "episodes"} <= set(states[-1])
        config = json.loads(sub.on("homeassistant/sensor/fer_stream_door_expression/config")[0][0])
        assert config["state_topic"] == "site/door/state" and config["availability_topic"] == "site/status"
        s = json.loads(summary.read_text())["episodes"]["mqtt"]
        assert s["sent"] == s["queued"] == len(logged) + len(states) and s["dropped"] == 0
    finally:
        sub.close()


@needs_broker
def test_a_broker_down_for_10_s_loses_nothing_and_sends_nothing_twice(broker, tmp_path):
    sub = Subscriber(broker.port, "cams")
    pub = MqttPublisher(f"mqtt://127.0.0.1:{broker.port}/cams")
    try:
        sent: list[str] = []

        def produce(n0: int, n: int) -> None:
            for i in range(n0, n0 + n):
                rec = {"type": "start" if i % 3 == 0 else "update", "id": f"ep{i // 3}", "seq": i % 3, "source": "door", "track": 1}
                pub.send(rec)
                sent.append(record_key(rec))
                time.sleep(0.05)

        produce(0, 30)
        broker.stop()
        down = time.monotonic()
        produce(30, 60)  # while the broker is away: they wait in the queue
        time.sleep(max(0.0, 10.0 - (time.monotonic() - down)))
        broker.start()
        produce(90, 30)
        _wait(pub._connected.is_set, deadline=120, what="the publisher back on the broker")  # paho retries every 1-10 s
        pub.close()
        keys = lambda: [record_key(json.loads(p)) for p, _, dup in sub.on("cams/door/episodes")]
        _wait(lambda: set(keys()) == set(sent), deadline=90, what="every record after the outage")
        fresh = [record_key(json.loads(p)) for p, _, dup in sub.on("cams/door/episodes") if not dup]
        assert len(fresh) == len(set(fresh)), "a record was published twice"
        assert pub.counts()["dropped"] == 0 and pub.counts()["sent"] == len(sent) == 120
        assert pub.counts()["retries"] > 0  # it did wait for the broker
    finally:
        pub.close()
        sub.close()


def test_the_mqtt_queue_is_bounded_and_counts_what_it_drops(procs):
    port = _free_port()  # nothing listens: every record waits, and the queue fills
    pub = MqttPublisher(f"mqtt://127.0.0.1:{port}", queue=5, connect_timeout=0.5)
    try:
        for i in range(12):
            pub.send({"type": "start", "id": f"e{i}", "seq": 0, "source": "door", "track": i})
        assert pub.counts()["dropped"] == 7 and pub.counts()["queued"] == 5
    finally:
        pub.outbox.drain_s = 0.5
        pub.close()
    assert pub.counts()["dropped"] == 12  # the 5 still waiting at the end count as dropped too


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: answers ``plan`` codes in turn (then 200), keeps (headers, body) of each request."""

    def __init__(self, plan: list[int]) -> None:
        self.plan, self.got = list(plan), []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = outer.plan.pop(0) if outer.plan else 200
                outer.got.append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        super().__init__(("127.0.0.1", 0), H)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_webhooks_are_signed_retried_on_5xx_and_given_up_on_4xx():
    rx = Receiver([503, 503, 400])
    try:
        hook = WebhookPublisher(f"http://127.0.0.1:{rx.server_address[1]}/hook", secret="s3cret-key")
        hook.outbox.backoff = (0.05, 0.2)
        records = [{"type": "start", "id": "a", "seq": 0, "source": "door"}, {"type": "end", "id": "a", "seq": 1, "source": "door"}]
        for r in records:
            hook.send(r)
        hook.send({"type": "state", "source": "door", "label": "happy"})  # not for webhooks
        _wait(lambda: len(rx.got) == 4, what="4 requests")
        hook.close()
        codes = [c for _, _, c in rx.got]
        assert codes == [503, 503, 400, 200]
        for headers, body, _ in rx.got:
            want = "sha256=" + hmac.new(b"s3cret-key", body, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers[SIGNATURE], want)
            assert headers["X-Fer-Stream-Id"] == record_key(json.loads(body))
        assert [json.loads(b)["seq"] for _, b, _ in rx.got] == [0, 0, 0, 1]  # the first retried, then refused
        assert hook.counts()["rejected"] == 1 and hook.counts()["sent"] == 2 and hook.counts()["retries"] == 2
    finally:
        rx.shutdown()
        rx.server_close()


def test_a_webhook_receiver_that_is_down_is_retried_until_it_answers():
    port = _free_port()
    hook = WebhookPublisher(f"http://127.0.0.1:{port}/", queue=10)
    hook.outbox.backoff = (0.1, 0.3)
    hook.send({"type": "start", "id": "b", "seq": 0, "source": "door"})
    _wait(lambda: hook.counts()["retries"] >= 2, what="retries while nothing listens")
    rx = Receiver([])
    try:
        hook.target = f"http://127.0.0.1:{rx.server_address[1]}/"  # the receiver is back (on another port here)
        _wait(lambda: len(rx.got) == 1, what="the record once the receiver answers")
        hook.close()
        assert hook.counts()["sent"] == 1 and hook.counts()["dropped"] == 0
    finally:
        rx.shutdown()
        rx.server_close()


def _comings_and_goings(src: Path, dst: Path, cycles: int = 24) -> Path:
    """``src``'s first 2 s, then 1 s of an empty grey frame, ``cycles`` times (a face that comes and goes)."""
    import av
    import numpy as np

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        fps = round(float(stream.average_rate or 25))
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(2 * fps), inp.decode(video=0))]
    blank = np.full_like(frames[0], 128)
    with av.open(str(dst), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for _ in range(cycles):
            for image in frames + [blank] * fps:
                out.mux(s.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(s.encode(None))
    return dst


@needs_broker
def test_a_run_whose_broker_is_down_for_10_s_publishes_every_episode_once_it_returns(broker, tiny_model, cli_env, tmp_path, procs):
    """A live run (a file played at its frame rate) keeps making episodes while the broker is away."""
    video = _comings_and_goings(next(p for p in MEDIA if "portrait" in p.name), tmp_path / "long.mp4")
    cfg = tmp_path / "quick.toml"  # a face for 2 s, then none for 1 s: an episode starts and ends every 3 s
    cfg.write_text("[episodes]\nmin_faces = 2\ngone_s = 0.4\n")
    episodes, summary = tmp_path / "ep.jsonl", tmp_path / "s.json"
    sub = Subscriber(broker.port, "run")
    args = [sys.executable, "-m", "fer_stream", "--source", f"door={video}", "--live", "--model", str(tiny_model), "-q"]
    args += ["--config", str(cfg), "--mqtt", f"mqtt://127.0.0.1:{broker.port}/run", "--episodes", str(episodes), "--summary", str(summary)]
    try:
        err = tmp_path / "stderr.txt"
        with open(err, "w") as stderr:  # the child keeps its own copy
            run = procs.start(args, env=cli_env, stdout=subprocess.DEVNULL, stderr=stderr)
        logged = lambda: [json.loads(line) for line in episodes.read_text().splitlines()] if episodes.exists() else []
        _wait(lambda: len(sub.on("run/door/episodes")) >= 3, deadline=180, what="episodes on the broker")
        broker.stop()
        before = len(logged())
        time.sleep(10)
        assert len(logged()) > before, "no episode records while the broker was away: nothing was tested"
        broker.start()
        n = len(logged())
        _wait(lambda: len(logged()) > n + 3, deadline=120, what="more episodes after the broker returned")
        assert procs.stop(run, signal.SIGTERM) == 128 + signal.SIGTERM, err.read_text()[-2000:]
        want = {record_key(x) for x in logged() if x["type"] != "alert"}
        got = lambda: [record_key(json.loads(p)) for p, _, dup in sub.on("run/door/episodes")]
        _wait(lambda: set(got()) >= want, deadline=60, what="every logged record on the broker")
        fresh = [record_key(json.loads(p)) for p, _, dup in sub.on("run/door/episodes") if not dup]
        assert len(fresh) == len(set(fresh)) and set(fresh) <= want
        s = json.loads(summary.read_text())["episodes"]["mqtt"]
        assert s["dropped"] == 0 and s["retries"] > 0
    finally:
        sub.close()
