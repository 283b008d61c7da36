"""Output files: existing files never replaced, partial files never written through a link, one file never two outputs."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
from conftest import WORKER_VARS, media_file, run_cli
from conftest import timed_result as _frame

from fer_stream.errors import SinkError
from fer_stream.io.sinks import SegmentedVideoSink, VideoSink, partial_path, write_atomic

VIDEO = media_file("436x384")


# -- leftovers of a killed run ---------------------------------------------------------------------


def test_a_leftover_partial_is_kept_under_a_new_name_never_replacing_one(tmp_path, caplog):
    out = tmp_path / "talk.mp4"
    leftover = tmp_path / "talk.partial.mp4"
    leftover.write_bytes(b"129 frames of a killed run")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(leftover.stat().st_mtime))
    taken = tmp_path / f"talk.recovered-{stamp}.mp4"
    taken.write_bytes(b"recovered by an earlier rerun")
    with caplog.at_level(logging.WARNING, logger="fer_stream"):
        assert partial_path(out) == leftover
    assert not leftover.exists()
    kept = tmp_path / f"talk.recovered-{stamp}-2.mp4"
    assert kept.read_bytes() == b"129 frames of a killed run" and taken.read_bytes() == b"recovered by an earlier rerun"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and str(leftover) in lines[0] and str(kept) in lines[0]


def test_a_link_or_an_empty_file_left_at_the_partial_name_is_removed_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "e.jsonl"
    (tmp_path / "e.partial.jsonl").symlink_to(victim)
    assert partial_path(out) == tmp_path / "e.partial.jsonl"
    assert not os.path.lexists(tmp_path / "e.partial.jsonl") and victim.read_text() == "keep me\n"
    (tmp_path / "e.partial.jsonl").write_bytes(b"")  # nothing in it: nothing to keep
    partial_path(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim.txt"]


def test_write_atomic_keeps_a_leftover_and_writes_bytes(tmp_path):
    (tmp_path / "m.partial.onnx").write_bytes(b"half a model")
    write_atomic(tmp_path / "m.onnx", b"\x00model")
    assert (tmp_path / "m.onnx").read_bytes() == b"\x00model"
    kept = list(tmp_path.glob("m.recovered-*.onnx"))
    assert len(kept) == 1 and kept[0].read_bytes() == b"half a model"


def test_write_atomic_leaves_no_partial_when_the_writer_fails(tmp_path):
    def broken(f):
        f.write("half")
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        write_atomic(tmp_path / "r.html", broken)
    assert list(tmp_path.iterdir()) == []  # a next run finds nothing to recover from this one


# -- the video's partial file: created at once, exclusively ----------------------------------------


def test_a_network_recording_creates_its_partial_before_the_first_frame_and_never_writes_a_link(tmp_path):
    """The sink of a camera not yet connected (size 0) holds its partial file from the start;
    a link swapped in before the first frame is not written through, and not renamed into place."""
    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me")
    out = tmp_path / "cam.mp4"
    partial = tmp_path / "cam.partial.mp4"
    sink = VideoSink(out, width=0, height=0, fps=10.0)
    assert partial.is_file() and not partial.is_symlink()  # there already: nobody can plant a link there unseen
    partial.unlink()  # someone with write access to the folder swaps it for a link
    partial.symlink_to(victim)
    for i in range(5):
        sink.write(_frame(i, i / 10, []))
    with pytest.raises(SinkError, match="replaced"):
        sink.close()
    assert victim.read_bytes() == b"keep me"
    assert partial.is_symlink() and not out.exists()


def test_a_video_sink_that_never_got_a_frame_leaves_nothing(tmp_path):
    VideoSink(tmp_path / "cam.mp4", width=0, height=0, fps=10.0).close()
    assert list(tmp_path.iterdir()) == []


def test_a_video_sink_writes_to_its_own_file_even_if_a_link_appears_when_it_opens(tmp_path, monkeypatch):
    """A segment's sink opens its encoder on its first frame: a link planted at that moment (the
    race the issue names) is never written through; every segment still plays."""
    import av

    victim = tmp_path / "victim.bin"
    victim.write_bytes(b"keep me")
    original = VideoSink._open
    planted: list[Path] = []

    def open_after_a_link_was_planted(self, width, height):
        if not os.path.lexists(self.partial):
            self.partial.symlink_to(victim)
            planted.append(self.partial)
        return original(self, width, height)

    monkeypatch.setattr(VideoSink, "_open", open_after_a_link_was_planted)
    with SegmentedVideoSink(tmp_path / "door.mp4", source_id="cam", seconds=1.0, fps=10.0) as seg:
        for i in range(25):
            seg.write(_frame(i, i / 10, []))
    assert victim.read_bytes() == b"keep me"
    assert planted == []  # the partial was there already (ours), so no link could be planted
    assert len(seg.closed_segments) == 3
    for path in seg.closed_segments:
        with av.open(str(path)) as c:
            assert sum(1 for _ in c.decode(video=0)) > 0


def test_two_outputs_on_one_file_are_refused_before_models_load(cli_env, tmp_path):
    same = tmp_path / "same.csv"
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(same)
    no_model = str(tmp_path / "no-model")  # never reached: outputs are checked first
    for args, names in (
        (["--events", str(same), "--timeline", str(same)], ("--events", "--timeline")),
        (["--events", str(same), "--timeline", str(link)], ("--events", "--timeline")),
        (["--timeline", str(tmp_path / "t.csv"), "--events", str(tmp_path / "sub" / ".." / "t.csv")], ("--events", "--timeline")),
    ):
        r = run_cli(["--source", str(VIDEO), *args, "--model", no_model, "-q"], cli_env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "are the same file" in r.stderr and all(n in r.stderr for n in names), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "sub"]


def test_hard_links_to_one_file_are_one_output(cli_env, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("old\n")
    os.link(a, tmp_path / "b.csv")
    r = run_cli(
        ["--source", str(VIDEO), "--events", str(a), "--timeline", str(tmp_path / "b.csv"), "--overwrite", "--model", "x/", "-q"], cli_env
    )
    assert r.returncode == 2 and "are the same file" in r.stderr
    assert a.read_text() == "old\n"


def test_the_summary_is_written_even_when_the_report_fails(tiny_model, cli_env, tmp_path, monkeypatch, capsys):
    from fer_stream import cli
    from fer_stream.io import report

    for key in WORKER_VARS:  # in this process, as a worker would be told
        monkeypatch.setenv(key, cli_env[key])

    def broken(*args, **kwargs):
        raise ValueError("Invalid RGBA argument: None")

    monkeypatch.setattr(report, "write_report", broken)
    summary, page, timeline = tmp_path / "s.json", tmp_path / "r.html", tmp_path / "t.csv"
    argv = ["--source", str(VIDEO), "--model", str(tiny_model), "--max-frames", "5", "-q"]
    code = cli.main([*argv, "--report", str(page), "--timeline", str(timeline), "--summary", str(summary)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write report" in err and "Invalid RGBA" in err and "Traceback" not in err
    s = json.loads(summary.read_text())
    assert s["frames_out"] == 5 and "report" not in s["outputs"] and "timeline" in s["outputs"] and "report" in s["error"]
    assert timeline.is_file() and not page.exists() and not list(tmp_path.glob("*.partial.*"))


def test_outputs_never_replace_the_input_or_an_existing_file(tiny_model, cli_env, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(VIDEO.read_bytes())
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    before = video.read_bytes()
    for args in (
        ["--source", str(video), "--output", str(video), "--overwrite"],
        ["--source", str(link), "--output", str(video), "--overwrite"],
        ["--source", str(video), "--events", str(video.with_suffix(".jsonl")), "--output", str(link), "--overwrite"],
    ):
        r = run_cli(args + ["--model", str(tiny_model), "-q"], cli_env)
        assert r.returncode == 1 and "is the input" in r.stderr and r.stderr.count("\n") == 1
    assert video.read_bytes() == before
    events = tmp_path / "e.jsonl"
    events.write_text("yesterday's log\n")
    r = run_cli(["--source", str(video), "--events", str(events), "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode == 1 and "already exists; pass --overwrite" in r.stderr
    assert events.read_text() == "yesterday's log\n"  # untouched: refused before anything ran
    r = run_cli(
        ["--source", str(video), "--events", str(events), "--max-frames", "5", "--overwrite", "--model", str(tiny_model), "-q"], cli_env
    )
    assert r.returncode == 0, r.stderr
    assert len(events.read_text().splitlines()) == 5 and not list(tmp_path.glob("*.partial.*"))


def test_a_full_disk_ends_the_run_with_one_line_and_whole_records(tiny_model, cli_env, tmp_path, procs):
    """Files may not grow past 64 KB here (RLIMIT_FSIZE, as a full disk would stop them)."""
    import resource
    import signal
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    r = procs.run(
        [
            sys.executable,
            "-m",
            "fer_stream",
            "--source",
            str(VIDEO),
            "--model",
            str(tiny_model),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "-q",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer-stream: error: writing event log") and str(events) in lines[0]
    records = events.read_text().splitlines()  # kept, complete up to the failure, every line a whole record
    assert records and all(json.loads(line)["frame"] >= 0 for line in records)
    assert not list(tmp_path.glob("*.partial.*")) and not list(tmp_path.glob(".*.tmp"))
    s = json.loads(summary.read_text())  # the summary (small) still made it, with what was done
    assert 0 < s["frames_out"] < 270 and "error" in s


def test_a_planted_partial_file_link_is_replaced_not_written_through(tiny_model, cli_env, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "e.partial.jsonl").symlink_to(victim)
    r = run_cli(
        ["--source", str(VIDEO), "--events", str(tmp_path / "e.jsonl"), "--max-frames", "3", "--model", str(tiny_model), "-q"], cli_env
    )
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me\n" and len((tmp_path / "e.jsonl").read_text().splitlines()) == 3


def test_with_several_sources_a_failing_output_stops_the_run_non_zero(tiny_model, cli_env, tmp_path, procs):
    import resource
    import signal
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    r = procs.run(
        [
            sys.executable,
            "-m",
            "fer_stream",
            "--source",
            f"a={VIDEO}",
            "--source",
            f"b={VIDEO}",
            "--model",
            str(tiny_model),
            "--events",
            str(tmp_path / "{source}.jsonl"),
            "-q",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("fer-stream: error:")]
    assert 1 <= len(errors) <= 2 and all("writing event log" in e for e in errors)
    wrote = [p.strip() for line in r.stdout.splitlines() if line.startswith("wrote: ") for p in line[7:].split(",")]
    assert all(Path(p).is_file() for p in wrote)  # only what is there
    assert " 179 frames out of 179" not in r.stdout  # both cameras stopped early
