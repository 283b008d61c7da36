"""Model files and the `image` command: detector download and cache, `models pull`, model names looked up offline."""

import http.server
import json
import re
from pathlib import Path

import pytest
from conftest import DETECTOR, FACES, FULL_RANGE, LABELS, LANDMARK, MEDIA, ROOT, run_cli, serving

from fer_stream.errors import ModelError
from fer_stream.model.detector_files import ENV_DETECTOR, download_detector, resolve_detector_model


@pytest.fixture
def model_server():
    """Serves the shared detector models on loopback, as a mirror would."""
    files = {p.name: p.read_bytes() for p in (DETECTOR, FULL_RANGE, LANDMARK)}
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

    with serving(Handler) as url:
        yield url, hits


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
        FER_STREAM_LANDMARK_URL=url + "/face_landmark.tflite",
        FER_STREAM_TRUST_MIRROR="1",
    )
    for given in ("FER_STREAM_DETECTOR_MODEL", "FER_STREAM_FULL_RANGE_MODEL", "FER_STREAM_LANDMARK_MODEL"):  # else pull uses those files
        env.pop(given)
    r = run_cli(["models", "pull", "--model", "nobody/no-such-model"], env)
    # Both detectors and the landmark model came from the mirror.
    assert "detector (short-range): downloaded to" in r.stdout and "detector (full-range): downloaded to" in r.stdout
    assert "landmark model: downloaded to" in r.stdout
    assert (tmp_path / "blaze_face_short_range.tflite").read_bytes() == DETECTOR.read_bytes()
    assert (tmp_path / "face_detection_full_range_sparse.tflite").read_bytes() == FULL_RANGE.read_bytes()
    assert (tmp_path / "face_landmark.tflite").read_bytes() == LANDMARK.read_bytes()
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


SHIPPED = "samples/models/fer2013-video"


def _one_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("fer-stream: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_a_video_given_to_image_is_not_an_image_before_any_model_loads(cli_env):
    r = run_cli(["image", str(MEDIA[0]), "--model", "nobody/not-loaded"], cli_env, timeout=60)
    line = _one_line(r)
    assert "is not an image" in line and f"fer-stream --source {MEDIA[0]}" in line
    assert "not-loaded" not in r.stderr  # no model was looked for


@pytest.mark.parametrize("model", ["nosuchdir/", "no such dir", "a/b/c", "bad..name"])
def test_a_model_that_is_no_hub_id_is_a_missing_folder_not_a_hub_look_up(model, monkeypatch, tmp_path):
    from fer_stream.model.hub import load_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=f"^no such model folder '{re.escape(model)}'") as caught:
        load_model(model)
    assert "Hugging Face" not in str(caught.value) and "--model" in str(caught.value)


def test_the_default_model_offline_names_the_shipped_model(cli_env, tmp_path):
    env = dict(cli_env, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))
    r = run_cli(["image", str(FACES / "one_face.jpg")], env, timeout=120)  # the default model, trpakov/vit-face-expression
    line = _one_line(r)
    assert "fer-stream models pull --model trpakov/vit-face-expression" in line
    named = re.search(r"--model (\S+)$", line)
    assert named and Path(named.group(1)).resolve() == (ROOT / SHIPPED).resolve(), line  # a path that works from here
    if Path.cwd().resolve() == ROOT:
        assert line.endswith(f"--model {SHIPPED}")  # run from the repository: the short form


def _without_detectors(cli_env, tmp_path):
    env = dict(
        cli_env,
        FER_STREAM_CACHE=str(tmp_path / "cache"),
        FER_STREAM_DETECTOR_URL="http://127.0.0.1:9/blaze_face_short_range.tflite",
        FER_STREAM_FULL_RANGE_URL="http://127.0.0.1:9/face_detection_full_range_sparse.tflite",
        FER_STREAM_TRUST_MIRROR="1",
    )
    env.pop("FER_STREAM_DETECTOR_MODEL")
    env.pop("FER_STREAM_FULL_RANGE_MODEL")
    return env


def test_every_missing_detector_file_is_named_at_once_before_the_classifier_loads(cli_env, tmp_path):
    env = _without_detectors(cli_env, tmp_path)
    r = run_cli(["--source", str(MEDIA[0]), "--model", "nobody/not-loaded", "-q"], env, timeout=120)
    line = _one_line(r)
    assert "cannot download blaze_face_short_range.tflite and face_detection_full_range_sparse.tflite" in line
    assert "FER_STREAM_DETECTOR_MODEL and FER_STREAM_FULL_RANGE_MODEL" in line and "fer-stream models pull" in line
    assert "not-loaded" not in r.stderr  # the classifier was not looked for
    missing = ["--detector-model", "/no/a.tflite", "--full-range-model", "/no/b.tflite"]
    r = run_cli(["--source", str(MEDIA[0]), "--model", "nobody/not-loaded", *missing], cli_env, timeout=120)
    line = _one_line(r)
    assert "'/no/b.tflite' (from --full-range-model) does not exist" in line and "'/no/a.tflite' (from --detector-model)" in line
    assert "not-loaded" not in r.stderr


def test_models_pull_uses_the_detector_files_the_environment_names(cli_env, tmp_path):
    env = dict(cli_env, FER_STREAM_CACHE=str(tmp_path / "cache"), FER_STREAM_DETECTOR_URL="http://127.0.0.1:9/x.tflite")
    r = run_cli(["models", "pull", "--model", "nobody/no-such-model"], env, timeout=120)
    assert f"detector (short-range): using {env['FER_STREAM_DETECTOR_MODEL']} (from $FER_STREAM_DETECTOR_MODEL)" in r.stdout
    assert f"detector (full-range): using {env['FER_STREAM_FULL_RANGE_MODEL']} (from $FER_STREAM_FULL_RANGE_MODEL)" in r.stdout
    assert f"landmark model: using {env['FER_STREAM_LANDMARK_MODEL']} (from $FER_STREAM_LANDMARK_MODEL)" in r.stdout
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing downloaded
    line = _one_line(r)
    assert "cannot download classifier 'nobody/no-such-model'" in line and f"--model {SHIPPED}" in line


def test_a_failing_models_pull_does_not_say_run_models_pull(cli_env, tmp_path):
    env = _without_detectors(cli_env, tmp_path)
    r = run_cli(["models", "pull"], env, timeout=120)
    line = _one_line(r)
    assert "cannot download blaze_face_short_range.tflite and face_detection_full_range_sparse.tflite" in line
    assert "models pull" not in line and "FER_STREAM_DETECTOR_URL" in line and "FER_STREAM_DETECTOR_MODEL" in line
