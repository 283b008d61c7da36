"""Classifier throughput on this CPU: torch fp32 / int8 (dynamic) against ONNX Runtime fp32 / int8 (static).

    PYTHONPATH=$PWD python benchmarks/bench_classifier.py samples/models/fer2013-small [MORE_FOLDERS_OR.onnx ...] \\
        [--threads 1,2] [--batches 1,8] [--warmup 5] [--rounds 7] [--seconds 1.0] [--json OUT.json]

For each model folder, four runtimes: ``torch fp32`` and ``torch int8`` (today's ``--precision
int8``: dynamic quantization of the linear layers), through :class:`~fer_stream.EmotionClassifier`'s
``forward``; ``onnxruntime fp32`` (FOLDER/model.onnx, else exported into a temporary folder) and
``onnxruntime int8`` (FOLDER/model_int8.onnx, else ``fer-stream export --int8`` into a temporary
folder, calibrated on ``--calibration``). An ``.onnx`` file runs in ONNX Runtime alone, named by its
``fer_stream.precision`` metadata. Each runs at every ``--threads`` count (torch's intra-op threads,
ONNX Runtime's ``intra_op_num_threads``; with ``--pin``, the default, every thread of the process
pinned to the first N cores), every ``--batches`` size, plain and with flip test-time augmentation
(the batch and its mirror image in one call, twice the work, the two probabilities averaged: faces/s
counts the faces, not the images run).

What is timed: ``pixel_values`` (already preprocessed, real crops from ``--images``) -> probabilities
on the host. Per setting: ``--warmup`` calls, then ``--rounds`` rounds of at least ``--seconds`` each;
the median round's faces/s is reported, with the lowest and highest. Prints a markdown table, then
the JSON (also written to ``--json``), with the machine (CPU, its int8 instructions, load average
before and after: numbers from a busy machine are not comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_STREAM_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))

Forward = Callable[[np.ndarray], np.ndarray]  # pixel_values -> probabilities


def _cpu() -> dict[str, Any]:
    """The CPU's name, cores and the instructions ONNX Runtime's int8 kernels choose between."""
    name, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {"name": name, "cores": os.cpu_count(), "int8_isa": isa}


CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []  # what the process may use


def _set_affinity(cores: list[int]) -> None:
    """Every thread of this process onto ``cores`` (threads started later inherit it)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except OSError:  # a thread that ended meanwhile
            pass


def _pin(threads: int, pin: bool) -> list[int] | None:
    """The first ``threads`` cores, every thread pinned to them; ``None`` if not pinned."""
    if not pin or not CORES:
        return None
    _set_affinity(CORES[:threads])
    return CORES[:threads]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _torch(model: str, precision: str) -> Callable[[int], Forward]:
    """The transformers model in PyTorch (the torch backend itself, whatever files the folder also holds)."""
    import torch

    from fer_stream.model.classifier import TorchBackend

    backend = TorchBackend(model, torch.device("cpu"), precision, 64)

    def make(threads: int) -> Forward:
        torch.set_num_threads(threads)
        return lambda x: backend.probs(torch.from_numpy(x))

    return make


def _onnx(path: Path) -> Callable[[int], Forward]:
    import onnxruntime as ort

    def make(threads: int) -> Forward:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: _softmax(session.run(None, {name: x})[0])

    return make


def _flip(forward: Forward) -> Forward:
    """Flip test-time augmentation: the batch and its mirror image in one call, probabilities averaged."""

    def run(x: np.ndarray) -> np.ndarray:
        p = forward(np.concatenate([x, x[..., ::-1]]))
        return (p[: len(x)] + p[len(x) :]) / 2

    return run


def _measure(forward: Forward, x: np.ndarray, warmup: int, rounds: int, seconds: float) -> dict[str, float]:
    for _ in range(warmup):
        forward(x)
    rates = []
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            forward(x)
            calls += 1
            took = time.perf_counter() - start
            if took >= seconds:
                break
        rates.append(calls * len(x) / took)
    return {"median": round(statistics.median(rates), 1), "min": round(min(rates), 1), "max": round(max(rates), 1)}


def _precision(path: Path) -> str:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return meta.get("fer_stream.precision", "fp32")


