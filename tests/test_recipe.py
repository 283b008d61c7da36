"""The training recipe's parts: video-like augmentations, erasing, mixup/cutmix, distillation, --exclude,
and the calibration stored with a trained model."""

import json
import math

import cv2
import numpy as np
import pytest
import torch
from conftest import EXPRESSIONS, LABELS, SHARED, run_cli

from fer_stream.commands import augment as aug
from fer_stream.io.images import find_images, read_image
from fer_stream.model.calibration import Calibration, calibration_of, fit_temperature, flag_split, reliability, softmax, threshold_for

FACE = SHARED / "faces" / "one_face.jpg"


def face_batch(n: int = 8, size: int = 64) -> torch.Tensor:
    """``n`` copies of a real face, 0-255 floats (N, 3, size, size)."""
    rgb = cv2.resize(read_image(FACE), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(rgb).permute(2, 0, 1).float().unsqueeze(0).repeat(n, 1, 1, 1)


def sharpness(x: torch.Tensor) -> float:
    grey = x.mean(dim=1)[0].numpy().astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def test_each_level_keeps_shape_and_range_and_is_reproducible():
    x = face_batch()
    assert torch.equal(aug.augment(x, torch.Generator().manual_seed(0), "none"), x)
    for level in ("basic", "video"):
        a = aug.augment(x, torch.Generator().manual_seed(3), level, 0.5)
        b = aug.augment(x, torch.Generator().manual_seed(3), level, 0.5)
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 255 and torch.equal(a, b)
        assert not torch.allclose(a, x)
    with pytest.raises(ValueError, match="unknown augmentation level"):
        aug.augment(x, torch.Generator(), "heavy")


def test_blur_and_low_resolution_remove_detail_of_a_real_face():
    x = face_batch(4)
    g = torch.Generator().manual_seed(0)
    assert sharpness(aug.blur(x, g, p=1.0, max_sigma=1.6)) < 0.6 * sharpness(x)
    assert sharpness(aug.rescale(x, g, p=1.0, smallest=0.35)) < 0.8 * sharpness(x)
    jpg = aug.jpeg(x, g, p=1.0, quality=(10, 10))
    assert jpg.shape == x.shape and 0 < float((jpg - x).abs().mean()) < 20  # changed, still the same face


def test_side_light_darkens_one_side_and_colour_cast_tints_a_grey_face():
    grey = face_batch(16).mean(dim=1, keepdim=True).repeat(1, 3, 1, 1)
    lit = aug.lighting(grey, torch.Generator().manual_seed(1), p=1.0)
    ratio = lit / grey.clamp(min=1)
    # A linear ramp across the face: opposite corners differ in gain.
    corners = torch.stack([ratio[:, 0, :8, :8].mean((1, 2)), ratio[:, 0, -8:, -8:].mean((1, 2))], 1)
    assert float((corners[:, 0] - corners[:, 1]).abs().min()) > 0.05
    cast = aug.colour_cast(grey, torch.Generator().manual_seed(1), p=1.0)
    spread = (cast.max(dim=1).values - cast.min(dim=1).values).mean((1, 2))
    assert float(spread.min()) > 1.0  # R, G and B no longer equal


def test_random_erasing_covers_one_rectangle_of_two_to_fifteen_percent():
    x = face_batch(32)
    y = aug.erase(x, torch.Generator().manual_seed(0), p=1.0)
    for i in range(len(x)):
        changed = (y[i] != x[i]).any(dim=0).numpy()
        rows, cols = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert 0.01 <= box / changed.size <= 0.17  # rounding of the sides


def test_cutmix_reports_the_pasted_area_and_mixup_blends():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 32, 32).contiguous()
    t = torch.tensor([0, 1, 2, 3])
    g = torch.Generator().manual_seed(5)
    m = aug.mix(x, t, g, mixup=0.0, cutmix=1.0, p=1.0)
    for i in range(4):
        own = float((m.x[i, 0] == x[i, 0]).float().mean())
        assert own == pytest.approx(m.lam, abs=1e-6) or m.a[i] == m.b[i]
    assert (m.x == x[torch.tensor([int(v) for v in m.b])]).any()
    m = aug.mix(x, t, torch.Generator().manual_seed(2), mixup=0.4, cutmix=0.0, p=1.0)
    expected = m.lam * x + (1 - m.lam) * x[m.b]
    assert torch.allclose(m.x, expected) and 0 <= m.lam <= 1
    same = aug.mix(x, t, g, mixup=0.4, cutmix=1.0, p=0.0)
    assert same.lam == 1.0 and torch.equal(same.x, x)


