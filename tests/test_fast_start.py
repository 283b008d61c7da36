"""The start-fast path: a model folder that ships its exported ONNX file runs through ONNX Runtime
with numpy preprocessing, without importing torch or transformers, and answers as PyTorch does."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import EXPRESSIONS, FACES, MEDIA, ROOT

from fer_stream import EmotionClassifier
from fer_stream.io.images import find_images, read_image
from fer_stream.model.classifier import choose_backend

pytest.importorskip("onnxruntime")

DRIVER = (
    "import json, sys\nfrom fer_stream.cli import main\nrc = main(sys.argv[1:])\n"
    "print(json.dumps({'rc': rc, 'heavy': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}), file=sys.stderr)"
)


@pytest.fixture(scope="module")
def shipped_folder(tiny_model, tmp_path_factory):
    """The tiny model's folder with model.onnx beside its weights, as a shipped model folder has it."""
    from fer_stream.model.export import export_onnx

    folder = tmp_path_factory.mktemp("with_onnx")
    for f in tiny_model.iterdir():
        shutil.copy(f, folder / f.name)
    export_onnx(str(folder), folder / "model.onnx")
    return folder


def drive(args: list[str], env: dict[str, str]) -> tuple[dict, subprocess.CompletedProcess[str]]:
    r = subprocess.run([sys.executable, "-c", DRIVER, *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    return json.loads(r.stderr.strip().splitlines()[-1]), r


@pytest.mark.media
def test_a_video_run_imports_neither_torch_nor_transformers(shipped_folder, cli_env, tmp_path):
    video = next(m for m in MEDIA if m.name.startswith("portrait"))
    events = tmp_path / "events.jsonl"
    out, r = drive(["--source", str(video), "--model", str(shipped_folder), "--max-frames", "3", "--events", str(events), "-q"], cli_env)
    assert out == {"rc": 0, "heavy": []}, r.stderr
    fast = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(fast) == 3 and all(e["label"] for e in fast)
    slow_events = tmp_path / "torch.jsonl"
    out, r = drive(
        [
            "--source",
            str(video),
            "--model",
            str(shipped_folder),
            "--max-frames",
            "3",
            "--events",
            str(slow_events),
            "-q",
            "--backend",
            "torch",
        ],
        cli_env,
    )
    assert out["rc"] == 0 and "torch" in out["heavy"], r.stderr
    slow = [json.loads(line) for line in slow_events.read_text().splitlines()]
    assert [e["label"] for e in fast] == [e["label"] for e in slow]
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(fast, slow)) < 0.02


def test_numpy_preprocessing_answers_as_pytorch_on_real_crops(shipped_folder):
    faces = [read_image(p) for label in ("happy", "sad", "surprise") for p in find_images(EXPRESSIONS / label)[:8]]
    faces.append(read_image(FACES / "one_face.jpg"))
    fast = EmotionClassifier(str(shipped_folder), device="cpu")
    slow = EmotionClassifier(str(shipped_folder), device="cpu", backend="torch")
    assert fast.backend == "onnxruntime" and slow.backend == "torch" and fast.processor is None
    p_fast = fast.forward(fast.preprocess(faces))
    p_slow = slow.forward(slow.preprocess(faces))
    # PIL's resize (numpy path) against torch's antialiased interpolation: rounding apart.
    assert np.abs(p_fast - p_slow).max() < 0.02 and (p_fast.argmax(1) == p_slow.argmax(1)).mean() >= 0.95
    assert fast.labels == slow.labels
    tta = EmotionClassifier(str(shipped_folder), device="cpu", tta="flip")
    x = tta.preprocess(faces)
    assert np.allclose(tta.forward(x), (fast.forward(x) + fast.forward(np.ascontiguousarray(x[..., ::-1]))) / 2, atol=1e-6)


def test_auto_chooses_onnx_runtime_only_where_it_can(shipped_folder, tiny_model):
    assert choose_backend(str(shipped_folder), "cpu", "fp32", "auto") == "onnxruntime"
    assert choose_backend(str(shipped_folder), "cpu", "int8", "auto") == "torch"  # no model_int8.onnx in the folder
    assert choose_backend(str(shipped_folder), "cpu", "bf16", "auto") == "torch"
    assert choose_backend(str(shipped_folder), "cuda", "fp32", "auto") == "torch"
    assert choose_backend(str(tiny_model), "cpu", "fp32", "auto") == "torch"  # no ONNX file at all
    assert choose_backend(str(shipped_folder), "cpu", "fp32", "torch") == "torch"
    assert choose_backend(str(shipped_folder / "model.onnx"), "auto", "fp32", "auto") == "onnxruntime"


def test_image_json_on_the_fast_path(shipped_folder, cli_env):
    out, r = drive(["image", str(FACES / "one_face.jpg"), "--model", str(shipped_folder), "--json"], cli_env)
    assert out == {"rc": 0, "heavy": []}, r.stderr
    faces = json.loads(r.stdout)[0]["faces"]
    assert len(faces) == 1 and faces[0]["label"]
