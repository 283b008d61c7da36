"""The Prometheus metrics: counts of frames, faces and labels, and the state read from each source."""

from __future__ import annotations

from conftest import labelled_face as _face

from fer_stream.health import SourceState
from fer_stream.serve.metrics import Metrics


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
