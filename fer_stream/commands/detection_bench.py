"""``fer-stream bench --detection``: recall and precision of each detector by face size.

Frames with known face boxes are built from real videos: frames whose face the short-range
model finds at full size (the reference box) are cut out head-and-shoulders, shrunk so that the
face is 16 to 300 px tall, and placed at known, non-overlapping positions on 720p and 1080p
canvases. The canvases' background is a mosaic of face-free pieces of the same videos (real
walls, clothes and light, not a flat colour that nothing could mistake for a face). Each
detector kind then runs on every canvas; a detection matches a placed face when their boxes
overlap by IoU >= 0.4 (the short- and full-range models draw a face's box a little differently).
A detection that matches none is a false positive when it lies on no placed face, and *mislocated*
when it covers one with a box too far off (the tiniest faces' boxes): the two are counted apart.

>>> report = detection_benchmark(["talk.mp4"], kinds=["short", "tiled"], make=make)   # doctest: +SKIP
>>> report["kinds"]["tiled"]["1080p"]["recall_ge_40px"]                               # doctest: +SKIP
0.95
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fer_stream.build import make_detector
from fer_stream.config import Config
from fer_stream.errors import SourceError, counted
from fer_stream.io.sources import AVSource
from fer_stream.model.blazeface import ios_matrix, iou_matrix

SIZES = (16, 20, 24, 32, 40, 48, 64, 80, 100, 128, 160, 200, 250, 300)
BUCKETS = ((16, 24), (24, 32), (32, 40), (40, 56), (56, 80), (80, 120), (120, 200), (200, 301))
CANVASES = {"720p": (1280, 720), "1080p": (1920, 1080)}
MATCH_IOU = 0.4


@dataclass(frozen=True)
class Scene:
    """A canvas and the faces placed on it, as ``x0, y0, x1, y1`` boxes."""

    image: np.ndarray
    boxes: np.ndarray
    resolution: str


@dataclass(frozen=True)
class _Head:
    patch: np.ndarray  # head and shoulders, RGB
    box: tuple[float, float, float, float]  # the face inside it, x0 y0 x1 y1


def _heads_and_backgrounds(
    videos: Sequence[str], detector: Any, per_video: int, rng: random.Random
) -> tuple[list[_Head], list[np.ndarray]]:
    """Head-and-shoulder patches with their face boxes, and face-free background pieces."""
    heads, backgrounds = [], []
    for path in videos:
        with AVSource(path) as src:
            frames = [f.image for f in src.frames()]
        for image in [frames[i] for i in np.linspace(0, len(frames) - 1, per_video).round().astype(int)]:
            faces = detector.detect(image)
            h, w = image.shape[:2]
            if len(faces) == 1 and faces[0].score >= 0.8:
                b = faces[0].box
                mx, my = round(b.w * 0.6), round(b.h * 0.6)
                x0, y0 = max(0, b.x - mx), max(0, b.y - my)
                x1, y1 = min(w, b.x + b.w + mx), min(h, b.y + b.h + round(b.h * 0.9))
                heads.append(_Head(image[y0:y1, x0:x1].copy(), (b.x - x0, b.y - y0, b.x + b.w - x0, b.y + b.h - y0)))
            # Background pieces: squares that stay clear of every face (grown by half its size).
            grown = [f.box.expand(0.5) for f in faces]
            for _ in range(8):
                side = rng.randint(min(h, w) // 5, min(h, w) // 3)
                x, y = rng.randint(0, w - side), rng.randint(0, h - side)
                if all(x + side <= g.x or g.x + g.w <= x or y + side <= g.y or g.y + g.h <= y for g in grown):
                    backgrounds.append(image[y : y + side, x : x + side].copy())
    return heads, backgrounds


def _background(size: tuple[int, int], pieces: list[np.ndarray], rng: random.Random) -> np.ndarray:
    width, height = size
    canvas = np.zeros((height, width, 3), np.uint8)
    cell = 160
    for y in range(0, height, cell):
        for x in range(0, width, cell):
            piece = cv2.resize(pieces[rng.randrange(len(pieces))], (cell, cell), interpolation=cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            canvas[y : y + cell, x : x + cell] = piece[: height - y, : width - x]
    return canvas


def make_scenes(
    heads: list[_Head],
    backgrounds: list[np.ndarray],
    *,
    sizes: Sequence[int] = SIZES,
    canvases_per_size: int = 3,
    faces_per_canvas: int = 6,
    seed: int = 0,
) -> list[Scene]:
    """Canvases at 720p and 1080p with up to ``faces_per_canvas`` faces of each height in ``sizes``."""
    rng = random.Random(seed)
    scenes = []
    for resolution, (width, height) in CANVASES.items():
        for face_h in sizes:
            for _ in range(canvases_per_size):
                canvas = _background((width, height), backgrounds, rng)
                placed: list[tuple[int, int, int, int]] = []
                boxes: list[list[float]] = []
                for _ in range(faces_per_canvas * 20):
                    if len(boxes) >= faces_per_canvas:
                        break
                    head = heads[rng.randrange(len(heads))]
                    scale = face_h / (head.box[3] - head.box[1])
                    ph, pw = round(head.patch.shape[0] * scale), round(head.patch.shape[1] * scale)
                    if pw >= width or ph >= height or pw < 4 or ph < 4:
                        continue
                    x, y = rng.randint(0, width - pw), rng.randint(0, height - ph)
                    if any(x < px + qw and px < x + pw and y < py + qh and py < y + ph for px, py, qw, qh in placed):
                        continue
                    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                    canvas[y : y + ph, x : x + pw] = cv2.resize(head.patch, (pw, ph), interpolation=interp)
                    placed.append((x, y, pw, ph))
                    boxes.append([x + head.box[0] * scale, y + head.box[1] * scale, x + head.box[2] * scale, y + head.box[3] * scale])
                scenes.append(Scene(canvas, np.asarray(boxes, np.float32).reshape(-1, 4), resolution))
    return scenes


def _match(truth: np.ndarray, found: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Which true boxes were found (one detection each, best overlap first); of the unmatched
    detections, how many lie on no face at all (false alarms) and how many sit on a face with a box
    too far off to match (mislocated: mostly the smallest faces, whose boxes are a few pixels wide)."""
    hit = np.zeros(len(truth), bool)
    if len(found) == 0:
        return hit, 0, 0
    if len(truth) == 0:
        return hit, len(found), 0
    iou = iou_matrix(truth, found)
    used = np.zeros(len(found), bool)
    for t, d in sorted(((t, d) for t in range(len(truth)) for d in range(len(found)) if iou[t, d] >= MATCH_IOU), key=lambda td: -iou[td]):
        if not hit[t] and not used[d]:
            hit[t] = used[d] = True
    on_face = (ios_matrix(truth, found) >= 0.5).any(axis=0)
    return hit, int((~used & ~on_face).sum()), int((~used & on_face).sum())


