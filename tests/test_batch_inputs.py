"""``fer-stream batch`` inputs: names that could forge lines, URLs that never answer, missing entries, progress."""

from __future__ import annotations

import re
import shutil

from conftest import SMALLEST_VIDEO as PORTRAIT
from conftest import manifest_by_key as _latest
from conftest import run_cli
from conftest import video_copies as _videos

from fer_stream.analysis.archive import Job
from fer_stream.errors import printable

FRAMES = 12


def test_names_with_control_characters_are_printed_escaped(tiny_model, cli_env, tmp_path):
    vids = tmp_path / "vids"
    vids.mkdir()
    bad = vids / "bad\nFORGED bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    good = vids / "good\x1b[2J\nFORGED good.mp4"
    shutil.copyfile(PORTRAIT, good)
    args = ["batch", str(vids), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--max-frames", "5", "--no-video"]
    r = run_cli(args, cli_env)
    assert r.returncode == 1, r.stderr  # the bad one failed
    lines = re.split(r"[\r\n]", r.stdout + r.stderr)
    assert not [line for line in lines if line.startswith("FORGED")]
    assert "\x1b" not in r.stdout + r.stderr
    shown = printable(str(bad))
    assert f"  failed: {shown}: " in r.stdout  # the summary's line
    assert f"fer-stream: warning: {shown}: " in r.stderr  # the warning as it failed
    assert "1 of 2 videos done, 1 failed" in r.stdout
    r = run_cli(["--source", str(bad), "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and shown in r.stderr  # the run command's error line
    assert printable("a\nb\tc\x1b\u202ed") == "a\\nb\\tc\\x1b\\u202ed" and printable("café") == "café"


def test_a_url_that_never_connects_and_a_missing_entry_fail_alone(tiny_model, cli_env, tmp_path):
    """A list with a camera that refuses, a file that does not exist and a real video, one at a time:
    the first two are recorded as failed (the camera after its reconnect budget), the video runs."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"rtsp://127.0.0.1:1/cam\nmissing.mp4\n{PORTRAIT}\n")
    out = tmp_path / "out"
    args = ["batch", str(listing), "--out", str(out), "--model", str(tiny_model), "--max-frames", "5", "--no-video", "--jobs", "1", "-q"]
    r = run_cli(args, cli_env)
    assert r.returncode == 1, r.stderr
    assert "1 of 3 videos done, 2 failed" in r.stdout
    latest = {rec["input"]: rec for rec in _latest(out).values()}
    cam, missing, video = latest["rtsp://127.0.0.1:1/cam"], latest[str(tmp_path / "missing.mp4")], latest[str(PORTRAIT)]
    assert cam["status"] == "failed" and "gave up after 3 reconnect attempts" in cam["error"]
    assert missing["status"] == "failed" and "No such file" in missing["error"] and not (out / missing["name"]).exists()
    assert video["status"] == "done" and video["frames"] == 5
    r = run_cli(["batch", str(tmp_path / "nothing-here"), "--out", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and "does not exist" in r.stderr  # a missing argument (not a list entry) is still an error


def test_batch_configs_give_urls_a_reconnect_budget(tmp_path):
    from fer_stream.analysis.archive import video_config
    from fer_stream.config import load_config

    job = Job("rtsp://127.0.0.1:1/cam", "k", "rtsp://127.0.0.1:1/cam", name="cam")
    cfg = video_config(load_config(None, {"source.max_reconnects": -1}), job, tmp_path, video=False)
    assert (cfg.source.max_reconnects, cfg.source.max_outage_s) == (3, 60.0)  # never "for ever" in a batch
    settings = {"source.batch_max_reconnects": 7, "source.batch_max_outage_s": 5.0}
    custom = video_config(load_config(None, settings), job, tmp_path, video=False)
    assert (custom.source.max_reconnects, custom.source.max_outage_s) == (7, 5.0)


def test_batch_shows_each_video_s_frames(tiny_model, cli_env, tmp_path):
    vids = _videos(tmp_path / "vids", "ab")
    args = ["batch", str(vids), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--max-frames", str(FRAMES), "--no-video"]
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    shown = re.split(r"[\r\n]", r.stderr)
    for name in "ab":  # a log keeps each video's last count
        assert any(re.match(rf"{name}: .*\b{FRAMES}/{FRAMES}\b.*frame", line) for line in shown), r.stderr
    assert any(re.match(r"videos: .*\b2/2\b", line) for line in shown), r.stderr
