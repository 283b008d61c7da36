"""Tracking, smoothing and scheduling, element by element."""

import time

import numpy as np
import pytest

from fer_stream.frames import Box
from fer_stream.stream.schedule import EveryN, LiveScheduler
from fer_stream.stream.smooth import Smoother
from fer_stream.stream.track import IoUTracker, iou_matrix


def test_iou_matrix_against_hand_computed_values():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[5, 0, 10, 10], [0, 0, 10, 10], [50, 50, 5, 5]], float)
    m = iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(50 / 150)
    assert m[0, 1] == pytest.approx(1.0)
    assert m[0, 2] == 0 and m[1].tolist() == [0, 0, 0]


def test_a_moving_face_keeps_its_id_and_a_new_face_gets_the_next():
    tr = IoUTracker(iou_threshold=0.3, max_missed=2)
    ids = [tr.update([Box(10 + 3 * i, 20, 60, 60)]) for i in range(20)]
    assert ids == [[1]] * 20
    # A second face appears; detection order changes from frame to frame.
    assert tr.update([Box(300, 40, 50, 50), Box(70, 20, 60, 60)]) == [2, 1]
    assert tr.update([Box(71, 21, 60, 60), Box(302, 40, 50, 50)]) == [1, 2]


def test_tracks_survive_short_gaps_and_end_after_max_missed():
    tr = IoUTracker(max_missed=2)
    assert tr.update([Box(0, 0, 50, 50)]) == [1]
    tr.update([])
    tr.update([])
    assert tr.active == [1] and tr.ended == []
    assert tr.update([Box(2, 0, 50, 50)]) == [1]  # back after 2 missed frames: same id
    for _ in range(3):
        tr.update([])
    assert tr.ended == [1] and tr.active == []
    assert tr.update([Box(2, 0, 50, 50)]) == [2]  # ids are never reused


def test_each_track_matches_at_most_one_box():
    tr = IoUTracker(iou_threshold=0.1)
    tr.update([Box(0, 0, 100, 100)])
    # Two boxes overlap the one track; the better overlap keeps the id, the other starts a track.
    assert tr.update([Box(40, 0, 100, 100), Box(5, 0, 100, 100)]) == [2, 1]


def test_ema_window_and_off_smoothing():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    ema = Smoother("ema", alpha=0.25)
    ema.update(1, a)
    assert ema.update(1, b).tolist() == pytest.approx([0.75, 0.25])
    assert ema.update(2, b).tolist() == [0.0, 1.0]  # tracks are independent
    win = Smoother("window", window=2)
    win.update(1, a)
    win.update(1, b)
    assert win.update(1, b).tolist() == [0.0, 1.0]  # a left the window
    off = Smoother("off")
    off.update(1, a)
    assert off.update(1, b).tolist() == [0.0, 1.0]
    ema.forget([1])
    assert ema.get(1) is None and ema.get(2) is not None
    with pytest.raises(ValueError):
        Smoother("median")


def test_every_n_classifies_new_tracks_at_once_then_every_nth_frame():
    every = EveryN(3)
    assert [every.due(1) for _ in range(7)] == [True, False, False, True, False, False, True]
    assert every.due(2) is True  # a new track does not wait for the others' rhythm
    assert [EveryN(1).due(5) for _ in range(3)] == [True] * 3


def test_live_scheduler_order_newest_unclassified_then_least_recent():
    s = LiveScheduler(max_hz=0)
    s.offer(1, "a1", 0.0)
    s.offer(2, "b1", 0.0)
    assert [(t, c) for t, c, _ in s.take(1, timeout=0)] == [(2, "b1")]
    s.offer(3, "c1", 0.0)
    assert [t for t, _, _ in s.take(8, timeout=0)] == [3, 1]  # new track 3 first, then never-classified 1
    time.sleep(0.01)
    for t, crop in ((1, "a2"), (2, "b2"), (3, "c2")):
        s.offer(t, crop, 0.0)
    # 2 was classified longest ago, then 3 and 1 (taken together, ties broken newest first).
    assert [t for t, _, _ in s.take(8, timeout=0)] == [2, 3, 1]
    assert s.take(8, timeout=0) == []  # nothing new offered
    s.offer(1, "a3", 0.0)
    s.offer(1, "a4", 0.0)
    assert [c for _, c, _ in s.take(8, timeout=0)] == ["a4"]  # only the newest crop of a track
    s.retire([1])
    s.offer(2, "b3", 0.0)
    assert 1 not in s and [t for t, _, _ in s.take(8, timeout=0)] == [2]


def test_live_scheduler_caps_each_tracks_rate_but_not_others():
    s = LiveScheduler(max_hz=2.0)  # at most every 0.5 s per track
    s.offer(1, "a1", 0.0)
    assert s.take(8, timeout=0)
    s.offer(1, "a2", 0.0)
    assert s.take(8, timeout=0.05) == []  # too soon for track 1
    s.offer(2, "b1", 0.0)
    assert [t for t, _, _ in s.take(8, timeout=0.05)] == [2]  # a new track is not held back
    start = time.monotonic()
    assert [t for t, _, _ in s.take(8, timeout=2.0)] == [1]
    assert time.monotonic() - start >= 0.3  # waited for track 1's interval, not the timeout


def test_track_log_keeps_the_newest_tracks_within_its_capacity():
    from fer_stream.stream.stats import TrackLog

    log = TrackLog(capacity=3)
    for i in range(1, 6):
        log.seen(i, float(i))
        log.seen(i, float(i) + 0.5)
    log.classified(5, 2)
    log.classified(1)  # already let go: ignored
    snap = {t.id: t for t in log.snapshot()}
    assert sorted(snap) == [3, 4, 5] and log.omitted == 2
    assert snap[5].frames == 2 and snap[5].classified == 2 and snap[5].duration_s == 0.5
