"""A model folder's config, processor settings and shard index are checked before its weights load:
each broken one is one clear line, never a crash, a huge allocation, a file outside the folder, or
a model run under the wrong labels. Training saves its best model whole and resumes only the same classes."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import EXPRESSIONS, LABELS, run_cli

from fer_stream import EmotionClassifier
from fer_stream.errors import ModelError


def _labels(n, num_labels=None):
    def change(c):
        c["id2label"] = {str(i): f"label{i}" for i in range(n)}
        c["label2id"] = {f"label{i}": i for i in range(n)}
        if num_labels is not None:
            c["num_labels"] = num_labels

    return change


def _set(key, value):
    def change(c):
        c[key] = value

    return change


def _outside_shard(folder):
    """The weights moved beside the folder, and an index in the folder pointing at them."""
    (folder / "model.safetensors").rename(folder.parent / "outside.safetensors")
    (folder / "decoy.safetensors").write_bytes(b"")
    index = {"metadata": {}, "weight_map": {"classifier.weight": "../outside.safetensors", "classifier.bias": "../outside.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


# name -> (change to config.json, to preprocessor_config.json, to the folder), what the error says
CASES = {
    "3 labels for 7 outputs": ((_labels(3), None, None), "names 3 labels but the weights have 7 outputs"),
    "9 labels for 7 outputs": ((_labels(9), None, None), "names 9 labels but the weights have 7 outputs"),
    "3 labels, num_labels 7": ((_labels(3, 7), None, None), "num_labels 7 but id2label names 3"),
    "200,000 labels": ((_labels(200_000), None, None), "lists 200,000 labels"),
    "no labels": ((_set("id2label", {}), None, None), "has no id2label"),
    "labels numbered with a gap": ((_set("id2label", {str(i): f"l{i}" for i in (0, 1, 2, 3, 4, 5, 9)}), None, None), "0 to 6"),
    "the same label twice": ((_set("id2label", {str(i): "happy" if i < 2 else f"l{i}" for i in range(7)}), None, None), "more than once"),
    "a label with a newline": (
        (_set("id2label", {str(i): "happy\nfer-stream: error: forged" if i == 3 else f"l{i}" for i in range(7)}), None, None),
        "printable",
    ),
    "a label with a tab": ((_set("id2label", {str(i): "\ttab" if i == 3 else f"l{i}" for i in range(7)}), None, None), "printable"),
    "a 60000x60000 input": ((None, _set("size", {"height": 60000, "width": 60000}), None), "is not an input size"),
    "a negative size": ((None, _set("size", {"height": -5, "width": 32}), None), "is not an input size"),
    "a size of text": ((None, _set("size", "big"), None), "is not an input size"),
    "means that are not numbers": ((None, _set("image_mean", ["a", "b", "c"]), None), "image_mean"),
    "a zero std": ((None, _set("image_std", [0.5, 0.0, 0.5]), None), "image_std"),
    "a rescale factor of text": ((None, _set("rescale_factor", "1/255"), None), "rescale_factor"),
    "a shard outside the folder": ((None, None, _outside_shard), "shards must be .safetensors files in the model folder itself"),
}


def _variant(tiny_model, tmp_path, config=None, processor=None, folder=None):
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    for name, change in (("config.json", config), ("preprocessor_config.json", processor)):
        if change is not None:
            data = json.loads((out / name).read_text())
            change(data)
            (out / name).write_text(json.dumps(data))
    if folder is not None:
        folder(out)
    return out


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_broken_model_folder_is_one_clear_error(case, tiny_model, tmp_path):
    changes, needle = CASES[case]
    folder = _variant(tiny_model, tmp_path, *changes)
    with pytest.raises(ModelError, match="model folder") as caught:
        EmotionClassifier(str(folder), device="cpu")
    message = str(caught.value)
    assert needle in message and "\n" not in message


def test_wrong_labels_are_one_line_on_the_command_line_before_anything_runs(tiny_model, cli_env, tmp_path):
    from conftest import FACES

    folder = _variant(tiny_model, tmp_path, _labels(9))
    r = run_cli(["image", str(FACES / "one_face.jpg"), "--model", str(folder)], cli_env)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1 and r.stdout == "", r.stderr
    assert lines[0].startswith("fer-stream: error: model folder") and "9 labels but the weights have 7 outputs" in lines[0]


def test_the_shipped_and_the_tiny_models_pass_the_checks(tiny_model):
    from conftest import ROOT

    shipped = EmotionClassifier(str(ROOT / "samples" / "models" / "fer2013-small"), device="cpu")
    assert shipped.labels == tuple(LABELS)
    assert EmotionClassifier(str(tiny_model), device="cpu").labels == tuple(LABELS)


def _small_data(tmp_path, classes):
    data = tmp_path / "data"
    for label in classes:
        (data / label).mkdir(parents=True)
        for p in sorted((EXPRESSIONS / label).glob("*.jpg"))[:4]:
            shutil.copy(p, data / label / p.name)
    return data


def test_resuming_on_other_class_folders_is_one_line(tiny_model, cli_env, tmp_path):
    data = _small_data(tmp_path, LABELS)
    out = tmp_path / "model"
    common = ["train", str(data), "--model", str(tiny_model), "--out", str(out), "--workers", "0", "--batch-size", "8", "-q"]
    r = run_cli(common + ["--epochs", "1"], cli_env)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(data / "surprise")
    r = run_cli(common + ["--epochs", "2", "--resume"], cli_env)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "trained on 7 classes" in lines[0] and "has 6" in lines[0] and "missing: surprise" in lines[0]


def test_the_best_model_is_replaced_whole_or_not_at_all(tiny_model, tmp_path, monkeypatch):
    """A crash (here: a full disk) while the next best model is written leaves the previous one intact."""
    from transformers import PreTrainedModel

    from fer_stream.commands.train import Recipe, train

    data = _small_data(tmp_path, LABELS)
    out = tmp_path / "model"
    train(data, str(tiny_model), out, Recipe(epochs=1, batch_size=8), device="cpu", progress=False, workers=0)
    files = ("config.json", "preprocessor_config.json", "model.safetensors")
    before = {name: (out / name).read_bytes() for name in files}
    real = PreTrainedModel.save_pretrained

    def disk_full(self, folder, *args, **kwargs):
        real(self, folder, *args, **kwargs)
        weights = Path(folder) / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])  # what the disk took
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(data, str(tiny_model), out, Recipe(epochs=1, batch_size=8, seed=1), device="cpu", progress=False, workers=0)
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in files} == before
    assert EmotionClassifier(str(out), device="cpu").labels == tuple(LABELS)
