"""fer-stream parity: a device against the CPU on the same images."""

import json

import numpy as np
import torch
from conftest import EXPRESSIONS, run_cli

from fer_stream import EmotionClassifier
from fer_stream.commands.parity import compare
from fer_stream.io.images import find_images, read_image, synthetic_faces


def test_synthetic_set_is_fixed():
    a, b = synthetic_faces(4), synthetic_faces(4)
    assert len(a) == 4 and a[0].shape == (224, 224, 3) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[1])


def test_cpu_against_cpu_passes_and_a_perturbed_candidate_fails(tiny_model):
    ref = EmotionClassifier(str(tiny_model), device="cpu")
    pixels = ref.preprocess([read_image(p) for p in find_images(EXPRESSIONS)[::7]])
    same = compare(ref, EmotionClassifier(str(tiny_model), device="cpu"), pixels)
    assert same["passed"] and same["mean_cosine"] == 1.0 and same["mae"] == 0 and same["top1_agreement"] == 1.0
    assert same["images"] == 40 and same["reference"]["faces_per_s"] > 0
    bent = EmotionClassifier(str(tiny_model), device="cpu")
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in bent.net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 * p.std().clamp(min=1e-3))
    off = compare(ref, bent, pixels)
    assert not off["passed"] and off["mean_cosine"] < 0.999
    # The figures are what they say: recompute them here.
    r, c = ref.forward(pixels), bent.forward(pixels)
    cos = (r * c).sum(1) / (np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1))
    assert off["mean_cosine"] == round(float(cos.mean()), 6)
    assert off["top1_agreement"] == round(float((r.argmax(1) == c.argmax(1)).mean()), 4)
    assert off["mae"] == round(float(np.abs(r - c).mean()), 6)


def test_parity_command_exit_codes_and_json(tiny_model, cli_env):
    r = run_cli(["parity", "--device", "cpu", "--model", str(tiny_model), "--count", "12", "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["passed"] and rep["images"] == 12 and rep["candidate"]["device"] == "cpu" and "synthetic" in rep["on"]
    r = run_cli(
        [
            "parity",
            "--device",
            "cpu",
            "--precision",
            "int8",
            "--model",
            str(tiny_model),
            "--images",
            str(EXPRESSIONS / "happy"),
            "--min-cosine",
            "1.5",
        ],
        cli_env,
    )
    assert r.returncode == 1 and r.stdout.startswith("parity FAILED: cpu int8 against cpu fp32 on 40 images")
    r = run_cli(["parity", "--device", "cuda", "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("fer-stream: error:")
