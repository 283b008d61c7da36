"""samples/models/fer2013-video, fer-stream's offline default: its card's figures on the test split,
its calibration stored in every file it ships, its ONNX files in step with its weights, and real
faces through the default (ONNX Runtime) path."""

import json
import re

import numpy as np
import pytest
from conftest import EXPRESSIONS, FACES, ROOT, SHARED, media_file, run_cli

MODEL = ROOT / "samples" / "models" / "fer2013-video"
FER2013 = SHARED / "datasets" / "fer2013-train"
CARD = (MODEL / "README.md").read_text()
CONFIG = json.loads((MODEL / "config.json").read_text())

pytestmark = pytest.mark.media


def test_the_test_split_scores_what_the_card_says(cli_env, tmp_path):
    if not FER2013.is_dir():
        pytest.skip(f"{FER2013} not present")
    r = run_cli(["eval", str(FER2013), "--only", str(MODEL / "test.txt"), "--model", str(MODEL), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    card_accuracy = float(re.search(r"\*\*fer2013-video\*\* \| \*\*([\d.]+) %\*\*", CARD).group(1)) / 100
    assert rep["images"] == 2872 and abs(rep["accuracy"] - card_accuracy) < 0.01
    cal = rep["calibration"]
    assert cal["ece"] <= 0.05  # the bar
    assert cal["at_threshold"]["threshold"] == CONFIG["fer_stream"]["threshold"]
    assert cal["at_threshold"]["unflagged_accuracy"] >= 0.85 > 0.6 > cal["at_threshold"]["flagged_accuracy"]
    test = set((MODEL / "test.txt").read_text().split())
    assert not test & set((MODEL / "heldout.txt").read_text().split())  # the split that chose nothing is apart


def test_calibration_travels_in_every_file():
    ort = pytest.importorskip("onnxruntime")
    own = CONFIG["fer_stream"]
    assert 0.05 < own["temperature"] < 20 and 0 < own["threshold"] < 1 and own["target_accuracy"] == 0.85
    for name in ("model.onnx", "model_int8.onnx"):
        meta = ort.InferenceSession(str(MODEL / name), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        assert json.loads(meta["fer_stream.calibration"]) == own
    assert meta.get("fer_stream.precision") == "int8"  # the last one read: the int8 file


def test_the_onnx_files_answer_as_the_weights(cli_env):
    pytest.importorskip("onnxruntime")
    from fer_stream import EmotionClassifier
    from fer_stream.io.images import find_images, read_image

    faces = [read_image(p) for label in ("angry", "happy", "surprise", "sad") for p in find_images(EXPRESSIONS / label)[:10]]
    torch_clf = EmotionClassifier(str(MODEL), device="cpu", backend="torch")
    fast = EmotionClassifier(str(MODEL), device="cpu")
    int8 = EmotionClassifier(str(MODEL), device="cpu", precision="int8")
    assert fast.backend == int8.backend == "onnxruntime" and fast.threshold == CONFIG["fer_stream"]["threshold"]
    x = torch_clf.preprocess(faces)
    assert np.abs(fast.forward(x) - torch_clf.forward(x)).max() < 1e-3  # same pixels: the runtimes alone
    agree = (int8.forward(x).argmax(1) == fast.forward(x).argmax(1)).mean()
    assert agree >= 0.9  # the export checked 96.9 % on 256 validation crops
    conv = torch_clf.net.resnet.embedder.embedder.convolution.weight.detach().numpy()
    assert np.allclose(conv[:, 0], conv[:, 1], atol=1e-6) and np.allclose(conv[:, 0], conv[:, 2], atol=1e-6)  # colour-blind


def test_a_smiling_face_is_happy_and_a_calm_talking_head_is_neutral_and_mostly_sure(cli_env, tmp_path):
    r = run_cli(["image", str(FACES / "one_face.jpg"), "--model", str(MODEL), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    face = json.loads(r.stdout)[0]["faces"]
    assert len(face) == 1 and face[0]["label"] == "happy", face
    summary = tmp_path / "s.json"
    r = run_cli(["--source", str(media_file("436x384")), "--model", str(MODEL), "--summary", str(summary), "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["faces"] == 270 and max(s["labels"], key=s["labels"].get) == "neutral"
    assert s["flagged"] < 0.5 * s["faces"]  # the bar on a talking head (measured: none flagged)
    assert s["threshold"] == CONFIG["fer_stream"]["threshold"]  # the model's own, as none was given


def test_the_card_names_its_recipe_splits_and_limits():
    for needed in ("fer-stream train", "--exclude", "test.txt", "research", "temperature", "threshold", "int8", "macro F1"):
        assert needed in CARD
    assert f'"temperature": {CONFIG["fer_stream"]["temperature"]}' in CARD
