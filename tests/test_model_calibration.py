"""A model's own calibration (temperature and threshold in its config.json) is used everywhere it
answers: torch and ONNX Runtime, the threshold when the user sets none; and flip test-time
augmentation averages a face and its mirror image."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import EXPRESSIONS, FACES, run_cli

from fer_stream import EmotionClassifier
from fer_stream.build import threshold_of
from fer_stream.config import load_config
from fer_stream.errors import ConfigError
from fer_stream.io.images import find_images, read_image
from fer_stream.model.calibration import model_calibration


@pytest.fixture(scope="module")
def calibrated(tiny_model, tmp_path_factory):
    """The tiny model with a stored temperature of 2.5 and threshold of 0.31."""
    folder = tmp_path_factory.mktemp("calibrated")
    for f in tiny_model.iterdir():
        shutil.copy(f, folder / f.name)
    config = json.loads((folder / "config.json").read_text())
    config["fer_stream"] = {"temperature": 2.5, "threshold": 0.31, "target_accuracy": 0.85, "fitted_on": 100}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def crops(n: int = 16) -> list[np.ndarray]:
    return [read_image(p) for label in ("happy", "angry") for p in find_images(EXPRESSIONS / label)[: n // 2]]


def test_the_stored_temperature_divides_the_logits_and_the_threshold_is_the_models(calibrated, tiny_model):
    plain = EmotionClassifier(str(tiny_model), device="cpu")
    clf = EmotionClassifier(str(calibrated), device="cpu")
    x = clf.preprocess(crops())
    with torch.inference_mode():
        logits = plain.net(pixel_values=x).logits.float()
    assert np.allclose(clf.forward(x), (logits / 2.5).softmax(-1).numpy(), atol=1e-6)
    assert np.array_equal(clf.forward(x).argmax(1), plain.forward(x).argmax(1))  # the winner never changes
    assert clf.threshold == 0.31 and plain.threshold == 0.7
    assert EmotionClassifier(str(calibrated), device="cpu", threshold=0.9).threshold == 0.9
    assert model_calibration(str(calibrated)).temperature == 2.5


def test_auto_threshold_resolves_to_the_models_and_a_users_value_wins(calibrated, tiny_model):
    assert threshold_of(load_config(None, {"classifier.model": str(calibrated)})) == 0.31
    assert threshold_of(load_config(None, {"classifier.model": str(tiny_model)})) == 0.7
    assert threshold_of(load_config(None, {"classifier.model": str(calibrated), "classifier.threshold": 0.8})) == 0.8
    with pytest.raises(ConfigError, match="'auto' or a number from 0.0 to 1.0"):
        load_config(None, {"classifier.threshold": "high"})


def test_the_cli_flags_with_the_models_threshold_and_reports_it(calibrated, cli_env, tmp_path):
    face = str(FACES / "one_face.jpg")
    r = run_cli(["image", face, "--model", str(calibrated), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    faces = json.loads(r.stdout)[0]["faces"]
    assert faces and all(f["flagged"] == (f["confidence"] < 0.31) for f in faces)
    r = run_cli(["image", face, "--model", str(calibrated), "--json", "--threshold", "1.0"], cli_env)
    assert all(f["flagged"] for f in json.loads(r.stdout)[0]["faces"])
    r = run_cli(["image", face, "--model", str(calibrated), "--threshold", "lots"], cli_env)
    assert r.returncode != 0 and "--threshold" in r.stderr and "Traceback" not in r.stderr


def test_an_exported_model_carries_its_calibration(calibrated, tmp_path):
    pytest.importorskip("onnxruntime")
    from fer_stream.model.export import export_onnx

    out = tmp_path / "cal.onnx"
    export_onnx(str(calibrated), out)
    torch_clf = EmotionClassifier(str(calibrated), device="cpu")
    onnx_clf = EmotionClassifier(str(out), device="cpu", backend="onnxruntime")
    x = torch_clf.preprocess(crops())
    assert np.allclose(onnx_clf.forward(x), torch_clf.forward(x), atol=1e-4)
    assert onnx_clf.threshold == 0.31 and model_calibration(str(out)).threshold == 0.31


def test_flip_averages_each_face_with_its_mirror_image(tiny_model):
    plain = EmotionClassifier(str(tiny_model), device="cpu")
    tta = EmotionClassifier(str(tiny_model), device="cpu", tta="flip")
    faces = crops(8)
    mirrored = [np.ascontiguousarray(f[:, ::-1]) for f in faces]
    expected = (plain.forward(plain.preprocess(faces)) + plain.forward(plain.preprocess(mirrored))) / 2
    got = tta.forward(tta.preprocess(faces))
    # Flipping the resized tensor and resizing the flipped image differ by resampling rounding only.
    assert np.abs(got - expected).max() < 5e-4 < 2e-3 < np.abs(got - plain.forward(plain.preprocess(faces))).max()
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        EmotionClassifier(str(tiny_model), device="cpu", tta="rotate")
