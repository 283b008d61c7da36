"""--report and --timeline: numbers that add up, and a page a real browser renders."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, media_file, run_cli
from conftest import scored_face as _face
from conftest import timed_result as _frame

from fer_stream.io import report
from fer_stream.io.report import TimelineSink, write_report, write_timeline

MODEL = ROOT / "samples" / "models" / "fer2013-small"
VIDEO = media_file("two_people")


@pytest.fixture(scope="module")
def reported(cli_env, tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    r = run_cli(
        [
            "--source",
            str(VIDEO),
            "--model",
            str(MODEL),
            "--report",
            str(d / "r.html"),
            "--timeline",
            str(d / "t.csv"),
            "--events",
            str(d / "e.jsonl"),
            "--summary",
            str(d / "s.json"),
            "--quiet",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    return d


def test_timeline_is_the_mean_of_the_events_per_second_and_track(reported):
    rows = list(csv.DictReader((reported / "t.csv").open()))
    events = [json.loads(line) for line in (reported / "e.jsonl").read_text().splitlines()]
    labels = list(rows[0])[4:-1]  # the model's label order
    assert rows and list(rows[0])[:4] == ["time_s", "track", "faces", "dominant"] and set(labels) == set(events[0]["probs"])
    assert list(rows[0])[-1] == "span_s" and {row["span_s"] for row in rows} == {"1.0"}  # a short run: bins as asked
    for row in rows:
        mine = [e for e in events if e["track"] == int(row["track"]) and int(e["time"]) == int(float(row["time_s"])) and "probs" in e]
        assert len(mine) == int(row["faces"])
        mean = np.mean([[e["probs"][label] for label in labels] for e in mine], axis=0)
        np.testing.assert_allclose([float(row[label]) for label in labels], mean, atol=1e-5)
        assert row["dominant"] == labels[int(mean.argmax())]
    s = json.loads((reported / "s.json").read_text())
    assert sum(int(r["faces"]) for r in rows) == sum(s["labels"].values())


def test_report_is_self_contained(reported):
    page = (reported / "r.html").read_text()
    assert "<svg" in page and page.count('src="data:image/jpeg;base64,') >= 2
    for fetch in ('src="http', "src='http", 'href="http', "<script", "@import", "url(http"):
        assert fetch not in page  # nothing to download: it opens offline
    assert "two_people_512.mp4" in page and "Flagged moments" in page and "samples/models/fer2013-small" in page


def test_report_renders_in_a_real_browser(reported, tmp_path, procs):
    import os

    import cv2

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("FER_STREAM_REQUIRE_BROWSER") == "1":
            raise AssertionError("FER_STREAM_REQUIRE_BROWSER=1 but chromium is not installed; see .ci/run")
        pytest.skip("chromium not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    r = procs.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1280,1400",
            f"--screenshot={shot}",
            f"file://{reported / 'r.html'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (1400, 1280)
    # The plots drew: the overview (top) and the first track's stacked timeline hold many colours.
    for top, bottom in ((150, 450), (550, 800)):
        band = image[top:bottom, 100:900].reshape(-1, 3)
        assert len(np.unique(band // 32, axis=0)) >= 6, (top, bottom)
    dom = procs.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{reported / 'r.html'}"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<svg") >= 3 and "Flagged moments" in dom


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
