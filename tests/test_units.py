"""Sinks, metrics, overlay and the live classifier on their own, with made-up frames and a fake model.

No test data and no real model: these run in the fast tier (``pytest -m "not media"``).
"""

from __future__ import annotations

import json
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from conftest import wait_until

from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction, Quality, TrackKey
from fer_stream.health import SourceState
from fer_stream.io.sinks import EventSink, Sink, Tally, VideoSink
from fer_stream.serve.metrics import Metrics
from fer_stream.stream.live import LiveClassifier
from fer_stream.stream.overlay import Overlay
from fer_stream.stream.smooth import Smoother

LABELS = ("happy", "sad")


FACE_BOX = Box(40, 30, 60, 60)


def _face(track: int, label: str | None, conf: float = 0.9, *, usable: bool = True, box: Box = FACE_BOX) -> Face:
    quality = Quality(size_px=60, sharpness=50.0, score=0.9, reason=None if usable else "small")
    face = Face(box, 0.9, np.full((60, 60, 3), 120, np.uint8), quality=quality).with_track(track)
    if label is None:
        return face
    other = next(lab for lab in LABELS if lab != label)
    return face.with_prediction(Prediction(probs=((label, conf), (other, 1 - conf)), flagged=conf < 0.7))


def _result(i: int, faces: list[Face], size: tuple[int, int] = (160, 120)) -> FrameResult:
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 0] = (i * 8) % 256  # frames differ, so the encoder has something to do
    return FrameResult(Frame(i, i / 25, image, pts=i, captured=time.monotonic()), tuple(faces))


# -- sinks -----------------------------------------------------------------------------------------


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


# -- metrics ---------------------------------------------------------------------------------------


def test_metrics_count_frames_faces_labels_and_read_source_state():
    m = Metrics()
    m.frame_out("door", [_face(1, "happy"), _face(2, "sad", 0.5), _face(3, None, usable=False)], 0.04)
    m.frame_out("door", [], 0.02)
    m.batch(8, 0.1)
    m.watch("door", lambda: SourceState(dropped=3, reconnects=1, failures=2, up=True, queues={"frames": 4}))
    text = m.exposition().decode()

    def value(line_start: str) -> float:
        return float(next(line for line in text.splitlines() if line.startswith(line_start)).split()[-1])

    assert value('fer_stream_frames_total{source="door"}') == 2
    assert value('fer_stream_faces_total{source="door"}') == 3
    assert value('fer_stream_predictions_total{label="happy",source="door"}') == 1
    assert value('fer_stream_flagged_total{source="door"}') == 1
    assert value('fer_stream_unusable_faces_total{source="door"}') == 1
    assert value('fer_stream_dropped_frames_total{source="door"}') == 3
    assert value('fer_stream_source_up{source="door"}') == 1
    assert value('fer_stream_queue_depth{queue="frames",source="door"}') == 4
    assert value("fer_stream_batch_size_count") == 1


# -- overlay ---------------------------------------------------------------------------------------


def test_overlay_draws_on_a_copy_and_styles_flagged_and_unusable_faces():
    image = np.zeros((240, 320, 3), np.uint8)
    overlay = Overlay()
    drawn = overlay.draw(image, [_face(1, "happy", box=Box(20, 60, 80, 80)), _face(2, "sad", 0.4, box=Box(200, 60, 80, 80))])
    assert not image.any()  # the frame itself is untouched
    confident, flagged = drawn[:, :160], drawn[:, 160:]
    assert (np.abs(confident.astype(int) - overlay.confident).sum(-1) < 30).sum() > 100
    assert (np.abs(flagged.astype(int) - overlay.flagged).sum(-1) < 30).sum() > 100
    grey = overlay.draw(image, [_face(3, None, usable=False, box=Box(100, 60, 80, 80))])
    ys, xs = np.nonzero(grey.any(-1))
    assert ys.size and xs.min() >= 90 and np.allclose(grey[ys, xs, 0], grey[ys, xs, 1], atol=40)  # grey, inside its box
    assert overlay.draw(image, []).tobytes() == image.tobytes()


def test_overlay_draws_in_the_palette_s_state_colours():
    from fer_stream import palette
    from fer_stream.stream import overlay

    assert overlay.CONFIDENT == (46, 204, 64) == palette.rgb(palette.CONFIDENT)  # the colours the videos always had
    assert overlay.FLAGGED == (255, 176, 0) == palette.rgb(palette.FLAGGED)
    assert (overlay.UNCLASSIFIED, overlay.UNUSABLE) == ((160, 160, 160), (128, 128, 128))


