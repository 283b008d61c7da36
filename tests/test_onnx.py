"""ONNX export checks itself, and ONNX Runtime agrees with PyTorch in image, eval and the pipeline."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import EXPRESSIONS, ROOT, SHARED, media_file, run_cli

from fer_stream import EmotionClassifier
from fer_stream.errors import ModelError
from fer_stream.io.images import find_images, read_image

PORTRAIT = media_file("436x384")


@pytest.fixture(scope="module")
def exported(tiny_model, cli_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    r = run_cli(["export", "--format", "onnx", str(out), "--model", str(tiny_model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_export_reports_its_difference_from_pytorch(exported):
    out, result = exported
    assert out.is_file() and result["path"] == str(out) and result["images"] == 8
    assert result["max_abs_diff"] < 1e-4 and result["top1_agreement"] == 1.0


def test_onnxruntime_agrees_with_pytorch_on_real_faces(exported, tiny_model):
    out, _ = exported
    torch_clf = EmotionClassifier(str(tiny_model), device="cpu")
    ort_clf = EmotionClassifier(str(out), device="cpu", backend="onnxruntime")
    assert ort_clf.labels == torch_clf.labels and ort_clf.net is None
    images = [read_image(p) for p in find_images(EXPRESSIONS)[::5]]  # 56 images, batches of 8 and a partial one
    x = torch_clf.preprocess(images)
    a = torch_clf.forward(x)
    b = ort_clf.forward(x)  # the same pixel values: the two runtimes alone
    assert b.shape == a.shape and np.abs(a - b).max() < 1e-4
    # ONNX Runtime's own (numpy, PIL-resampled) preprocessing: resampling rounding apart.
    c = ort_clf.forward(ort_clf.preprocess(images))
    assert np.abs(a - c).max() < 0.02 and (a.argmax(1) == c.argmax(1)).mean() >= 0.9
    assert (a.argmax(1) == b.argmax(1)).all()


def test_backend_in_image_eval_and_the_pipeline(exported, tiny_model, cli_env, tmp_path):
    out, _ = exported
    face = str(SHARED / "faces" / "one_face.jpg")
    runs = {
        b: run_cli(
            ["image", face, "--json", "--device", "cpu"]
            + (["--backend", "onnxruntime", "--model", str(out)] if b else ["--model", str(tiny_model)]),
            cli_env,
        )
        for b in (True, False)
    }
    ort_doc, torch_doc = (json.loads(runs[b].stdout) for b in (True, False))
    for fo, ft in zip(ort_doc[0]["faces"], torch_doc[0]["faces"]):
        assert fo["box"] == ft["box"] and fo["label"] == ft["label"]
        # ONNX Runtime's numpy preprocessing resamples with PIL, torch's with its own kernel: rounding apart.
        assert all(abs(fo["probs"][k] - ft["probs"][k]) < 0.02 for k in ft["probs"])
    ev = {
        b: json.loads(
            run_cli(
                ["eval", str(EXPRESSIONS), "--json"]
                + (["--backend", "onnxruntime", "--model", str(out)] if b else ["--model", str(tiny_model)]),
                cli_env,
            ).stdout
        )
        for b in (True, False)
    }
    assert abs(ev[True]["accuracy"] - ev[False]["accuracy"]) <= 0.03 and ev[True]["images"] == ev[False]["images"]
    summary = tmp_path / "s.json"
    r = run_cli(
        ["--source", str(PORTRAIT), "--backend", "onnxruntime", "--model", str(out), "--max-frames", "30", "--summary", str(summary), "-q"],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["frames_out"] == 30 and s["classified"] == 30


def test_backend_mistakes_are_clear(exported, tiny_model, tmp_path):
    with pytest.raises(ModelError, match="fer-stream export --format onnx"):
        EmotionClassifier(str(tiny_model), device="cpu", backend="onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not an ONNX model"):
        EmotionClassifier(str(bad), device="cpu", backend="onnxruntime")


def test_parity_of_onnxruntime_against_the_pytorch_model_it_came_from(exported, cli_env):
    out, _ = exported
    r = run_cli(["parity", "--backend", "onnxruntime", "--model", str(out), "--device", "cpu", "--count", "16", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["passed"] and rep["mean_cosine"] > 0.99999 and rep["top1_agreement"] == 1.0 and rep["images"] == 16


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("fer_stream.id2label", "{not json", "broken fer-stream metadata"),
        ("fer_stream.id2label", "{}", "no labels"),
        ("fer_stream.preprocessor", '{"image_processor_type": "AutoModelForCausalLM"}', "is not an image processor"),
        ("fer_stream.preprocessor", '{"image_processor_type": "os.system"}', "is not an image processor"),
        ("fer_stream.preprocessor", '["a list"]', "no processor settings"),
    ],
)
def test_bad_metadata_is_one_clear_error(exported, tmp_path, key, value, expected):
    import onnx

    from fer_stream.errors import ModelError
    from fer_stream.model.onnx_runtime import OnnxModel

    proto = onnx.load(str(exported[0]))
    entries = {p.key: p.value for p in proto.metadata_props}
    assert key in entries, entries.keys()
    for p in proto.metadata_props:
        if p.key == key:
            p.value = value
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ModelError, match=expected):
        OnnxModel(bad)


def test_a_failed_export_leaves_no_file(tiny_model, cli_env, tmp_path):
    out = tmp_path / "m.onnx"
    # A tolerance no float difference meets (a negative one is refused now: --tolerance must be positive).
    r = run_cli(["export", "--format", "onnx", str(out), "--model", str(tiny_model), "--tolerance", "1e-300"], cli_env)
    assert r.returncode != 0 and "differs from PyTorch" in r.stderr and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no partial file either


def _labels(n):
    return {str(i): f"label{i}" for i in range(n)}


@pytest.mark.parametrize(
    "labels, processor, expected",
    [
        (_labels(3), None, "names 3 labels for the model's 7 outputs"),
        (_labels(9), None, "names 9 labels for the model's 7 outputs"),
        (_labels(200_000), None, "lists 200,000 labels"),
        (None, {"size": {"height": 60000, "width": 60000}}, "is not an input size"),
        (None, {"size": {"height": -5, "width": 32}}, "is not an input size"),
        (None, {"image_mean": ["a", "b", "c"]}, "image_mean"),
        (None, {"size": {"height": 48, "width": 48}}, "the processor resizes to 48x48, the graph takes 32x32"),
    ],
    ids=["3 labels", "9 labels", "200,000 labels", "60000x60000", "negative size", "text means", "other size"],
)
def test_metadata_that_does_not_fit_the_model_is_refused(exported, tmp_path, labels, processor, expected):
    """The same checks as a model folder's: labels match the outputs, sizes and means are sane."""
    import onnx

    from fer_stream.model.onnx_runtime import META_LABELS, META_PROCESSOR, OnnxModel

    proto = onnx.load(str(exported[0]))
    for p in proto.metadata_props:
        if p.key == META_LABELS and labels is not None:
            p.value = json.dumps(labels)
        if p.key == META_PROCESSOR and processor is not None:
            p.value = json.dumps({**json.loads(p.value), **processor})
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ModelError, match=expected) as caught:
        OnnxModel(bad)
    assert "\n" not in str(caught.value)


