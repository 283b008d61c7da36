"""Issue 16's outputs, on their own: leftovers kept, partials never written through, bounded
timelines, colours for any label, CSV cells a spreadsheet never runs.

No test data and no real model: these run in the fast tier (``pytest -m "not media"``).
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fer_stream.errors import SinkError
from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction, Quality
from fer_stream.io import report
from fer_stream.io.report import TimelineSink, label_colors, write_report, write_timeline
from fer_stream.io.sinks import EventSink, SegmentedVideoSink, VideoSink, partial_path, spreadsheet_safe, write_atomic

BOX = Box(10, 10, 40, 40)


def _face(track: int | None, probs: dict[str, float], *, crop: bool = True, box: Box = BOX) -> Face:
    top = sorted(probs.items(), key=lambda kv: -kv[1])
    quality = Quality(size_px=40, sharpness=50.0, score=0.9)
    face = Face(box, 0.9, np.full((16, 16, 3), 100, np.uint8) if crop else None, quality=quality, track=track)
    return face.with_prediction(Prediction(probs=tuple(top), flagged=top[0][1] < 0.7))


def _frame(i: int, t: float, faces: list[Face], size: tuple[int, int] = (64, 48)) -> FrameResult:
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 1] = (i * 16) % 256
    return FrameResult(Frame(i, t, image, captured=time.monotonic()), tuple(faces))


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


# -- CSV cells a spreadsheet would run -------------------------------------------------------------


def test_text_cells_that_start_like_a_formula_are_quoted_and_numbers_stay_numbers():
    for text in ("=1+2", "+1", "-sad", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_safe(text) == "'" + text
    for kept in ("happy", "", '{"=": 1}', "[-3, 4]"):
        assert spreadsheet_safe(kept) == kept
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(-3) == -3


def test_event_and_timeline_csv_never_start_a_text_cell_with_a_formula(tmp_path):
    labels = ('=HYPERLINK("http://evil")', "-sad", "@cmd", "happy")
    probs = {labels[0]: 0.6, labels[1]: 0.2, labels[2]: 0.1, labels[3]: 0.1}
    events = tmp_path / "e.csv"
    timeline = TimelineSink(labels)
    with EventSink(events, source_id="+door") as sink:
        for i in range(6):
            result = _frame(i, -0.5 + i * 0.5, [_face(3, probs)])
            sink.write(result)
            timeline.write(result)
    write_timeline(tmp_path / "t.csv", timeline)
    for path in (events, tmp_path / "t.csv"):
        rows = list(csv.reader(path.open(newline="")))
        cells = [cell for row in rows for cell in row]
        for cell in cells:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only a number may start so
        assert any(cell.startswith("'=HYPERLINK") for cell in cells)
    rows = list(csv.DictReader(events.open(newline="")))
    assert rows[0]["time"] == "-0.5" and rows[0]["source"] == "'+door" and rows[0]["label"] == '\'=HYPERLINK("http://evil")'
    header = next(csv.reader((tmp_path / "t.csv").open(newline="")))
    assert header == ["time_s", "track", "faces", "dominant", '\'=HYPERLINK("http://evil")', "'-sad", "'@cmd", "happy", "span_s"]


# -- report: any labels ----------------------------------------------------------------------------


def test_every_label_gets_a_colour_the_same_each_time():
    labels = ["happy", "bored", "confused", "sad", "x1", "x2"]
    colors = label_colors(labels)
    assert set(colors) == set(labels) and colors["happy"] == report.COLORS["happy"]
    assert len({colors[lab] for lab in labels}) == len(labels)  # distinct
    assert label_colors(labels) == colors  # deterministic
    assert label_colors(reversed(labels)) == colors  # whatever the order (the dashboard sees no model order)
    many = label_colors([f"l{i}" for i in range(40)])
    assert all(c.startswith("#") for c in many.values())


def test_a_report_for_labels_without_built_in_colours_is_written(tmp_path):
    labels = ("bored", "engaged", "confused")
    timeline = TimelineSink(labels)
    for i in range(30):
        timeline.write(_frame(i, i / 10, [_face(1, {"bored": 0.5, "engaged": 0.3, "confused": 0.2})]))
    summary = {"labels": {"bored": 30, "engaged": 0, "confused": 0}, "faces": 30, "tracks": [{}], "source": "x.mp4"}
    page = write_report(tmp_path / "r.html", timeline, summary).read_text()
    assert page.count("<svg") >= 3 and label_colors(labels)["bored"] in page


# -- bounded timeline on a very long run -----------------------------------------------------------


def test_a_very_long_run_keeps_a_bounded_timeline_and_says_what_it_merged_and_pooled(tmp_path):
    """30 000 s of a camera at one frame a second: one person always there, a passer-by every
    10 s (3 000 tracks). What is kept stays under the bounds; every face is still counted."""
    labels = ("happy", "sad", "neutral")
    timeline = TimelineSink(labels, bucket_s=1.0, max_flagged=20)
    seconds = 30_000
    passer = 100
    classified = 0
    for i in range(seconds):
        faces = [_face(1, {"happy": 0.8, "sad": 0.1, "neutral": 0.1}, crop=i == 0)]
        if i % 10 < 3:  # each passer-by is seen for 3 s
            faces.append(_face(passer + i // 10, {"happy": 0.2, "sad": 0.5, "neutral": 0.3}, crop=i % 10 == 0))
        classified += len(faces)
        timeline.write(_frame(i, float(i), faces))
    assert len(timeline.faces) <= report.MAX_BINS and len(timeline.cells) <= report.MAX_CELLS
    assert len(timeline.track_frames) <= report.MAX_TRACKS and len(timeline.thumbs) <= report.MAX_TRACKS
    assert len(timeline.flagged) <= 20 and len(timeline._flag_seen) <= 20
    assert timeline.merges >= 2 and timeline.bucket_s == 2.0**timeline.merges
    assert timeline.dropped_tracks >= 2_000 and timeline.track_frames[1] == seconds  # the long track is kept
    assert 1 in timeline.thumbs
    # Nothing is lost from the counts, only resolution and per-track detail.
    assert sum(timeline.faces.values()) == classified
    rows = timeline.rows()
    assert sum(r["faces"] for r in rows) == classified
    assert sum(timeline.track_frames.values()) + timeline.dropped_faces == classified
    pooled = [r for r in rows if r["track"] == report.DROPPED]
    assert pooled and all(r["dominant"] == "sad" for r in pooled)
    write_timeline(tmp_path / "t.csv", timeline)
    table = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert {float(r["span_s"]) for r in table} == {timeline.bucket_s} and {r["track"] for r in table} >= {"1", str(report.DROPPED)}
    summary = {"labels": {"happy": seconds, "sad": 0, "neutral": 0}, "faces": classified, "tracks": [], "source": "cam"}
    page = write_report(tmp_path / "r.html", timeline, summary).read_text()
    assert f"merged into {timeline.bucket_s:g} s bins" in page and f"{timeline.dropped_tracks} shorter tracks" in page


def test_a_short_run_merges_and_pools_nothing(tmp_path):
    timeline = TimelineSink(("happy", "sad"))
    for i in range(100):
        timeline.write(_frame(i, i / 10, [_face(i // 10, {"happy": 0.9, "sad": 0.1})]))
    assert timeline.merges == 0 and timeline.dropped_tracks == 0 and len(timeline.thumbs) == 10
    assert report.timeline_bounds(timeline) == []
