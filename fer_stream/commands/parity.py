"""``fer-stream parity``: does a device (and precision) give the CPU's answers?

The same face images, preprocessed once on the host, go through the classifier on the CPU in fp32
(the reference) and on the candidate device in the candidate precision. The report gives the mean
cosine similarity and mean absolute error of the probability vectors, the top-1 agreement, and
both throughputs, and passes or fails against tolerances (defaults: cosine >= 0.999, top-1 >= 99 %),
which is how a port to a new accelerator is checked before it is trusted.

>>> report = compare(reference, candidate, pixels)        # doctest: +SKIP
>>> report["passed"], report["mean_cosine"]               # doctest: +SKIP
(True, 0.999983)
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_stream.build import make_classifier
from fer_stream.commands.options import model_flags
from fer_stream.config import Config
from fer_stream.errors import ConfigError, counted
from fer_stream.io.images import SYNTHETIC_SEED, find_images, read_image, synthetic_faces

if TYPE_CHECKING:  # torch (seconds to import) only once a comparison runs, not for ``--help``
    import torch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream parity",
        description="Check a device and precision against the CPU in fp32 on the same face images: mean cosine "
        "similarity, mean absolute error, top-1 agreement and both throughputs; exit 1 when outside tolerances.",
    )
    p.add_argument("--images", metavar="DIR", help="face images (subfolders searched); default: a fixed-seed synthetic set")
    p.add_argument("--count", type=int, default=64, metavar="N", help="synthetic images when --images is not given (default 64)")
    p.add_argument("--min-cosine", type=float, default=0.999, metavar="C", help="least mean cosine similarity to pass (default 0.999)")
    p.add_argument("--min-top1", type=float, default=0.99, metavar="F", help="least top-1 agreement to pass, 0-1 (default 0.99)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ConfigError("--count must be at least 1")
    return run_parity(
        cfg,
        device=cfg.classifier.device,
        precision=cfg.classifier.precision,
        images=args.images,
        count=args.count,
        min_cosine=args.min_cosine,
        min_top1=args.min_top1,
        as_json=args.json,
    )


def _probs_and_rate(clf: Any, pixels: torch.Tensor) -> tuple[np.ndarray, float]:
    import torch

    clf.forward(pixels[: clf.max_batch])  # warm-up (NPU kernels compile on the first batch)
    start = time.perf_counter()
    out = [clf.forward(pixels[i : i + clf.max_batch]) for i in range(0, len(pixels), clf.max_batch)]
    if clf.device.type == "cuda":
        torch.cuda.synchronize()
    return np.concatenate(out), len(pixels) / (time.perf_counter() - start)


def agreement(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """How closely two ``(N, labels)`` probability arrays agree: cosine, MAE and top-1 agreement."""
    cos = np.sum(ref * cand, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1))
    return {
        "mean_cosine": round(float(np.mean(cos)), 6),
        "min_cosine": round(float(np.min(cos)), 6),
        "mae": round(float(np.mean(np.abs(ref - cand))), 6),
        "top1_agreement": round(float(np.mean(ref.argmax(1) == cand.argmax(1))), 4),
    }


def compare(reference: Any, candidate: Any, pixels: torch.Tensor, *, min_cosine: float = 0.999, min_top1: float = 0.99) -> dict[str, Any]:
    """Run ``pixels`` through both classifiers; figures and the verdict as a dict."""
    if tuple(reference.labels) != tuple(candidate.labels):
        raise ValueError("reference and candidate list different labels")
    ref, ref_rate = _probs_and_rate(reference, pixels)
    cand, cand_rate = _probs_and_rate(candidate, pixels)
    figures = agreement(ref, cand)
    return {
        "images": len(pixels),
        "reference": {"device": str(reference.device), "precision": reference.precision, "faces_per_s": round(ref_rate, 2)},
        "candidate": {"device": str(candidate.device), "precision": candidate.precision, "faces_per_s": round(cand_rate, 2)},
        **figures,
        "tolerances": {"mean_cosine": min_cosine, "top1_agreement": min_top1},
        "passed": figures["mean_cosine"] >= min_cosine and figures["top1_agreement"] >= min_top1,
    }


def run_parity(
    cfg: Config, *, device: str, precision: str, images: str | None, count: int, min_cosine: float, min_top1: float, as_json: bool
) -> int:
    """The ``parity`` command: print the report; exit 0 when it passes, 1 when it does not."""
    import torch

    if images:
        files = find_images(images)
        inputs, where = [read_image(f) for f in files], images
    else:
        inputs, where = synthetic_faces(count), f"{count} synthetic images (seed {SYNTHETIC_SEED})"
    c = cfg.classifier
    ref_model = c.model
    if c.backend == "onnxruntime":  # ONNX Runtime against the PyTorch model it was exported from
        from fer_stream.model.onnx_runtime import OnnxModel  # torch at its top

        ref_model = OnnxModel(c.model).source_model
    reference = make_classifier(cfg, model=ref_model, device="cpu", precision="fp32", backend="torch")
    candidate = make_classifier(cfg, device=device, precision=precision)
    pixels = torch.cat([torch.as_tensor(reference.preprocess(inputs[i : i + 64])) for i in range(0, len(inputs), 64)])
    report = {"model": c.model, "on": where, **compare(reference, candidate, pixels, min_cosine=min_cosine, min_top1=min_top1)}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        r, k = report["reference"], report["candidate"]
        verdict = "PASSED" if report["passed"] else "FAILED"
        backend = " (onnxruntime)" if c.backend == "onnxruntime" else ""
        images = counted(report["images"], "image")
        print(f"parity {verdict}: {k['device']} {k['precision']}{backend} against cpu fp32 on {images} ({where})")
        print(f"  mean cosine {report['mean_cosine']:.6f} (min {report['min_cosine']:.6f}; needs >= {min_cosine})")
        print(f"  top-1 agreement {report['top1_agreement']:.2%} (needs >= {min_top1:.0%})")
        print(f"  mean absolute error {report['mae']:.6f}")
        print(f"  throughput: cpu fp32 {r['faces_per_s']:.1f} faces/s, {k['device']} {k['precision']} {k['faces_per_s']:.1f} faces/s")
    return 0 if report["passed"] else 1