SHIPPED = sorted(p.parent for p in (ROOT / "samples" / "models").glob("*/config.json"))


@pytest.mark.parametrize("model", SHIPPED, ids=[p.name for p in SHIPPED])
def test_export_of_every_shipped_model_passes_its_own_check(model, cli_env, tmp_path):
    """fer2013-small is a ResNet: its batch-norm layers must be in eval mode on both sides of the check."""
    out = tmp_path / "m.onnx"
    r = run_cli(["export", "--format", "onnx", str(out), "--model", str(model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["max_abs_diff"] < 1e-4 and result["top1_agreement"] == 1.0 and out.is_file()
    assert not list(tmp_path.glob("*.partial.*"))


def test_export_never_replaces_an_existing_file_unasked_nor_loses_it_when_it_fails(tiny_model, cli_env, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"yesterday's model")
    r = run_cli(["export", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "already exists; pass --overwrite" in r.stderr and r.stderr.count("\n") == 1
    assert out.read_bytes() == b"yesterday's model"
    probe = tmp_path / "probe.onnx"  # the same export, to know its difference is not zero
    r = run_cli(["export", str(probe), "--model", str(tiny_model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["max_abs_diff"] > 1e-300
    r = run_cli(["export", str(out), "--overwrite", "--tolerance", "1e-300", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "differs from PyTorch" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"yesterday's model"  # a failed export leaves the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "probe.onnx"]
    r = run_cli(["export", str(out), "--overwrite", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == probe.read_bytes()


def test_export_never_writes_through_a_link(tiny_model, cli_env, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "m.onnx"
    out.symlink_to(victim)
    r = run_cli(["export", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "already exists" in r.stderr
    (tmp_path / "m.partial.onnx").symlink_to(victim)  # planted at the partial name as well
    r = run_cli(["export", str(out), "--overwrite", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me\n"
    assert not out.is_symlink() and out.stat().st_size > 1000  # the link itself was replaced by the model
    assert not os.path.lexists(tmp_path / "m.partial.onnx")


@pytest.mark.parametrize("tolerance", ["0", "-1", "nan"])
def test_export_tolerance_must_be_positive(tolerance, cli_env, tmp_path):
    r = run_cli(["export", str(tmp_path / "m.onnx"), "--tolerance", tolerance, "--model", str(tmp_path / "no-model")], cli_env)
    assert r.returncode == 2 and "--tolerance must be a positive number" in r.stderr and r.stderr.count("\n") == 1
