"""Detector download and cache, `models pull` offline, and the `image` command."""

import http.server
import json
import threading

import pytest
from conftest import DETECTOR, FACES, FULL_RANGE, LABELS, run_cli

from fer_stream.errors import ModelError
from fer_stream.model.detector_files import ENV_DETECTOR, download_detector, resolve_detector_model


@pytest.fixture
def model_server():
    """Serves the shared detector models on loopback, as a mirror would."""
    files = {p.name: p.read_bytes() for p in (DETECTOR, FULL_RANGE)}
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            if name == "huge.tflite":  # declares 300 MB
                self.send_response(200)
                self.send_header("Content-Length", str(300 << 20))
                self.end_headers()
                return
            if name == "endless.tflite":  # no length, junk for ever (the cap must stop it)
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(b"\0" * (1 << 20))
                except OSError:
                    pass
                return
            body = files.get(name, b"not a model")
            if name == "tampered.tflite":
                body = bytearray(files[DETECTOR.name])
                body[len(body) // 2] ^= 0xFF
                body = bytes(body)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hits
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(autouse=True)
def _trust_the_loopback_mirror(monkeypatch):
    monkeypatch.setenv("FER_STREAM_TRUST_MIRROR", "1")  # these tests' mirror is plain http on loopback


def test_download_once_into_the_cache(model_server, tmp_path, monkeypatch):
    url, hits = model_server
    monkeypatch.setenv("FER_STREAM_CACHE", str(tmp_path))
    monkeypatch.setenv("FER_STREAM_DETECTOR_URL", url + "/blaze_face_short_range.tflite")
    monkeypatch.delenv(ENV_DETECTOR, raising=False)
    path = resolve_detector_model()
    assert path == tmp_path / "blaze_face_short_range.tflite"
    assert path.read_bytes() == DETECTOR.read_bytes()
    assert resolve_detector_model() == path
    assert len(hits) == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left


def test_a_download_that_is_not_the_published_model_is_not_cached(model_server, tmp_path, monkeypatch):
    url, _ = model_server
    for path, kind in (
        ("/broken", "short"),
        ("/tampered.tflite", "short"),
        ("/blaze_face_short_range.tflite", "full"),
    ):  # a model, but not the full-range one
        with pytest.raises(ModelError, match="not MediaPipe's published file"):
            download_detector(tmp_path / "m.tflite", url + path, kind=kind)
    for path in ("/huge.tflite", "/endless.tflite"):
        with pytest.raises(ModelError, match="no model is that big"):
            download_detector(tmp_path / "m.tflite", url + path)
    monkeypatch.delenv("FER_STREAM_TRUST_MIRROR")
    with pytest.raises(ModelError, match="not https; set FER_STREAM_TRUST_MIRROR=1"):
        download_detector(tmp_path / "m.tflite", url + "/blaze_face_short_range.tflite")
    assert list(tmp_path.iterdir()) == []


def test_offline_with_nothing_cached(cli_env, tmp_path, tiny_model):
    env = dict(cli_env, FER_STREAM_CACHE=str(tmp_path), FER_STREAM_DETECTOR_URL="http://127.0.0.1:9/m.tflite", FER_STREAM_TRUST_MIRROR="1")
    env.pop(ENV_DETECTOR)
    r = run_cli(["image", str(FACES / "one_face.jpg"), "--model", str(tiny_model)], env)
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0
    assert "fer-stream models pull" in r.stderr and ENV_DETECTOR in r.stderr


def test_models_pull_offline_fails_clearly(cli_env, tmp_path, model_server):
    url, _ = model_server
    env = dict(
        cli_env,
        FER_STREAM_CACHE=str(tmp_path),
        FER_STREAM_DETECTOR_URL=url + "/blaze_face_short_range.tflite",
        FER_STREAM_FULL_RANGE_URL=url + "/face_detection_full_range_sparse.tflite",
        FER_STREAM_TRUST_MIRROR="1",
    )
    for given in ("FER_STREAM_DETECTOR_MODEL", "FER_STREAM_FULL_RANGE_MODEL"):  # else pull uses those files
        env.pop(given)
    r = run_cli(["models", "pull", "--model", "nobody/no-such-model"], env)
    # Both detectors came from the mirror.
    assert "detector (short-range): downloaded to" in r.stdout and "detector (full-range): downloaded to" in r.stdout
    assert (tmp_path / "blaze_face_short_range.tflite").read_bytes() == DETECTOR.read_bytes()
    assert (tmp_path / "face_detection_full_range_sparse.tflite").read_bytes() == FULL_RANGE.read_bytes()
    assert r.returncode == 1 and r.stderr.startswith("fer-stream: error: cannot download classifier")


def test_image_command_text_and_json(tiny_model, cli_env):
    files = [str(FACES / "one_face.jpg"), str(FACES / "no_face.jpg")]
    r = run_cli(["image", *files, "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "one_face.jpg: 1 face" in r.stdout
    assert "no_face.jpg: no face found" in r.stdout
    assert "box x=" in r.stdout and all(l in r.stdout for l in LABELS)

    r = run_cli(["image", *files, "--model", str(tiny_model), "--json"], cli_env)
    doc = json.loads(r.stdout)
    assert [len(d["faces"]) for d in doc] == [1, 0]
    face = doc[0]["faces"][0]
    probs = list(face["probs"].values())
    assert probs == sorted(probs, reverse=True) and list(face["probs"])[0] == face["label"]
    x, y, w, h = face["box"]
    assert abs(x - 97) < 20 and abs(y - 116) < 20 and abs(w - 175) < 30


def test_image_dir_no_detect(tiny_model, cli_env):
    from conftest import EXPRESSIONS

    r = run_cli(["image", "--dir", str(EXPRESSIONS / "happy"), "--no-detect", "--json", "--model", str(tiny_model)], cli_env)
    doc = json.loads(r.stdout)
    assert len(doc) == 40
    assert all(len(d["faces"]) == 1 and d["faces"][0]["box"] == [0, 0, 48, 48] for d in doc)