def test_temperature_fitting_finds_the_temperature_of_the_data():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 7))
    p = softmax(logits, 2.5)  # labels drawn as if the model's logits were 2.5 times too large
    y = np.array([rng.choice(7, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(2.5, rel=0.06)
    before = reliability(softmax(logits).max(1), softmax(logits).argmax(1) == y)
    after = reliability(p.max(1), p.argmax(1) == y)
    assert after.ece < 0.02 < before.ece and sum(after.counts) == 20000


def test_threshold_and_flag_split_on_a_known_answer_set():
    conf = np.array([0.95, 0.9, 0.85, 0.8, 0.6, 0.55, 0.5, 0.4])
    right = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    assert threshold_for(conf, right, 0.75, floor=1) == 0.56  # the top five answers: 4 of 5 right
    assert threshold_for(conf, right, 0.99, floor=1) == 0.81
    assert threshold_for(conf, right, 0.75, floor=6) is None
    split = flag_split(conf, right, 0.7)
    assert split == {
        "threshold": 0.7,
        "flagged_share": 0.5,
        "unflagged_accuracy": 0.75,
        "flagged_accuracy": 0.25,
        "unflagged": 4,
        "flagged": 4,
    }


def test_calibration_entries_that_make_no_sense_are_ignored():
    assert calibration_of({"fer_stream": {"temperature": 1.7, "threshold": 0.55}}) == Calibration(1.7, 0.55)
    assert calibration_of({}) == Calibration()
    assert calibration_of({"fer_stream": {"temperature": -1, "threshold": 3}}) == Calibration()
    assert calibration_of({"fer_stream": {"temperature": float("nan"), "threshold": "high"}}) == Calibration()
    assert calibration_of({"fer_stream": "hot"}) == Calibration()


def colour_blind_base(tmp_path):
    """A tiny ResNet whose first convolution has equal R, G, B weights (as samples/models/make_base.py builds)."""
    from transformers import ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    cfg = ResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=7,
        id2label=dict(enumerate(LABELS)),
        label2id={l: i for i, l in enumerate(LABELS)},
    )
    net = ResNetForImageClassification(cfg)
    conv = net.resnet.embedder.embedder.convolution
    with torch.no_grad():
        conv.weight.copy_(conv.weight.mean(dim=1, keepdim=True).expand_as(conv.weight))
    out = tmp_path / "base"
    net.save_pretrained(out)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(out)
    return out


def test_the_recipe_trains_excludes_a_test_set_stores_calibration_and_stays_colour_blind(cli_env, tmp_path):
    base = colour_blind_base(tmp_path)
    test = sorted(str(p.relative_to(EXPRESSIONS)) for label in LABELS for p in find_images(EXPRESSIONS / label)[:4])
    (tmp_path / "test.txt").write_text("\n".join(test) + "\n")
    out = tmp_path / "model"
    args = ["train", str(EXPRESSIONS), "--model", str(base), "--out", str(out), "--epochs", "2", "--batch-size", "16"]
    args += ["--augment", "video", "--erase", "0.5", "--cutmix", "1", "--mixup", "0.2", "--mix-prob", "1", "--warmup-epochs", "1"]
    args += ["--exclude", str(tmp_path / "test.txt"), "--val-fraction", "0.25", "--json", "-q"]
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["excluded_images"] == 28 and run["train_images"] + run["val_images"] == 280 - 28
    held = set((out / "heldout.txt").read_text().split())
    assert len(held) == run["val_images"] and not held & set(test)
    assert (out / "test.txt").read_text().split() == test
    entry = json.loads((out / "config.json").read_text())["fer_stream"]
    assert 0.05 <= entry["temperature"] <= 20 and entry["fitted_on"] == run["val_images"]
    assert run["calibration"]["temperature"] == entry["temperature"] and run["recipe"]["cutmix"] == 1.0
    from safetensors.torch import load_file

    w = load_file(str(out / "model.safetensors"))["resnet.embedder.embedder.convolution.weight"]
    assert not torch.allclose(w, load_file(str(base / "model.safetensors"))["resnet.embedder.embedder.convolution.weight"])
    assert torch.allclose(w, w[:, :1].expand_as(w), atol=1e-6)  # colour casts did not untie R, G and B


def test_distillation_from_a_teacher_and_a_teacher_of_other_classes(cli_env, tiny_model, tmp_path):
    base = colour_blind_base(tmp_path)
    args = ["train", str(EXPRESSIONS), "--model", str(base), "--epochs", "1", "--batch-size", "32", "--json", "-q"]
    r = run_cli(args + ["--out", str(tmp_path / "student"), "--teacher", str(tiny_model), "--distill-weight", "0.9"], cli_env)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["recipe"]["teacher"] == str(tiny_model) and math.isfinite(run["history"][0]["train_loss"])
    other = tmp_path / "four"
    for label in LABELS[:4]:
        (other / label).mkdir(parents=True)
        for p in find_images(EXPRESSIONS / label)[:6]:
            (other / label / p.name).symlink_to(p)
    r = run_cli(["train", str(other), "--model", str(base), "--out", str(tmp_path / "s2"), "--teacher", str(tiny_model), "-q"], cli_env)
    assert r.returncode != 0 and "distil from a model of the same classes" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "flag, value", [("--erase", "1.5"), ("--mixup", "-1"), ("--mix-prob", "2"), ("--distill-weight", "3"), ("--target-accuracy", "1")]
)
def test_recipe_values_out_of_range_are_one_line_errors(cli_env, tiny_model, tmp_path, flag, value):
    r = run_cli(["train", str(EXPRESSIONS), "--model", str(tiny_model), "--out", str(tmp_path / "m"), flag, value, "-q"], cli_env)
    assert r.returncode != 0 and flag in r.stderr and "Traceback" not in r.stderr