def evaluate_kind(detector: Any, scenes: list[Scene]) -> dict[str, Any]:
    """Recall by face-height bucket, false positives per 100 frames and frames/s, per resolution."""
    out: dict[str, Any] = {}
    for resolution in CANVASES:
        mine = [s for s in scenes if s.resolution == resolution]
        heights, hits, false_pos, mislocated, seconds = [], [], 0, 0, 0.0
        detector.detect(mine[0].image)  # warm-up
        for s in mine:
            started = time.perf_counter()
            faces = detector.detect(s.image)
            seconds += time.perf_counter() - started
            found = np.asarray([[f.box.x, f.box.y, f.box.x + f.box.w, f.box.y + f.box.h] for f in faces], np.float32).reshape(-1, 4)
            hit, fp, off = _match(s.boxes, found)
            heights += (s.boxes[:, 3] - s.boxes[:, 1]).tolist()
            hits += hit.tolist()
            false_pos += fp
            mislocated += off
        h, k = np.asarray(heights), np.asarray(hits)

        def recall(lo: float, hi: float = 1e9) -> float | None:
            sel = (h >= lo) & (h < hi)
            return round(float(k[sel].mean()), 4) if sel.any() else None

        out[resolution] = {
            "frames": len(mine),
            "faces": len(h),
            "recall_by_height": {f"{lo}-{hi - 1}px": recall(lo, hi) for lo, hi in BUCKETS},
            "faces_by_height": {f"{lo}-{hi - 1}px": int(((h >= lo) & (h < hi)).sum()) for lo, hi in BUCKETS},
            "recall_ge_40px": recall(40),
            "recall_ge_80px": recall(80),
            "recall_all": recall(0),
            "false_positives": false_pos,
            "false_positives_per_100_frames": round(100 * false_pos / len(mine), 2),
            "mislocated": mislocated,
            "fps": round(len(mine) / max(seconds, 1e-9), 1),
        }
    return out


