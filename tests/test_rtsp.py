"""Live cameras over RTSP, against GStreamer's RTSP server on loopback: outages, several cameras,
monitoring endpoints, segments and SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import Procs, decode_video, media_file
from rtsp import RtspServer, free_port, gst_rtsp_available, looped_copy

# Skipped where GStreamer's RTSP server is missing, except in CI (.ci/run sets FER_STREAM_REQUIRE_RTSP=1).
if not gst_rtsp_available() and os.environ.get("FER_STREAM_REQUIRE_RTSP") == "1":
    raise RuntimeError("FER_STREAM_REQUIRE_RTSP=1 but Debian's python3 cannot import GstRtspServer; see .ci/run")
pytestmark = pytest.mark.skipif(not gst_rtsp_available(), reason="GStreamer's RTSP server (python3-gi) is not installed")

WAIT = 240.0  # seconds any wait may take: generous, for a busy 2-core machine
TWO_PEOPLE = media_file("two_people")
PORTRAIT = media_file("436x384")


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """Looped copies long enough that no camera ends during a test."""
    d = tmp_path_factory.mktemp("rtsp_media")
    return {"a": looped_copy(TWO_PEOPLE, d / "a.mp4", 120), "b": looped_copy(PORTRAIT, d / "b.mp4", 120)}


class Run:
    """fer-stream in the background (started through the test's ``procs``), with its monitoring endpoints."""

    def __init__(self, args: list[str], env: dict[str, str], tmp: Path, procs: Procs) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.stderr = tmp / "stderr.txt"
        with open(self.stderr, "w") as err:  # the child has its own copy of the descriptor
            self.proc = procs.start(
                [sys.executable, "-m", "fer_stream", *args, "--serve", f"127.0.0.1:{self.port}", "-q"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def get(self, path: str, timeout: float = 30.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def health(self) -> tuple[int, dict]:
        code, body = self.get("/healthz")
        return code, json.loads(body)

    def wait_for(self, check, timeout: float = WAIT, what: str = "") -> None:
        """Poll ``check()`` until true. Not there yet: refused, reset or timed-out connections, a
        server still starting (no such source yet, KeyError), half a body (ValueError)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"fer-stream exited early ({self.proc.returncode}): {self.stderr.read_text()}"
            try:
                if check():
                    return
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; stderr: {self.stderr.read_text()}")

    def metric(self, name: str, **labels: str) -> float:
        _, body = self.get("/metrics")
        want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in body.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM, as a service manager stops it; returns the exit code once it has finished its outputs."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        self.stdout = out
        return self.proc.returncode


def _frames(run: Run, sid: str) -> int:
    return run.health()[1]["sources"][sid]["frames"]


def test_annotates_a_live_camera_with_health_metrics_and_mjpeg(tiny_model, cli_env, tmp_path, long_videos, procs):
    import cv2
    import numpy as np

    with RtspServer({"cam": long_videos["a"]}, procs=procs) as server:
        run = Run(
            [
                "--source",
                f"door={server.url('cam')}",
                "--model",
                str(tiny_model),
                "--output",
                str(tmp_path / "out.mp4"),
                "--events",
                str(tmp_path / "ev.jsonl"),
                "--summary",
                str(tmp_path / "s.json"),
            ],
            cli_env,
            tmp_path,
            procs,
        )
        counted = ("fer_stream_frames_total", "fer_stream_faces_total", "fer_stream_latency_seconds_count")
        run.wait_for(
            lambda: _frames(run, "door") > 60 and all(run.metric(m, source="door") > 30 for m in counted),
            what="60 frames read, 30 written with their faces",
        )  # a busy machine drops more frames: what is written lags what is read
        code, h = run.health()
        assert code == 200 and h["status"] == "ok" and h["sources"]["door"]["state"] == "streaming"
        assert run.metric("fer_stream_batch_size_count") > 0
        assert run.metric("fer_stream_source_up", source="door") == 1
        _, text = run.get("/metrics")
        assert b'fer_stream_predictions_total{label="' in text or b'fer_stream_predictions_total{source="door",label="' in text
        # One part of the MJPEG stream: a JPEG of the annotated picture at the camera's size.
        with urllib.request.urlopen(run.base + "/sources/door/mjpeg", timeout=60) as r:
            assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = b""
            while b"\r\n\r\n" not in head:
                head += r.read(1)
            length = int([l for l in head.decode().split("\r\n") if l.lower().startswith("content-length")][0].split(":")[1])
            jpeg = r.read(length)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (512, 512, 3)
        assert run.get("/sources/nope/mjpeg")[0] == 404
        assert run.terminate() == 128 + signal.SIGTERM
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["live"] and s["source_id"] == "door" and s["stopped_by"] == "SIGTERM"
    assert s["frames_in"] > 60 and s["frames_out"] > 30 and s["frames_out"] + s["dropped"] <= s["frames_in"]
    video = decode_video(tmp_path / "out.mp4")
    assert video["size"] == (512, 512) and len(video["times"]) == s["frames_out"]
    records = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert records and all(r["track"] >= 1 for r in records) and any("label" in r for r in records)


def test_reconnects_when_the_camera_comes_back(tiny_model, cli_env, tmp_path, long_videos, procs):
    server = RtspServer({"cam": long_videos["a"]}, procs=procs).start()
    try:
        run = Run(
            [
                "--source",
                server.url("cam"),
                "--model",
                str(tiny_model),
                "--stall-timeout",
                "2",
                "--events",
                str(tmp_path / "ev.jsonl"),
                "--summary",
                str(tmp_path / "s.json"),
            ],
            cli_env,
            tmp_path,
            procs,
        )
        written = lambda: run.metric("fer_stream_frames_total", source="cam1")
        run.wait_for(lambda: written() > 30, what="frames before the outage")
        server.stop()  # the camera vanishes mid-stream
        run.wait_for(lambda: run.health()[1]["sources"]["cam1"]["state"] == "reconnecting", what="the outage to be seen")
        code, h = run.health()
        assert code == 503 and h["status"] == "degraded" and h["sources"]["cam1"]["outage_since"]
        before = written()
        time.sleep(1.0)  # an outage of at least a second, to find in the events' times
        server.start()  # back on the same port
        run.wait_for(lambda: written() > before + 30, what="frames after the camera came back")
        assert run.health()[0] == 200
        assert run.metric("fer_stream_reconnects_total", source="cam1") >= 1
        assert run.terminate() == 128 + signal.SIGTERM
    finally:
        server.stop()
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["reconnects"] >= 1 and s["outages"] >= 1
    times = [json.loads(line)["time"] for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    at = gaps.index(max(gaps))
    assert gaps[at] >= 1.0  # the outage shows as a gap in time, with events on both sides of it
    assert at >= 20 and len(times) - at >= 20
    err = run.stderr.read_text()
    assert err.count("reconnecting") >= 1 and "streaming again after" in err and "Traceback" not in err


def test_a_camera_that_never_answers_is_retried_and_reported(tiny_model, cli_env, tmp_path, procs):
    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    run = Run(["--source", url, "--model", str(tiny_model), "--stall-timeout", "1"], cli_env, tmp_path, procs)
    run.wait_for(lambda: run.health()[1]["sources"]["cam1"]["state"] == "reconnecting", what="reconnecting state")
    run.wait_for(lambda: run.metric("fer_stream_connect_failures_total", source="cam1") >= 2, what="several attempts with backoff")
    code, h = run.health()
    cam = h["sources"]["cam1"]
    assert code == 503 and cam["state"] == "reconnecting" and cam["frames"] == 0
    assert "cannot open stream" in cam["last_error"]
    assert run.metric("fer_stream_connect_failures_total", source="cam1") >= 2
    assert run.proc.poll() is None  # still running, still trying
    assert run.terminate() == 128 + signal.SIGTERM
    err = run.stderr.read_text()
    assert err.count("reconnecting (for ever)") == 1  # one line per outage, not per attempt
    assert "Traceback" not in err


def test_two_cameras_share_batches_and_write_playable_segments(tiny_model, cli_env, tmp_path, long_videos, procs):
    out = tmp_path / "out"
    out.mkdir()
    with RtspServer({"a": long_videos["a"], "b": long_videos["b"]}, procs=procs) as server:
        run = Run(
            [
                "--source",
                f"front={server.url('a')}",
                "--source",
                f"back={server.url('b')}",
                "--model",
                str(tiny_model),
                "--output",
                str(out / "{source}.mp4"),
                "--segment-seconds",
                "2",
                "--events",
                str(out / "{source}.jsonl"),
                "--live-max-hz",
                "0",
                "--summary",
                str(tmp_path / "s.json"),
                # Close-up cameras: the short-range detector's ~3 ms per frame keeps both cameras' crops
                # arriving together, which is what this test of cross-camera batching needs.
                "--detector",
                "short",
            ],
            cli_env,
            tmp_path,
            procs,
        )
        run.wait_for(lambda: min(_frames(run, "front"), _frames(run, "back")) > 150, what="both cameras")
        assert run.metric("fer_stream_frames_total", source="front") > 0 and run.metric("fer_stream_frames_total", source="back") > 0
        assert run.terminate() == 128 + signal.SIGTERM
    s = json.loads((tmp_path / "s.json").read_text())
    assert set(s["sources"]) == {"front", "back"} and s["stopped_by"] == "SIGTERM"
    assert s["mixed_batches"] > 0  # one classifier, batches holding both cameras' faces
    for sid, size in (("front", (512, 512)), ("back", (436, 384))):
        segments = [Path(p) for p in s["sources"][sid]["segments"]]
        assert len(segments) >= 2
        for seg in segments:
            assert seg.name.startswith(f"{sid}-") and seg.exists()
            v = decode_video(seg)  # each closed segment plays on its own
            assert v["size"] == size and len(v["times"]) > 0 and v["times"][0] == pytest.approx(0, abs=0.05)
        records = [json.loads(line) for line in (out / f"{sid}.jsonl").read_text().splitlines()]
        assert records and {r["source"] for r in records} == {sid}
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(
        Path(p).name for sid in ("front", "back") for p in s["sources"][sid]["segments"]
    )


def test_a_camera_password_is_never_shown(tiny_model, cli_env, tmp_path, long_videos, procs):
    """rtsp://user:password@... : the password appears in no endpoint, log line, summary or event."""
    secret = "S3cret-pa55"
    server = RtspServer({"cam": long_videos["a"]}, procs=procs).start()
    try:
        url = server.url("cam").replace("rtsp://", f"rtsp://admin:{secret}@")
        run = Run(
            [
                "--source",
                url,
                "--model",
                str(tiny_model),
                "--stall-timeout",
                "1",
                "--events",
                str(tmp_path / "e.jsonl"),
                "--summary",
                str(tmp_path / "s.json"),
            ],
            cli_env,
            tmp_path,
            procs,
        )
        run.wait_for(lambda: run.metric("fer_stream_frames_total", source="cam1") > 10, what="frames")
        server.stop()  # an outage: its warning names the camera
        run.wait_for(lambda: run.health()[1]["sources"]["cam1"]["state"] == "reconnecting", what="the outage")
        run.wait_for(lambda: "admin:***@" in (run.health()[1]["sources"]["cam1"]["last_error"] or ""), what="a failed reconnect")
        code, health = run.health()
        shown = [json.dumps(health), run.get("/metrics")[1].decode()]
        cam = health["sources"]["cam1"]
        assert "admin:***@" in cam["url"] and "admin:***@" in cam["last_error"]  # failed reconnects name the camera
        assert run.terminate() == 128 + signal.SIGTERM
    finally:
        server.stop()
    err = run.stderr.read_text()
    assert "reconnecting" in err
    summary = (tmp_path / "s.json").read_text()
    assert "admin:***@" in json.loads(summary)["source"]
    for text in shown + [err, summary, (tmp_path / "e.jsonl").read_text()]:
        assert secret not in text
