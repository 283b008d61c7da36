"""The face landmark model alone: milliseconds per face with 1 and 2 LiteRT threads.

    python benchmarks/bench_landmarks.py [--model ../shared/models/face_landmark.tflite] [--image ../shared/faces/one_face_large.png]

Finds the face with the full-range BlazeFace, then times, per thread count: the bare invoke on
one crop (batch 1), the invoke on two crops at once (batch 2, per face), and the whole
:meth:`FaceLandmarker.run` of one face (crop with warpAffine, invoke, decode). Prints JSON:
median milliseconds per face over ``--repeats`` runs, after ``--warmup`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_stream.frames import Box
from fer_stream.io.images import read_image
from fer_stream.model.blazeface import FULL_RANGE, BlazeFace
from fer_stream.model.detector_files import resolve_detector_model, resolve_landmark_model
from fer_stream.model.landmarks import FaceLandmarker, crop_tensor, roi_from_box

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int, per: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000 / per)
    return round(statistics.median(times), 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="face_landmark.tflite (default: $FER_STREAM_LANDMARK_MODEL or the cache)")
    ap.add_argument("--detector", default=None, help="face_detection_full_range_sparse.tflite (default: as the CLI finds it)")
    ap.add_argument("--image", default=str(SHARED / "faces" / "one_face_large.png"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    rgb = read_image(Path(args.image))
    with BlazeFace(resolve_detector_model(args.detector, kind="full"), FULL_RANGE) as bf:
        boxes, keypoints, _ = bf.detect_keypoints([rgb])[0]
    x0, y0, x1, y1 = boxes[0]
    roi = roi_from_box(Box(round(x0), round(y0), round(x1 - x0), round(y1 - y0)), (keypoints[0][0], keypoints[0][1]))
    one = crop_tensor(rgb, roi.matrix())[None]
    two = np.concatenate([one, one])
    model = resolve_landmark_model(args.model)
    out: dict[str, object] = {"model": str(model), "image": args.image, "repeats": args.repeats}
    for threads in (int(t) for t in args.threads.split(",")):
        with FaceLandmarker(model, threads=threads) as lm:
            # Each figure with its batch size fixed, so LiteRT does not re-plan its tensors inside the timing.
            invoke1 = _median_ms(lambda: lm._invoke(one), args.repeats, args.warmup)
            run1 = _median_ms(lambda: lm.run(rgb, [roi]), args.repeats, args.warmup)
            invoke2 = _median_ms(lambda: lm._invoke(two), args.repeats, args.warmup, per=2)
            presence = lm.run(rgb, [roi])[0].presence
        out[f"threads_{threads}"] = {
            "invoke_ms_per_face_batch1": invoke1,
            "invoke_ms_per_face_batch2": invoke2,
            "run_ms_one_face": run1,
            "presence": round(presence, 4),
        }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
