"""Privacy: faces hidden in every picture (checked on pixels), boxes and labels kept, no face picture kept on request."""

from __future__ import annotations

import base64
import json
import urllib.request

import av
import cv2
import numpy as np
import pytest
from conftest import FACES, MEDIA, run_cli
from test_rtsp import long_videos  # noqa: F401  (the looped RTSP media fixture)

from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction
from fer_stream.io.privacy import FILL, Privacy
from fer_stream.serve.dashboard import SourceView


def sharpness(image: np.ndarray) -> float:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _face_image() -> np.ndarray:
    return cv2.imread(str(FACES / "one_face.jpg"))[..., ::-1].copy()


@pytest.mark.parametrize("mode", ["blur", "pixelate"])
def test_a_hidden_face_keeps_no_detail_and_the_rest_of_the_frame_is_untouched(mode):
    image = _face_image()
    h, w = image.shape[:2]
    box = Box(w // 4, h // 4, w // 2, h // 2)
    out = Privacy(mode).hide(image, [box])
    inner = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
    if mode == "blur":
        assert sharpness(out[inner]) < 0.1 * sharpness(image[inner])
    else:  # 8 x 8 flat blocks over the grown box: at most 64 colours where the face was
        assert len(np.unique(out[inner].reshape(-1, 3), axis=0)) <= 64 < len(np.unique(image[inner].reshape(-1, 3), axis=0))
    grown = box.expand(0.15).clip(w, h)
    outside = np.ones((h, w), bool)
    outside[grown.y : grown.y + grown.h, grown.x : grown.x + grown.w] = False
    assert np.array_equal(out[outside], image[outside])
    assert np.array_equal(image, _face_image())  # the input is never changed


def test_a_result_is_hidden_whole_and_keeps_its_boxes_and_labels():
    image = _face_image()
    h, w = image.shape[:2]
    crop = image[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].copy()
    face = Face(Box(w // 4, h // 4, w // 2, h // 2), 0.9, crop, track=3).with_prediction(Prediction((("happy", 0.9),), False))
    result = FrameResult(Frame(0, 0.0, image), (face,))
    hidden = Privacy("blur").apply(result)
    f = hidden.faces[0]
    assert f.box == face.box and f.prediction == face.prediction and f.track == 3
    assert sharpness(f.crop) < 0.1 * sharpness(crop) and sharpness(hidden.frame.image) < sharpness(image)
    none = Privacy("off", face_images=False).apply(result)
    assert none.faces[0].crop is None
    b = face.box
    assert (none.frame.image[b.y : b.y + b.h, b.x : b.x + b.w] == FILL).all()
    assert Privacy().apply(result) is result  # off: nothing copied


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_the_annotated_mp4_is_blurred_where_the_faces_are(tiny_model, cli_env, tmp_path):
    video = next(p for p in MEDIA if "portrait" in p.name)
    out, events = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    args = ["--source", str(video), "--model", str(tiny_model), "--max-frames", "30", "-q", "--privacy", "blur"]
    r = run_cli(args + ["--output", str(out), "--events", str(events)], cli_env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert records and all("label" in rec for rec in records)  # boxes and labels stay in the log
    written, original = _frames(out), _frames(video)[:30]
    checked = 0
    for rec in records[::5]:
        x, y, w, h = rec["box"]
        y0, x0 = y + h // 4, x + w // 4  # the middle of the face: away from the drawn box and label
        mid = (slice(y0, y0 + h // 2), slice(x0, x0 + w // 2))
        before, after = sharpness(original[rec["frame"]][mid]), sharpness(written[rec["frame"]][mid])
        assert after < 0.1 * before, (rec["frame"], before, after)
        checked += 1
    assert checked >= 3


def test_no_face_images_paints_faces_keeps_no_thumbnail_and_refuses_a_review_store(tiny_model, cli_env, tmp_path):
    video = next(p for p in MEDIA if "portrait" in p.name)
    report = tmp_path / "r.html"
    args = ["--source", str(video), "--model", str(tiny_model), "--max-frames", "30", "-q", "--no-face-images", "--threshold", "1.0"]
    r = run_cli(args + ["--report", str(report)], cli_env)
    assert r.returncode == 0, r.stderr
    html = report.read_text()
    assert "#1" in html and "data:image/jpeg" not in html and "(no face pictures)" in html
    r = run_cli(args + ["--review", str(tmp_path / "rv")], cli_env)
    assert r.returncode != 0 and "--no-face-images" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    blurred = [a for a in args if a != "--no-face-images"] + ["--privacy", "blur", "--review", str(tmp_path / "rv")]
    r = run_cli(blurred, cli_env)  # blurred faces in a review store: nobody could label them
    assert r.returncode != 0 and "--privacy blur" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rv").exists()


def _one_mjpeg_frame(url: str) -> np.ndarray:
    """The next JPEG of an MJPEG stream, decoded (RGB)."""
    with urllib.request.urlopen(url, timeout=60) as r:
        head = b""
        while b"\r\n\r\n" not in head:
            head += r.read(1)
        length = int([l for l in head.decode().split("\r\n") if l.lower().startswith("content-length")][0].split(":")[1])
        jpeg = r.read(length)
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def test_the_dashboard_shows_blurred_faces_and_the_open_episodes_in_a_real_browser(tiny_model, cli_env, tmp_path, long_videos, procs):  # noqa: F811
    from test_dashboard import HEADLESS, _browser
    from test_rtsp import WAIT, RtspServer, Run

    browser = _browser()
    events = tmp_path / "ev.jsonl"
    with RtspServer({"b": long_videos["b"]}, procs=procs) as server:  # one person, sitting still
        args = ["--source", f"door={server.url('b')}", "--model", str(tiny_model), "--detector", "short", "--threshold", "0.99"]
        args += ["--privacy", "blur", "--events", str(events), "--episodes", str(tmp_path / "ep.jsonl")]
        run = Run(args, cli_env, tmp_path, procs)
        try:

            def state() -> dict:
                with urllib.request.urlopen(run.base + "/api/state", timeout=30) as r:
                    return json.loads(r.read())["sources"]["door"]

            run.wait_for(
                lambda: state()["flagged"] and state()["episodes"]["episodes"], timeout=WAIT, what="flagged faces and an open episode"
            )
            picture = _one_mjpeg_frame(run.base + "/sources/door/mjpeg")
            shot = tmp_path / "dashboard-private.png"
            cmd = [browser, *HEADLESS, "--window-size=1280,1200", "--virtual-time-budget=5000"]
            r = procs.run(cmd + [f"--screenshot={shot}", run.base + "/"], capture_output=True, text=True, timeout=WAIT)
            assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
            dom = procs.run(cmd + ["--dump-dom", run.base + "/"], capture_output=True, text=True, timeout=WAIT).stdout
            s = state()
        finally:
            run.terminate()
    assert "Episodes now" in dom and s["episodes"]["episodes"][0]["id"] in dom
    # The live picture: where the run's log says the faces are, no detail is left (against the camera's own frames).
    records = [json.loads(line) for line in events.read_text().splitlines()]
    original = _frames(long_videos["b"])[: max(rec["frame"] for rec in records) + 1]
    x, y, w, h = np.median([rec["box"] for rec in records[-25:]], axis=0).astype(int).tolist()
    mid = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    before = np.median([sharpness(f[mid]) for f in original[-50:]])
    assert sharpness(picture[mid]) < 0.1 * before
    # The flagged faces' thumbnails on the page are the blurred crops: against thumbnails made the same way of the camera's faces.
    view = SourceView()
    decode = lambda b64: cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    plain = np.median([sharpness(decode(view._thumb(np.ascontiguousarray(f[y : y + h, x : x + w])))) for f in original[-50:]])
    thumbs = [decode(t["jpeg"]) for t in s["flagged"]]
    assert thumbs and all(sharpness(t) < 0.2 * plain for t in thumbs), (plain, [sharpness(t) for t in thumbs])
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (1200, 1280) and len(np.unique(image[110:600, 30:600].reshape(-1, 3) // 32, axis=0)) >= 10
