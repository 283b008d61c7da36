"""The live classifier: the newest crop of each track classified, across sources, with a fake model."""

from __future__ import annotations

import threading

import numpy as np
from conftest import BrightnessModel as _FakeModel
from conftest import wait_until

from fer_stream.frames import TrackKey
from fer_stream.stream.live import LiveClassifier
from fer_stream.stream.smooth import Smoother


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
