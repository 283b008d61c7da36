"""The sinks on their own: the tally, the JSONL event log and the MP4 video sink, with made-up frames."""

from __future__ import annotations

import csv
import dataclasses
import json
from fractions import Fraction

import numpy as np
import pytest
from conftest import labelled_face as _face
from conftest import numbered_result as _result

from fer_stream.frames import Pose
from fer_stream.io.sinks import EventSink, Sink, Tally, VideoSink


def test_every_sink_is_a_sink():
    for sink in (Tally(), EventSink.__new__(EventSink), VideoSink.__new__(VideoSink)):
        assert isinstance(sink, Sink)


def test_tally_counts_faces_labels_flags_and_unusable():
    tally = Tally()
    tally.write(_result(0, [_face(1, "happy"), _face(2, "sad", 0.5)]))
    tally.write(_result(1, [_face(1, "happy"), _face(3, None, usable=False)]))
    assert (tally.frames_out, tally.faces, tally.flagged, tally.unusable) == (2, 4, 1, 1)
    assert tally.labels == {"happy": 2, "sad": 1}


def test_event_log_writes_one_record_per_face_then_renames(tmp_path):
    path = tmp_path / "e.jsonl"
    with EventSink(path, source_id="door") as sink:
        sink.write(_result(0, [_face(1, "happy"), _face(2, None, usable=False)]))
        sink.write(_result(1, []))
        sink.write(_result(2, [_face(1, "sad", 0.6)]))
        assert not path.exists() and (tmp_path / "e.partial.jsonl").exists()  # finished names only when closed
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["frame"], r["face"], r["track"]) for r in records] == [(0, 0, 1), (0, 1, 2), (2, 0, 1)]
    assert records[0]["source"] == "door" and records[0]["label"] == "happy" and records[0]["flagged"] is False
    assert "label" not in records[1] and records[1]["quality"]["usable"] is False
    assert records[2]["flagged"] is True and records[2]["time"] == pytest.approx(0.08)


def test_video_sink_writes_every_frame_with_its_time(tmp_path):
    import av

    path = tmp_path / "v.mp4"
    with VideoSink(path, width=160, height=120, fps=25.0, time_base=Fraction(1, 25)) as sink:
        for i in range(20):
            sink.write(_result(i, []))
    with av.open(str(path)) as c:
        times = [round(f.time, 3) for f in c.decode(video=0)]
        assert (c.streams.video[0].width, c.streams.video[0].height) == (160, 120)
    assert times == [round(i / 25, 3) for i in range(20)]


def test_event_log_has_the_landmarks_only_when_asked_and_the_head_pose_always(tmp_path):
    points = np.random.default_rng(0).uniform(0, 160, (468, 3)).astype(np.float32)
    face = _face(1, "happy")
    face = dataclasses.replace(face, quality=dataclasses.replace(face.quality, pose=Pose(12.34, -5.67, 1.26)), landmarks=points)
    bare = _face(2, "sad")  # no landmark model ran on it
    for name, landmarks in (("on.jsonl", True), ("off.jsonl", False), ("on.csv", True), ("off.csv", False)):
        with EventSink(tmp_path / name, landmarks=landmarks) as sink:
            sink.write(_result(0, [face, bare]))
        if name.endswith(".csv"):
            rows = list(csv.DictReader((tmp_path / name).open()))
            assert ("landmarks" in rows[0]) == landmarks
            records = [{k: json.loads(v) if k in ("landmarks", "quality") and v else v for k, v in row.items()} for row in rows]
        else:
            records = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]
        assert {k: records[0]["quality"][k] for k in ("yaw", "pitch", "roll")} == {"yaw": 12.3, "pitch": -5.7, "roll": 1.3}
        assert "yaw" not in records[1]["quality"]
        if landmarks:
            assert np.array_equal(np.array(records[0]["landmarks"]), np.round(points.astype(np.float64), 1))
            assert not records[1].get("landmarks")  # a face without landmarks has none to write
        else:
            assert "landmarks" not in records[0]