def _runtimes(item: str, calibration: str, work: Path) -> tuple[dict[str, Callable[[int], Forward]], Any, dict[str, Any]]:
    """The runtimes of a model folder or an .onnx file, its image processor, and what was run (files, sizes)."""
    from fer_stream.model.export import export_onnx
    from fer_stream.model.onnx_runtime import OnnxModel

    p = Path(item)
    if p.suffix.lower() == ".onnx":
        info = {"onnxruntime " + _precision(p): {"file": str(p), "mb": round(p.stat().st_size / 1e6, 1)}}
        return {k: _onnx(p) for k in info}, OnnxModel(p).processor, info
    files = {"fp32": p / "model.onnx", "int8": p / "model_int8.onnx"}
    for precision, f in files.items():
        if f.is_file():
            continue
        out = work / f"{p.name}-{precision}.onnx"
        plan = None
        if precision == "int8":
            from fer_stream.commands.export import calibration_images
            from fer_stream.model.quantize import split_images

            images, classes = calibration_images(calibration)
            plan = split_images(images, classes, source=calibration)
        print(f"{p}: no {f.name}; exporting {precision} to {out}", file=sys.stderr)
        export_onnx(str(p), out, int8=plan)
        files[precision] = out
    run: dict[str, Callable[[int], Forward]] = {"torch fp32": _torch(str(p), "fp32"), "torch int8": _torch(str(p), "int8")}
    info: dict[str, Any] = {"torch fp32": {"file": str(p)}, "torch int8": {"file": str(p), "note": "dynamic, linear layers only"}}
    for precision, f in files.items():
        run[f"onnxruntime {precision}"] = _onnx(f)
        info[f"onnxruntime {precision}"] = {"file": str(f), "mb": round(f.stat().st_size / 1e6, 1)}
    return run, OnnxModel(files["fp32"]).processor, info


def _crops(folder: str, n: int) -> list[np.ndarray]:
    from fer_stream.io.images import find_images, read_image, synthetic_faces

    if Path(folder).is_dir():
        files = find_images(folder)
        return [read_image(files[i * len(files) // n]) for i in range(n)]
    print(f"no image folder {folder}: synthetic images", file=sys.stderr)
    return synthetic_faces(n, size=96)


def _table(rows: list[dict[str, Any]], batches: list[int]) -> str:
    cols = [f"batch {b}" for b in batches] + [f"batch {b} flip" for b in batches]
    lines = [
        "| model | runtime | threads | " + " | ".join(cols) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    for r in rows:
        cells = [str(r["faces_per_s"][c]["median"]) for c in cols]
        lines.append(f"| {r['model']} | {r['runtime']} | {r['threads']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders and/or .onnx files")
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--batches", default="1,8", help="batch sizes, in faces (default 1,8)")
    ap.add_argument("--warmup", type=int, default=5, help="calls before timing (default 5)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds; the median is reported (default 7)")
    ap.add_argument("--seconds", type=float, default=1.0, help="least length of a round (default 1.0)")
    ap.add_argument("--images", default=str(SHARED / "expressions"), help="face crops to run (default ../shared/expressions)")
    ap.add_argument(
        "--calibration", default=str(SHARED / "expressions"), help="int8 calibration crops when a folder has no model_int8.onnx"
    )
    ap.add_argument("--runtimes", default="", help="only these runtimes, comma-separated (e.g. 'onnxruntime int8,torch fp32')")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="leave threads free to move between cores")
    ap.add_argument("--json", metavar="OUT.json", help="also write the JSON here")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    only = {r.strip() for r in args.runtimes.split(",") if r.strip()}

    import onnxruntime
    import torch

    from fer_stream.model.head import ClassifierHead

    crops = _crops(args.images, max(batches))
    report: dict[str, Any] = {
        "cpu": _cpu(),
        "load_before": os.getloadavg(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "settings": {k: v for k, v in vars(args).items() if k != "models"},
        "runs": [],
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="fer-bench-classifier-") as tmp:
        for item in args.models:
            runtimes, processor, info = _runtimes(item, args.calibration, Path(tmp))
            report["models"][item] = info
            x_all = ClassifierHead(processor, (), 0.0).preprocess(crops).numpy()
            for name, make in runtimes.items():
                if only and name not in only:
                    continue
                for t in threads:
                    cores = _pin(t, args.pin)
                    forward = make(t)
                    rates = {}
                    for b in batches:
                        x = np.ascontiguousarray(x_all[:b])
                        rates[f"batch {b}"] = _measure(forward, x, args.warmup, args.rounds, args.seconds)
                        rates[f"batch {b} flip"] = _measure(_flip(forward), x, args.warmup, args.rounds, args.seconds)
                    if cores is not None:
                        _set_affinity(CORES)
                    row = {"model": Path(item).name, "runtime": name, "threads": t, "cores": cores, "faces_per_s": rates}
                    report["runs"].append(row)
                    done = ", ".join(f"{k} {v['median']}" for k, v in rates.items())
                    print(f"{row['model']} {name} threads {t}: {done}", file=sys.stderr)
    report["load_after"] = os.getloadavg()
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text + "\n")
    print(_table(report["runs"], batches))
    print()
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
