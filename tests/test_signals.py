"""Stopping a run part-way leaves a finalized, playable MP4 and a flushed log."""

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import decode_video, media_file

VIDEO = media_file("720p60")


@pytest.fixture
def started(procs):
    """Start ``fer-stream`` processes; ``procs`` stops and reaps each when the test ends, pass or fail."""

    def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "fer_stream", *args]
        return procs.start(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    return start


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_signal_mid_file_leaves_a_playable_mp4(sig, code, tiny_model, cli_env, tmp_path, started):
    out, events, summary = tmp_path / "out.mp4", tmp_path / "e.jsonl", tmp_path / "s.json"
    args = ["--source", str(VIDEO), "--model", str(tiny_model), "--output", str(out), "--events", str(events)]
    proc = started([*args, "--summary", str(summary), "--quiet", "--batch-wait-ms", "50"], cli_env)
    partial = tmp_path / "e.partial.jsonl"  # outputs carry their final names only once complete
    deadline = time.monotonic() + 300
    while not partial.exists() or partial.stat().st_size < 2000:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no events written within 300 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    # It stops at the next frame and finalizes; generous for a busy machine, far less than the rest of the file.
    _, stderr = proc.communicate(timeout=120)
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


def _fragment_frames(path) -> int:
    """Video frames in the complete fragments of a (growing) MP4, read back with PyAV; 0 before the first."""
    import av

    n = 0
    try:
        with av.open(str(path)) as c:
            for packet in c.demux(video=0):
                n += packet.dts is not None
    except (av.error.FFmpegError, OSError, ValueError):
        pass  # nothing complete yet, or a fragment still being written: what came before counts
    return n


def _kill_after_a_fragment(proc: subprocess.Popen, partial, events=None) -> None:
    """SIGKILL ``proc`` once ``partial`` holds a complete fragment (and ``events`` a whole record):
    a condition on what is on disk, with a generous deadline, whatever the machine's speed."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if _fragment_frames(partial) > 0 and (events is None or (events.exists() and b"\n" in events.read_bytes())):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no complete fragment in {partial} within 300 s")
    proc.kill()
    proc.wait(timeout=60)


def test_sigkill_leaves_a_playable_partial_mp4(tiny_model, cli_env, tmp_path, started):
    """Killed without warning (out of memory, kill -9): the fragmented MP4 plays up to its last fragment."""
    out = tmp_path / "out.mp4"
    partial = tmp_path / "out.partial.mp4"
    # Every frame is annotated (no --live: a slow machine takes longer, it does not drop frames).
    proc = started(["--source", str(VIDEO), "--model", str(tiny_model), "--output", str(out), "--quiet"], cli_env)
    _kill_after_a_fragment(proc, partial)
    assert not out.exists()  # the finished name never holds an unfinished video
    written = decode_video(partial)
    assert written["size"] == (1280, 720) and len(written["times"]) >= 30  # at least one whole fragment
    assert written["times"] == sorted(written["times"])


def test_a_rerun_keeps_what_a_killed_run_left(tiny_model, cli_env, tmp_path, started):
    """SIGKILL, then the same command again: the killed run's partial video and log are kept,
    renamed NAME.recovered-<time>.EXT, each said in one line; the rerun writes its own."""
    out, events = tmp_path / "out.mp4", tmp_path / "e.jsonl"
    partial_video, partial_events = tmp_path / "out.partial.mp4", tmp_path / "e.partial.jsonl"
    args = ["--source", str(VIDEO), "--model", str(tiny_model), "--output", str(out), "--events", str(events), "--quiet"]
    _kill_after_a_fragment(started(args, cli_env), partial_video, partial_events)
    left = {"mp4": partial_video.read_bytes(), "jsonl": partial_events.read_bytes()}
    rerun = started([*args, "--max-frames", "20"], cli_env)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    for ext, data in left.items():
        kept = list(tmp_path.glob(f"*.recovered-*.{ext}"))
        assert len(kept) == 1 and kept[0].read_bytes() == data, (ext, kept)
        lines = [line for line in stderr.splitlines() if str(kept[0]) in line]
        assert len(lines) == 1 and "kept it as" in lines[0] and "partial" in lines[0]
    recovered_video = next(tmp_path.glob("out.recovered-*.mp4"))
    assert len(decode_video(recovered_video)["times"]) >= 30  # still plays
    records = next(tmp_path.glob("e.recovered-*.jsonl")).read_text().splitlines()
    assert records and json.loads(records[0])["frame"] == 0
    assert len(decode_video(out)["times"]) == 20 and len(events.read_text().splitlines()) == 20
    assert not list(tmp_path.glob("*.partial.*"))