# -- live classifier --------------------------------------------------------------------------------


class _FakeModel:
    """Probability of "happy" = the crop's mean brightness / 255; records its batches."""

    labels = LABELS
    max_batch = 4
    threshold = 0.7

    def __init__(self) -> None:
        self.batches: list[int] = []

    def preprocess(self, crops):
        import torch

        return torch.tensor([[float(np.mean(c)) / 255.0] for c in crops])

    def forward(self, pixels):
        self.batches.append(len(pixels))
        p = pixels[:, 0].numpy()
        return np.stack([p, 1 - p], axis=1).astype(np.float32)

    def postprocess(self, probs):
        from fer_stream.model.head import ClassifierHead

        return ClassifierHead(None, self.labels, self.threshold, fast=False).postprocess(probs)


def test_live_classifier_serves_the_newest_crop_of_each_track_across_sources():
    model = _FakeModel()
    live = LiveClassifier(model, Smoother("off"), max_hz=0)
    seen: list[tuple[str, int]] = []
    live.listen("a", lambda t: seen.append(("a", t)))
    live.listen("b", lambda t: seen.append(("b", t)))
    bright, dark = np.full((8, 8, 3), 230, np.uint8), np.full((8, 8, 3), 25, np.uint8)
    live.offer(TrackKey("a", 1), dark, 0.0)
    live.offer(TrackKey("a", 1), bright, 0.1)  # replaces the unclassified dark crop
    live.offer(TrackKey("b", 1), dark, 0.1)
    stop = threading.Event()
    t = threading.Thread(target=live.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_until(lambda: live.current(TrackKey("a", 1))[0] and live.current(TrackKey("b", 1))[0], 120, "both tracks classified")
    finally:
        stop.set()
        live.wake()
        t.join(120)
    assert not t.is_alive()
    (pa, va), (pb, vb) = live.current(TrackKey("a", 1)), live.current(TrackKey("b", 1))
    assert pa.label == "happy" and not pa.flagged and va == 1
    assert pb.label == "sad" and vb == 1
    assert sorted(seen) == [("a", 1), ("b", 1)] and sum(model.batches) == 2 and live.mixed_batches == 1
    live.retire([TrackKey("a", 1)])
    assert live.current(TrackKey("a", 1)) == (None, 0)


# -- modes, batching, contracts ---------------------------------------------------------------------


def test_row_queue_takes_rows_in_arrival_order_and_splits_requests():
    from fer_stream.model.batching import RowQueue

    q: RowQueue[str] = RowQueue()
    q.push("a", 3, arrived=1.0)
    q.push("empty", 0, arrived=2.0)  # nothing to classify: never queued
    q.push("b", 5, arrived=3.0)
    assert q.rows == 8 and q.oldest() == 1.0
    assert [(s.request, s.start, s.stop) for s in q.take(4)] == [("a", 0, 3), ("b", 0, 1)]
    assert q.oldest() == 3.0  # b, partly taken, keeps its arrival time
    assert [(s.request, s.start, s.stop) for s in q.take(8)] == [("b", 1, 5)]
    assert not q and q.rows == 0


def test_pick_mode_builds_only_the_chosen_modes_objects():
    from fer_stream.stream.modes import ExactMode, LiveMode, pick_mode

    model = _FakeModel()
    exact = pick_mode(False, model, classify_every=3)
    assert isinstance(exact, ExactMode) and exact.every.n == 3 and exact.batcher is None  # built on attach
    live = pick_mode(True, model, live_max_hz=2.0)
    assert isinstance(live, LiveMode) and not live.shared and live.live.scheduler.min_interval == 0.5
    shared = LiveClassifier(model)
    on_shared = pick_mode(True, model, shared=shared)
    assert isinstance(on_shared, LiveMode) and on_shared.shared and on_shared.live is shared
    assert isinstance(pick_mode(False, model, shared=shared), ExactMode)  # a file keeps exact batching


def test_the_pipeline_takes_at_most_ten_parameters_and_metrics_is_a_watch():
    import inspect

    from fer_stream.stream.pipeline import Pipeline
    from fer_stream.stream.watch import NULL_WATCH

    assert len(inspect.signature(Pipeline).parameters) <= 10
    for watch in (Metrics(), NULL_WATCH):
        watch.frame_out("cam", [_face(1, "happy")], 0.01)
        watch.batch(4, 0.02)
