"""--report and --timeline: numbers that add up, and a page a real browser renders."""

import csv
import json
import shutil

import numpy as np
import pytest
from conftest import ROOT, media_file, run_cli

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
