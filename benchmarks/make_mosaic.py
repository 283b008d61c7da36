"""A 1080p (or any size) test video with a few faces: ../shared's three videos side by side.

    python benchmarks/make_mosaic.py OUT.mp4 [--size 1920x1080] [--frames 250]

The frame is split into a 2x2 grid; the first three cells hold ../shared's videos
(portrait_436x384, two_people_512, webcam_720p60_audio), each scaled to fit its cell, the fourth a
face-free grey. Frames are taken in step (frame i of each video; a shorter video holds its last
frame), encoded H.264 at 30 frames/s. For measuring the pipeline's speed on a large frame with
several faces of different sizes (``fer-stream --source OUT.mp4 --detector tiled`` against
``--detector short``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
VIDEOS = ("portrait_436x384.mp4", "two_people_512.mp4", "webcam_720p60_audio.mp4")


def _frames(path: Path, n: int, cell: tuple[int, int]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            rgb = frame.to_ndarray(format="rgb24")
            s = min(cell[0] / rgb.shape[1], cell[1] / rgb.shape[0])
            out.append(cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA))
            if len(out) == n:
                break
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--frames", type=int, default=250)
    p.add_argument("--shared", default=str(SHARED))
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cell = (width // 2, height // 2)
    clips = [_frames(Path(args.shared) / "media" / v, args.frames, cell) for v in VIDEOS]
    with av.open(args.out, "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(args.frames):
            canvas = np.full((height, width, 3), 110, np.uint8)
            for k, clip in enumerate(clips):
                img = clip[min(i, len(clip) - 1)]
                x0, y0 = (k % 2) * cell[0], (k // 2) * cell[1]
                h, w = img.shape[:2]
                canvas[y0 : y0 + h, x0 : x0 + w] = img
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    print(f"wrote {args.out}: {width}x{height}, {args.frames} frames, faces from {', '.join(VIDEOS)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
