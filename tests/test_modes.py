"""Exact and live modes, the shared row queue of batching, and the pipeline's contracts (parameters, watch)."""

from __future__ import annotations

from conftest import BrightnessModel as _FakeModel
from conftest import labelled_face as _face

from fer_stream.serve.metrics import Metrics
from fer_stream.stream.live import LiveClassifier


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
