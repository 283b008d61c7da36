"""The person's labels on ../shared's video faces (benchmarks/data/video_faces.jsonl) and bench_video's scoring."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from types import ModuleType

import pytest
from conftest import DETECTOR, FULL_RANGE, LANDMARK, ROOT, SHARED

LABELS_FILE = ROOT / "benchmarks" / "data" / "video_faces.jsonl"


def _bench(name: str) -> ModuleType:
    """A script of benchmarks/ as a module (its heavy imports wait inside its functions)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench("bench_video")


def test_labels_are_a_hundred_faces_with_one_label_each() -> None:
    records = bench.load_labels(LABELS_FILE)
    assert 90 <= len(records) <= 120
    assert [r["id"] for r in records] == list(range(len(records)))
    assert {r["label"] for r in records} <= {*bench.EMOTIONS, bench.UNSURE}
    per_video = Counter(r["video"] for r in records)
    assert set(per_video) == set(bench.VIDEOS) and min(per_video.values()) >= 25
    assert all(r["chosen"] for r in records)
    assert len({(r["video"], r["frame"], tuple(r["box"])) for r in records}) == len(records)
    scored = [r for r in records if r["label"] != bench.UNSURE]
    assert len(scored) >= 0.8 * len(records)  # unsure is the exception


@pytest.mark.media
def test_every_labelled_face_lies_in_a_frame_of_its_video() -> None:
    from fer_stream.io.sources import open_source

    records = bench.load_labels(LABELS_FILE)
    for video in bench.VIDEOS:
        path = SHARED / "media" / video
        assert path.is_file(), f"{video} is not in {SHARED / 'media'}"
        sizes = {}
        with open_source(str(path)) as source:
            for frame in source.frames():
                sizes[frame.index] = (frame.width, frame.height)
        for r in (r for r in records if r["video"] == video):
            assert r["frames"] == len(sizes), r
            assert 0 <= r["frame"] < len(sizes), r
            width, height = sizes[r["frame"]]
            assert list(r["size"]) == [width, height], r
            x, y, w, h = r["box"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= width and y + h <= height, r


@pytest.mark.media
def test_the_boxes_are_the_ones_the_pipelines_detector_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default detector, run over a video from its first frame, finds each labelled face
    again (what bench_video matches the pipeline's faces by)."""
    monkeypatch.setenv("FER_STREAM_DETECTOR_MODEL", str(DETECTOR))
    monkeypatch.setenv("FER_STREAM_FULL_RANGE_MODEL", str(FULL_RANGE))
    monkeypatch.setenv("FER_STREAM_LANDMARK_MODEL", str(LANDMARK))
    pick = _bench("pick_video_faces")
    video = "portrait_436x384.mp4"
    frames, _ = pick.detect_all(SHARED / "media" / video)
    for r in (r for r in bench.load_labels(LABELS_FILE) if r["video"] == video):
        best = max((bench.iou(f["box"], r["box"]) for f in frames[r["frame"]] if f["usable"]), default=0.0)
        assert best >= 0.9, r


def test_agreement_scores_a_known_confusion() -> None:
    confusion = {("happy", "happy"): 3, ("happy", "neutral"): 1, ("neutral", "neutral"): 5, ("neutral", "sad"): 1, ("angry", "neutral"): 2}
    pairs = [pair for pair, n in confusion.items() for _ in range(n)]
    pairs += [("unsure", "happy"), ("unsure", "neutral"), ("happy", None)]  # two not scored, one face missed
    a = bench.agreement(reversed(pairs))

    assert (a["n"], a["agree"], a["unsure"], a["missed"]) == (12, 8, 2, 1)
    assert a["accuracy"] == pytest.approx(8 / 12)
    assert list(a["per_label"]) == ["angry", "happy", "neutral"]
    assert a["per_label"]["angry"] == {"n": 2, "agree": 0, "recall": 0.0}
    assert a["per_label"]["happy"] == {"n": 4, "agree": 3, "recall": 0.75}
    assert a["per_label"]["neutral"]["recall"] == pytest.approx(5 / 6)
    assert a["mean_recall"] == pytest.approx((0 + 0.75 + 5 / 6) / 3)
    assert a["majority"] == pytest.approx(6 / 12)  # always "neutral"
    assert a["confusion"] == {"angry": {"neutral": 2}, "happy": {"happy": 3, "neutral": 1}, "neutral": {"neutral": 5, "sad": 1}}


def test_agreement_of_nothing_scored_is_empty() -> None:
    a = bench.agreement([("unsure", "happy"), ("neutral", None)])
    assert (a["n"], a["accuracy"], a["mean_recall"], a["unsure"], a["missed"]) == (0, None, None, 1, 1)


def test_the_pipeline_label_is_matched_by_box_overlap() -> None:
    assert bench.iou([10, 10, 100, 100], [10, 10, 100, 100]) == 1.0
    assert bench.iou([0, 0, 10, 10], [20, 20, 10, 10]) == 0.0
    assert bench.iou([0, 0, 10, 10], [0, 5, 10, 10]) == pytest.approx(50 / 150)
