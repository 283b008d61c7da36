"""``fer-stream batch`` against one ``fer-stream`` process per video, on N short clips.

Makes N clips of S seconds (30 fps, H.264) from the given videos, cycling through them and
looping each from a different start, then times
  (a) one ``fer-stream --source CLIP --output --events --summary --report`` run per clip, in turn;
  (b) one ``fer-stream batch CLIPS/ --out DIR --jobs J`` with the same settings,
and prints wall time, faces classified per second and the speed-up, as a table and JSON.

    python benchmarks/make_vit_b.py --out /tmp/vit-b --probe-on ../shared/expressions
    python benchmarks/bench_batch.py --video ../shared/media/two_people_512.mp4 \\
        --video ../shared/media/portrait_436x384.mp4 --clips 20 --seconds 10 -- --model /tmp/vit-b --precision int8
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path


def make_clips(videos: list[Path], folder: Path, clips: int, seconds: float, fps: int = 30) -> list[Path]:
    """``clips`` clips of ``seconds`` s at ``fps``, each looping its video from a different start."""
    import av

    frames_of = {}
    for v in videos:
        with av.open(str(v)) as c:
            stream = c.streams.video[0]
            step = max(1, round(float(stream.average_rate or fps) / fps))  # 60 fps sources: every other frame
            frames_of[v] = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(stream)) if i % step == 0]
    out = []
    n = int(seconds * fps)
    for i in range(clips):
        video = videos[i % len(videos)]
        frames = frames_of[video]
        start = (i // len(videos)) * 7 % len(frames)
        path = folder / f"clip{i:02d}_{video.stem}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.height, s.width = frames[0].shape[:2]
            s.pix_fmt = "yuv420p"
            s.time_base = Fraction(1, fps)
            for k in range(n):
                frame = av.VideoFrame.from_ndarray(frames[(start + k) % len(frames)], format="rgb24")
                frame.pts = k
                c.mux(s.encode(frame))
            c.mux(s.encode(None))
        out.append(path)
    return out


def faces_of(summaries: list[Path]) -> tuple[int, int]:
    faces = classified = 0
    for p in summaries:
        s = json.loads(p.read_text())
        faces += s["faces"]
        classified += s["classified"]
    return faces, classified


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", action="append", required=True, type=Path)
    p.add_argument("--clips", type=int, default=20)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--jobs", type=int, default=2, help="batch --jobs")
    p.add_argument("--work", type=Path, help="folder for clips and outputs (default: a temporary one)")
    p.add_argument("--skip-separate", action="store_true", help="time only the batch")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="after --: settings for both, e.g. --model M --precision int8")
    a = p.parse_args()
    flags = [f for f in a.flags if f != "--"]
    work = a.work or Path(tempfile.mkdtemp(prefix="fer-batch-bench-"))
    clips_dir = work / "clips"
    shutil.rmtree(work / "separate", ignore_errors=True)
    shutil.rmtree(work / "batch", ignore_errors=True)
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips = sorted(clips_dir.glob("*.mp4"))
    if len(clips) != a.clips:
        for c in clips:
            c.unlink()
        t = time.monotonic()
        clips = make_clips(a.video, clips_dir, a.clips, a.seconds)
        print(f"made {len(clips)} clips of {a.seconds:g} s in {time.monotonic() - t:.0f} s", file=sys.stderr)
    results = {}
    if not a.skip_separate:
        sep = work / "separate"
        sep.mkdir()
        t = time.monotonic()
        for c in clips:
            d = sep / c.stem
            d.mkdir()
            subprocess.run(
                [
                    "fer-stream",
                    "--source",
                    str(c),
                    "--output",
                    str(d / "annotated.mp4"),
                    "--events",
                    str(d / "events.jsonl"),
                    "--summary",
                    str(d / "summary.json"),
                    "--report",
                    str(d / "report.html"),
                    "--timeline",
                    str(d / "timeline.csv"),
                    "-q",
                    *flags,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        wall = time.monotonic() - t
        faces, classified = faces_of(sorted(sep.glob("*/summary.json")))
        results["separate"] = {
            "wall_s": round(wall, 1),
            "faces": faces,
            "classified": classified,
            "classified_per_s": round(classified / wall, 2),
        }
    t = time.monotonic()
    subprocess.run(
        ["fer-stream", "batch", str(clips_dir), "--out", str(work / "batch"), "--jobs", str(a.jobs), "-q", *flags],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.monotonic() - t
    faces, classified = faces_of(sorted((work / "batch").glob("*/summary.json")))
    results["batch"] = {
        "wall_s": round(wall, 1),
        "faces": faces,
        "classified": classified,
        "classified_per_s": round(classified / wall, 2),
        "jobs": a.jobs,
    }
    if "separate" in results:
        results["speedup"] = round(results["separate"]["wall_s"] / results["batch"]["wall_s"], 2)
    results.update(clips=len(clips), seconds=a.seconds, flags=flags)
    print(json.dumps(results, indent=2))
    for name in ("separate", "batch"):
        if name in results:
            r = results[name]
            print(
                f"{name:9} {r['wall_s']:8.1f} s  {r['faces']:6d} faces  {r['classified']:6d} classified  "
                f"{r['classified_per_s']:7.2f} classified/s",
                file=sys.stderr,
            )
    if "speedup" in results:
        print(f"speed-up {results['speedup']:.2f}x", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
