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


def test_rejected_boxes_are_counted_by_source():
    m = Metrics()
    m.rejected("door", 3)
    m.rejected("door", 2)
    m.rejected("yard", 1)
    text = m.exposition().decode()
    assert 'fer_stream_rejected_boxes_total{source="door"} 5.0' in text
    assert 'fer_stream_rejected_boxes_total{source="yard"} 1.0' in text


def test_boxes_the_landmark_model_rejects_are_counted_on_the_metrics_page(clf):
    import urllib.request

    from conftest import DETECTOR, LANDMARK, WEBCAM_NO_FACE, PlantedDetector, media_file

    from fer_stream import Pipeline
    from fer_stream.model.detector import FaceDetector
    from fer_stream.model.landmarks import FaceLandmarker
    from fer_stream.model.mesh import MeshDetector
    from fer_stream.serve.monitor import Monitor
    from fer_stream.stream.modes import pick_mode

    m = Metrics()
    base = PlantedDetector(FaceDetector(DETECTOR), WEBCAM_NO_FACE)  # a real face, and boxes on a shoulder, the wall, ...
    with MeshDetector(base, FaceLandmarker(LANDMARK), rescan_every=5) as det:
        p = Pipeline(str(media_file("webcam")), det, pick_mode(False, clf), watch=m, max_frames=12, source_id="door")
        with p as results:
            assert all(len(r.faces) == 1 for r in results)
        assert p.stats.rejected == det.rejected_total == len(WEBCAM_NO_FACE) * det.scans > 0
    with Monitor("127.0.0.1", 0, m) as mon:
        text = urllib.request.urlopen(f"http://127.0.0.1:{mon.server.server_address[1]}/metrics", timeout=30).read().decode()
    assert f'fer_stream_rejected_boxes_total{{source="door"}} {float(p.stats.rejected)}' in text
