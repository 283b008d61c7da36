"""Stopping a run part-way leaves a finalized, playable MP4 and a flushed log."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import decode_video, media_file

VIDEO = media_file("720p60")


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_signal_mid_file_leaves_a_playable_mp4(sig, code, tiny_model, cli_env, tmp_path, procs):
    out, events, summary = tmp_path / "out.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    proc = procs.start(
        [
            sys.executable,
            "-m",
            "fer_stream",
            "--source",
            str(VIDEO),
            "--model",
            str(tiny_model),
            "--output",
            str(out),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "--quiet",
            "--batch-wait-ms",
            "50",
        ],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = tmp_path / "e.partial.jsonl"  # outputs carry their final names only once complete
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 2000):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    start = time.monotonic()
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - start < 10, "did not stop within a few seconds"
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr

    written = decode_video(out)
    total = len(decode_video(VIDEO)["times"])
    assert 0 < len(written["times"]) < total
    assert written["audio"] is not None
    s = json.loads(summary.read_text())
    assert s["stopped_by"] == signal.Signals(sig).name
    assert s["frames_out"] == len(written["times"])
    lines = events.read_text().splitlines()
    assert lines and all(json.loads(l)["frame"] < s["frames_out"] for l in lines)
    assert not list(tmp_path.glob("*.partial.*"))  # renamed when finished


def test_sigkill_leaves_a_playable_partial_mp4(tiny_model, cli_env, tmp_path, procs):
    """Killed without warning (out of memory, kill -9): the fragmented MP4 plays up to its last fragment."""
    out = tmp_path / "out.mp4"
    partial = tmp_path / "out.partial.mp4"
    proc = procs.start(
        [sys.executable, "-m", "fer_stream", "--source", str(VIDEO), "--model", str(tiny_model), "--output", str(out), "--live", "--quiet"],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 200_000):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    assert not out.exists()  # the finished name never holds an unfinished video
    written = decode_video(partial)
    assert written["size"] == (1280, 720) and len(written["times"]) >= 30  # at least one whole fragment
    assert written["times"] == sorted(written["times"])
