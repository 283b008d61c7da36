"""Before/after check of a refactor: the same command on two checkouts gives the same outputs.

Runs ``fer-stream --source VIDEO --model samples/models/fer2013-small`` with every file output
(annotated MP4, events, summary, report, timeline) on each video, once with the code of each
checkout (``PYTHONPATH`` pointing at it), and compares:

- annotated MP4s: every frame pixel-identical, same timestamps (PyAV decodes both);
- event logs: same records, equal in every field; probabilities within ``--prob-tol`` (which
  faces share a classifier batch depends on timing, and batch composition moves the last digit);
- timeline CSVs byte-identical; summaries: same keys in the same order, equal counts, labels and
  tracks (timings aside).

Speed: ``--speed N`` runs each checkout N more times, alternating, and reports the median fps.

    python benchmarks/same_outputs.py --before /work/before --after . \
        --video ../shared/media/webcam_720p60_audio.mp4 --video ../shared/media/portrait_436x384.mp4

Prints a JSON report; exits 1 if any output differs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np

TIMING_KEYS = {"elapsed_s", "fps", "faces_per_s", "latency_s", "mean_batch", "batches", "outputs", "source"}


def run(tree: Path, video: Path, out: Path, model: Path, extra: list[str]) -> None:
    """One fer-stream run with the code of ``tree`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    cmd = [sys.executable, "-m", "fer_stream", "--source", str(video), "--model", str(model), "-q"]
    cmd += ["--output", str(out / "a.mp4"), "--events", str(out / "e.jsonl"), "--summary", str(out / "s.json")]
    cmd += ["--report", str(out / "r.html"), "--timeline", str(out / "t.csv"), *extra]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)


def frames(path: Path) -> list[tuple[int | None, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]


def compare_events(a: Path, b: Path, tol: float) -> list[str]:
    ra = [json.loads(line) for line in a.read_text().splitlines()]
    rb = [json.loads(line) for line in b.read_text().splitlines()]
    if len(ra) != len(rb):
        return [f"events: {len(ra)} records against {len(rb)}"]
    problems = []
    for i, (x, y) in enumerate(zip(ra, rb)):
        if list(x) != list(y):
            problems.append(f"events[{i}]: keys {list(x)} against {list(y)}")
            continue
        for k in x:
            if k in {"probs", "confidence"}:
                vx = np.array(list(x[k].values()) if isinstance(x[k], dict) else x[k], dtype=float)
                vy = np.array(list(y[k].values()) if isinstance(y[k], dict) else y[k], dtype=float)
                if vx.shape != vy.shape or np.abs(vx - vy).max(initial=0) > tol:
                    problems.append(f"events[{i}].{k} differs by {np.abs(vx - vy).max(initial=0):.2g}")
            elif x[k] != y[k]:
                problems.append(f"events[{i}].{k}: {x[k]!r} against {y[k]!r}")
    return problems[:20]


def compare(a: Path, b: Path, tol: float) -> dict[str, Any]:
    problems: list[str] = []
    fa, fb = frames(a / "a.mp4"), frames(b / "a.mp4")
    if len(fa) != len(fb):
        problems.append(f"mp4: {len(fa)} frames against {len(fb)}")
    diff_frames = sum(1 for (pa, ia), (pb, ib) in zip(fa, fb) if pa != pb or not np.array_equal(ia, ib))
    if diff_frames:
        problems.append(f"mp4: {diff_frames} frames differ (pixels or pts)")
    problems += compare_events(a / "e.jsonl", b / "e.jsonl", tol)
    if (a / "t.csv").read_bytes() != (b / "t.csv").read_bytes():
        problems.append("timeline CSVs differ")
    sa, sb = json.loads((a / "s.json").read_text()), json.loads((b / "s.json").read_text())
    if list(sa) != list(sb):
        problems.append(f"summary keys: {list(sa)} against {list(sb)}")
    for k in sa:
        if k not in TIMING_KEYS and sa.get(k) != sb.get(k):
            problems.append(f"summary.{k}: {sa.get(k)!r} against {sb.get(k)!r}")
    events = len((a / "e.jsonl").read_text().splitlines())
    return {"frames": len(fa), "events": events, "summary_keys": len(sa), "problems": problems, "fps": (sa["fps"], sb["fps"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout with the old code")
    ap.add_argument("--after", type=Path, required=True, help="checkout with the new code")
    ap.add_argument("--video", type=Path, action="append", required=True)
    ap.add_argument("--model", type=Path, default=Path("samples/models/fer2013-small"))
    ap.add_argument("--prob-tol", type=float, default=1.5e-6, help="one unit of the events' last printed digit (1e-6), with float slack")
    ap.add_argument("--speed", type=int, default=0, help="extra alternating runs per checkout, for fps")
    ap.add_argument("--extra", default="", help="more fer-stream arguments, space-separated")
    args = ap.parse_args()
    extra = args.extra.split()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for video in args.video:
            base = Path(tmp) / video.stem
            run(args.before, video, base / "before", args.model, extra)
            run(args.after, video, base / "after", args.model, extra)
            result = compare(base / "before", base / "after", args.prob_tol)
            fps: dict[str, list[float]] = {"before": [result["fps"][0]], "after": [result["fps"][1]]}
            for i in range(args.speed):
                for name, tree in (("before", args.before), ("after", args.after)):
                    d = base / f"{name}-{i}"
                    run(tree, video, d, args.model, extra)
                    fps[name].append(json.loads((d / "s.json").read_text())["fps"])
            result["fps"] = {k: {"median": statistics.median(v), "runs": v} for k, v in fps.items()}
            report[video.name] = result
    print(json.dumps(report, indent=2))
    return 1 if any(r["problems"] for r in report.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
