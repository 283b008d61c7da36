"""A bare LiteRT invoke of each MediaPipe model, 1 and 2 threads: median milliseconds.

    python benchmarks/bench_litert_invoke.py [--models ../shared/models]

Run it with another ai-edge-litert on the path (``pip install --target DIR ai-edge-litert==X``,
then ``PYTHONPATH=DIR``) to compare releases on one machine. 10 warm-up invokes, then the median of 50.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

MODELS = (("face_detection_full_range_sparse.tflite", 192), ("blaze_face_short_range.tflite", 128), ("face_landmark.tflite", 192))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=str(Path(__file__).resolve().parents[2] / "shared" / "models"))
    args = p.parse_args()
    for name, size in MODELS:
        for threads in (1, 2):
            it = Interpreter(model_path=str(Path(args.models) / name), num_threads=threads)
            it.allocate_tensors()
            index = it.get_input_details()[0]["index"]
            x = np.random.default_rng(0).random((1, size, size, 3), np.float32)
            times = []
            for _ in range(60):
                t = time.perf_counter()
                it.set_tensor(index, x)
                it.invoke()
                times.append(time.perf_counter() - t)
            print(f"{name} threads={threads}: {statistics.median(times[10:]) * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
