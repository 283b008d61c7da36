"""The pipeline: frames in order, cross-frame batches, failing stages, live sources that never wait."""

import threading
import time

import pytest
from conftest import media_file

from fer_stream import Pipeline, Smoother
from fer_stream.errors import PipelineError
from fer_stream.frames import Frame
from fer_stream.io.sources import Source, open_source
from fer_stream.stream.buffers import LatestSlot

PORTRAIT = media_file("436x384")


def test_every_frame_in_order_with_full_cross_frame_batches(clf, detector):
    with Pipeline.for_source(str(PORTRAIT), clf, detector) as results:
        out = list(results)
    assert [r.frame.index for r in out] == list(range(270))
    assert all(len(r.faces) == 1 and r.faces[0].prediction is not None for r in out)
    assert all(r.annotated is not None and r.annotated.shape == r.frame.image.shape for r in out)


def test_batches_mix_frames_and_never_exceed_max(clf, detector):
    # How full batches get with the default 50 ms wait depends on the machine's speed: only
    # properties that hold on any machine are asserted.
    p = Pipeline.for_source(str(PORTRAIT), clf, detector, max_frames=100)
    with p as results:
        n = sum(1 for _ in results)
    s = p.stats
    assert n == 100 and s.frames_in == 100 and not s.source_ended
    assert max(s.batch_sizes) <= 8
    assert sum(k * v for k, v in s.batch_sizes.items()) == 100
    # Crops made to wait together (a wait no machine reaches): every batch is full, each of 8
    # frames' faces (one face a frame), and only the last, at the end of the input, is partial.
    p = Pipeline.for_source(str(PORTRAIT), clf, detector, max_frames=100, batch_wait=3600.0)
    with p as results:
        out = list(results)
    assert [r.frame.index for r in out] == list(range(100)) and all(len(r.faces) == 1 for r in out)
    assert p.stats.batch_sizes == {8: 12, 4: 1}


def test_results_match_direct_calls(clf, detector):
    with Pipeline.for_source(str(PORTRAIT), clf, detector, max_frames=12, annotate=False, smoother=Smoother("off")) as results:
        out = list(results)
    for r in out:
        direct = detector.detect(r.frame.image)
        assert [f.box for f in r.faces] == [f.box for f in direct]
        expected = clf.predict([f.crop for f in direct])
        for face, pred in zip(r.faces, expected):
            assert face.prediction.label == pred.label
            assert face.prediction.confidence == pytest.approx(pred.confidence, abs=1e-5)


class _Broken:
    """A classifier whose second batch fails."""

    def __init__(self, clf):
        self._clf, self.max_batch, self.calls = clf, clf.max_batch, 0

    def warmup(self):
        pass

    def preprocess(self, crops):
        return self._clf.preprocess(crops)

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("device fell over")
        return self._clf.forward(x)

    def postprocess(self, probs):
        return self._clf.postprocess(probs)


def test_a_failing_stage_stops_everything_without_hanging(clf, detector):
    start = time.monotonic()
    p = Pipeline.for_source(str(PORTRAIT), _Broken(clf), detector)
    with pytest.raises(PipelineError, match="classify stage failed: RuntimeError: device fell over"), p as results:
        for _ in results:
            pass
    assert time.monotonic() - start < 30
    assert not any(t.is_alive() for t in p._threads)


class _FastCamera(Source):
    """A live source producing frames faster than they can be classified."""

    live = True
    width, height, fps = 436, 384, 200.0

    def __init__(self, n):
        self._inner = open_source(str(PORTRAIT))
        self.n = n
        self.name = "fake camera"

    def frames(self):
        for i, f in enumerate(self._inner.frames()):
            if i >= self.n:
                return
            time.sleep(0.002)
            yield Frame(index=i, time=i / self.fps, image=f.image, captured=time.monotonic())

    def close(self):
        self._inner.close()


def _slow_classifier(clf, delay):
    slow = _Broken(clf)
    slow.calls = -(10**9)  # never fails
    forward = slow.forward
    slow.forward = lambda x: (time.sleep(delay), forward(x))[1]
    return slow


def test_live_frames_never_wait_for_the_classifier(clf, detector):
    cam = _FastCamera(150)
    p = Pipeline.for_source(cam, _slow_classifier(clf, 0.05), detector, live_max_hz=0)
    with p as results:
        out = list(results)
    cam.close()
    s = p.stats
    assert len(out) + s.dropped == 150
    assert 0 < s.classified < len(out) / 2  # a few classifications serve many frames
    first = next(i for i, r in enumerate(out) if r.faces and r.faces[0].prediction is not None)
    assert all(r.faces[0].prediction is not None for r in out[first:] if r.faces)
    fresh = sum(f.fresh for r in out for f in r.faces)
    assert 1 <= fresh <= s.classified  # each new result is marked once, on the first frame showing it
    assert [t.classified for t in s.tracks] and sum(t.classified for t in s.tracks) == s.classified
    assert s.latency_s["p50"] is not None and s.latency_s["p50"] <= s.latency_s["p95"] <= s.latency_s["p99"]


class _SlowDetector:
    rejected = ()

    def __init__(self, detector, delay):
        self._d, self.delay = detector, delay

    def detect(self, image):
        time.sleep(self.delay)
        return self._d.detect(image)

    def reset(self):
        self._d.reset()


def test_live_sources_keep_the_newest_frame_and_count_drops(clf, detector):
    cam = _FastCamera(150)
    p = Pipeline.for_source(cam, clf, _SlowDetector(detector, 0.02))
    with p as results:
        out = list(results)
    cam.close()
    s = p.stats
    assert s.dropped > 0
    assert len(out) + s.dropped == 150
    indices = [r.frame.index for r in out]
    assert indices == sorted(indices)


def test_latest_slot():
    slot = LatestSlot()
    slot.put(1)
    slot.put(2)
    assert slot.get(0.1) == 2 and slot.dropped == 1
    got = []
    t = threading.Thread(target=lambda: got.append(slot.get(1.0)))
    t.start()
    slot.put(3)
    t.join()
    assert got == [3]
