"""The --serve dashboard: its state sink on its own, and the page in headless Chromium against a live RTSP camera."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import numpy as np
import pytest
from conftest import LABELS
from rtsp import gst_rtsp_available
from test_rtsp import long_videos  # noqa: F401  (the looped RTSP media fixture)

from fer_stream import palette
from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction
from fer_stream.serve.dashboard import PAGE, SourceView
from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import Monitor


def _browser() -> str:
    """Chromium's path; a skip without it (an error where CI requires it)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("FER_STREAM_REQUIRE_BROWSER") == "1":
            raise AssertionError("FER_STREAM_REQUIRE_BROWSER=1 but chromium is not installed; see .ci/run")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return browser


HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def _result(t: float, faces: list[tuple[int, str, float, bool]]) -> FrameResult:
    crop = np.full((40, 30, 3), 90, np.uint8)
    out = []
    for track, label, conf, fresh in faces:
        p = Prediction(probs=((label, conf), ("other", 1 - conf)), flagged=conf < 0.7)
        out.append(Face(Box(10, 10, 30, 40), 0.9, crop).with_track(track).with_prediction(p, fresh=fresh))
    return FrameResult(Frame(int(t * 10), t, np.zeros((64, 64, 3), np.uint8)), tuple(out))


def test_view_keeps_tracks_mix_and_a_bounded_list_of_flagged_faces():
    view = SourceView(keep_flagged=3, flag_every_s=0.0)
    for i in range(10):
        view.write(_result(i / 10, [(1, "happy", 0.9, True), (2, "sad", 0.5, True)]))
    s = view.state()
    assert [t["track"] for t in s["tracks"]] == [1, 2] and s["tracks"][1]["flagged"] is True
    assert s["mix"] == {"happy": 0.5, "sad": 0.5} and s["mix_faces"] == 20
    assert len(s["flagged"]) == 3  # bounded, newest first
    assert all(f["track"] == 2 and f["label"] == "sad" and f["jpeg"] for f in s["flagged"])
    assert s["flagged"][0]["video_s"] == pytest.approx(0.9)


def test_view_takes_one_thumbnail_per_track_per_interval_and_only_fresh_results():
    view = SourceView(flag_every_s=60.0)
    for i in range(20):
        view.write(_result(i / 10, [(7, "fear", 0.4, i % 2 == 0)]))
    assert len(view.state()["flagged"]) == 1
    view.write(_result(3.0, [(8, "fear", 0.4, False)]))  # a reused (not fresh) result is no new moment
    assert len(view.state()["flagged"]) == 1


def test_view_gives_every_label_of_the_model_its_palette_colour():
    view = SourceView()
    assert view.state()["colors"] == {}  # nothing classified yet
    view.write(_result(0.0, [(1, "happy", 0.9, True)]))
    assert view.state()["colors"] == palette.label_colors(["happy", "other"]) == {"happy": "#2ca02c", "other": "#17becf"}


def test_page_is_the_package_file_with_the_palette_in_it():
    from importlib.resources import files

    text = (files("fer_stream.serve") / "dashboard.html").read_text(encoding="utf-8")
    assert PAGE == text.replace(
        "/* fer_stream.palette */",
        f":root{{--flagged:{palette.FLAGGED};--flagged-text:{palette.FLAGGED_TEXT};--unknown:{palette.UNCLASSIFIED};}}",
    )
    assert "COLORS" not in PAGE and "#f59e0b" not in PAGE  # no label colours of its own: they come with /api/state


@pytest.mark.skipif(not gst_rtsp_available(), reason="GStreamer's RTSP server (python3-gi) is not installed")
def test_dashboard_in_a_real_browser_with_a_live_rtsp_camera(tiny_model, cli_env, tmp_path, long_videos, procs):  # noqa: F811
    import cv2
    from test_rtsp import WAIT, RtspServer, Run

    browser = _browser()
    token = "s3cret-dashboard-token"
    with RtspServer({"a": long_videos["a"]}, procs=procs) as server:
        run = Run(
            [
                "--source",
                f"door={server.url('a')}",
                "--model",
                str(tiny_model),
                "--detector",
                "short",
                "--threshold",
                "0.99",
                "--serve-token",
                token,
            ],
            cli_env,
            tmp_path,
            procs,
        )
        try:

            def state() -> dict:
                req = urllib.request.Request(run.base + "/api/state", headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    return json.loads(r.read())

            run.wait_for(
                lambda: state()["sources"]["door"]["mix_faces"] > 10 and state()["sources"]["door"]["flagged"],
                timeout=WAIT,
                what="classified and flagged faces on the dashboard",
            )
            s = state()["sources"]["door"]
            assert s["health"]["state"] == "streaming" and s["tracks"] and set(s["mix"]) <= set(LABELS)
            assert run.get("/")[0] == 401  # the page too needs the token
            url = f"{run.base}/?token={token}"
            shot = tmp_path / "dashboard.png"
            args = [browser, *HEADLESS, "--window-size=1280,1000", "--virtual-time-budget=5000"]
            r = procs.run(args + [f"--screenshot={shot}", url], capture_output=True, text=True, timeout=WAIT)
            assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
            assert "Uncaught" not in r.stderr and "CONSOLE" not in r.stderr, r.stderr[-2000:]
            dom = procs.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=WAIT).stdout
        finally:
            run.terminate()
    assert 'data-ok="0"' not in dom and "data-error" not in dom  # rendered at least once, no script error
    assert "streaming" in dom and "door" in dom and "Recent flagged faces" in dom and "#1" in dom
    assert f"sources/door/mjpeg?token={token}" in dom and dom.count('src="data:image/jpeg;base64,') >= 1
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (1000, 1280)
    live = image[110:600, 30:600].reshape(-1, 3)  # the camera's picture, top left
    assert len(np.unique(live // 32, axis=0)) >= 20, "the live picture did not render"
    bar = image[60:80, 30:300].reshape(-1, 3)  # the green "streaming" badge
    assert (np.abs(bar.astype(int) - (0x69, 0x96, 0x05)).sum(1) < 60).any()


def test_dashboard_says_starting_while_the_models_load(procs):
    """The server answers before the models are loaded; the page says so rather than "cannot reach"."""
    browser = _browser()
    with Monitor("127.0.0.1", 0, Metrics(), starting=True) as mon:
        r = procs.run(
            [browser, *HEADLESS, "--virtual-time-budget=3000", "--dump-dom", mon.url + "/"], capture_output=True, text=True, timeout=240
        )
        assert mon.starting  # still loading while the page was shown
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-state="starting"' in r.stdout and '<span id="status">starting' in r.stdout, r.stdout[-2000:]
    assert "data-error" not in r.stdout  # no script error
