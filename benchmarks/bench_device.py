"""The classifier alone on a device: faces/s per batch size, and agreement with the CPU.

    python benchmarks/bench_device.py --device cuda

Builds a full-size ViT-B/16 with random weights (or takes ``--model``), runs a fixed-seed set of
synthetic face-sized images through the CPU in fp32 and through ``--device``, and prints JSON with
mean cosine similarity, mean absolute error and top-1 agreement of the probabilities, and faces/s
at each batch size. No video or detector is needed, so it runs on a bare accelerator machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "npu":
        torch.npu.synchronize()  # type: ignore[attr-defined]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    from make_vit_b import build_vit_b

    from fer_stream import EmotionClassifier

    model = args.model or str(build_vit_b(Path(tempfile.mkdtemp(prefix="fer-bench-")) / "vit-b"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (160, 160, 3), dtype=np.uint8) for _ in range(args.images)]

    cpu = EmotionClassifier(model, "cpu", max_batch=8)
    dev = EmotionClassifier(model, args.device, max_batch=8, warmup=True)
    x = cpu.preprocess(images)
    ref = np.concatenate([cpu.forward(x[i : i + 8]) for i in range(0, len(images), 8)])
    got = np.concatenate([dev.forward(x[i : i + 8]) for i in range(0, len(images), 8)])
    cos = (ref * got).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))

    throughput = {}
    for b in (int(v) for v in args.batches.split(",")):
        xb = x[:b]
        dev.forward(xb)
        _sync(dev.device)
        start = time.perf_counter()
        for _ in range(args.repeats):
            dev.forward(xb)  # includes the copy to the device and the probabilities back
        _sync(dev.device)
        throughput[b] = round(b * args.repeats / (time.perf_counter() - start), 2)

    report = {
        "device": str(dev.device),
        "device_name": torch.cuda.get_device_name(dev.device) if dev.device.type == "cuda" else str(dev.device),
        "torch": torch.__version__,
        "images": len(images),
        "mean_cosine": float(cos.mean()),
        "mae": float(np.abs(ref - got).mean()),
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "faces_per_s_by_batch": throughput,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