def detection_benchmark(
    videos: Sequence[str],
    *,
    kinds: Sequence[str],
    make: Callable[[str], Any],
    per_video: int = 12,
    canvases_per_size: int = 3,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Build the scenes from ``videos`` and evaluate each detector ``make(kind)`` on them."""
    rng = random.Random(seed)
    with make("short") as reference:
        heads, backgrounds = _heads_and_backgrounds(videos, reference, per_video, rng)
    if not heads or not backgrounds:
        raise SourceError("the detection benchmark needs videos in which the short-range model finds one clear face")
    scenes = make_scenes(heads, backgrounds, canvases_per_size=canvases_per_size, seed=seed)
    log(
        f"{counted(len(scenes), 'frame')} with {counted(sum(len(s.boxes) for s in scenes), 'face')} of {SIZES[0]}-{SIZES[-1]} px "
        f"from {counted(len(heads), 'reference face')}"
    )
    report: dict[str, Any] = {"videos": list(videos), "match_iou": MATCH_IOU, "sizes": list(SIZES), "kinds": {}}
    for kind in kinds:
        log(f"detector {kind}")
        with make(kind) as det:
            report["kinds"][kind] = evaluate_kind(det, scenes)
    return report


def format_report(report: dict[str, Any]) -> str:
    """The figures as a table per resolution: recall by height bucket, false positives, frames/s."""
    lines = []
    buckets = [f"{lo}-{hi - 1}px" for lo, hi in BUCKETS]
    for resolution in CANVASES:
        lines.append(f"{resolution}: recall by face height (IoU >= {report['match_iou']})")
        lines.append(f"  {'kind':<6} " + " ".join(f"{b:>9}" for b in buckets) + "   >=40px >=80px  FP/100fr  mislocated  frames/s")
        for kind, r in report["kinds"].items():
            x = r[resolution]
            cells = " ".join(f"{v:>9.2f}" if v is not None else f"{'-':>9}" for v in x["recall_by_height"].values())
            lines.append(
                f"  {kind:<6} {cells}   {x['recall_ge_40px']:>6.3f} {x['recall_ge_80px']:>6.3f}  "
                f"{x['false_positives_per_100_frames']:>8.2f}  {x['mislocated']:>10}  {x['fps']:>8.1f}"
            )
    return "\n".join(lines)


def run_detection_bench(cfg: Config, videos: Sequence[str], *, kinds: Sequence[str], canvases: int, as_json: bool) -> int:
    """The ``bench --detection`` command."""
    for v in videos:
        AVSource(v).close()  # a missing or broken video is one clear error before any work
    report = detection_benchmark(
        videos,
        kinds=kinds,
        make=lambda kind: make_detector(cfg, kind=kind),
        canvases_per_size=canvases,
        log=lambda m: print(m, file=sys.stderr),
    )
    report["settings"] = {
        "min_confidence": cfg.detector.min_confidence,
        "full_min_confidence": cfg.detector.full_min_confidence,
        "tile_size": cfg.detector.tile_size,
        "tile_overlap": cfg.detector.tile_overlap,
    }
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    return 0
