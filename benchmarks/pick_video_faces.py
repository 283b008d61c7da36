"""Choose the faces of ../shared's videos that a person labels for ``bench_video.py``.

The rule is fixed before any model is run: in each video, ``--per-video`` frames evenly spread
(frame ``floor((i + 0.5) * n / k)`` for ``i = 0 .. k-1``, ``n`` the video's decoded frames), and in
each of them every usable face that fer-stream's own detector reports (the default settings'
detector for files, ``auto`` -> ``tiled``: BlazeFace full range on tiles and both BlazeFace models
on the whole frame, every box checked and followed by the face landmark model; exactly what
``fer-stream --source VIDEO`` classifies). No classifier is loaded.

    FER_STREAM_SHARED=../shared FER_STREAM_DETECTOR_MODEL=../shared/models/blaze_face_short_range.tflite \
    FER_STREAM_FULL_RANGE_MODEL=../shared/models/face_detection_full_range_sparse.tflite \
    FER_STREAM_LANDMARK_MODEL=../shared/models/face_landmark.tflite \
        python benchmarks/pick_video_faces.py --out /tmp/faces.jsonl --cuts /tmp/video-faces

writes one record per chosen face (video, frame, box, how chosen; no label) to ``--out`` and,
with ``--cuts``, each face with context as ``ID.png`` and montages of six (``montage-NN.png``)
for a person to look at. Never write the cuts into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

VIDEOS = ("webcam_720p60_audio.mp4", "two_people_512.mp4", "portrait_436x384.mp4")
TILE = 300  # px, a cut's side in the montages


def chosen_frames(n: int, k: int) -> list[int]:
    """``k`` frame indices evenly spread over ``n`` frames (the middle of each of ``k`` equal spans).

    >>> chosen_frames(10, 2), chosen_frames(437, 34)[:3]
    ([2, 7], [6, 19, 32])
    """
    return [int((i + 0.5) * n / k) for i in range(min(k, n))]


def detect_all(video: Path) -> tuple[list[list[dict]], tuple[int, int]]:
    """Every frame's faces (box, score, usable, reason) from the default detector, run over the
    whole video from its first frame (the detector follows faces, so its state is the pipeline's)."""
    from fer_stream.build import make_detector
    from fer_stream.config import load_config
    from fer_stream.io.sources import open_source

    cfg = load_config(None)
    frames: list[list[dict]] = []
    size = (0, 0)
    with make_detector(cfg) as det, open_source(str(video)) as source:
        det.reset()
        for frame in source.frames():
            size = (frame.width, frame.height)
            faces = det.detect(frame.image)
            frames.append(
                [
                    {
                        "box": f.box.as_list(),
                        "score": round(float(f.score), 4),
                        "usable": f.usable,
                        "reason": f.quality.reason if f.quality else None,
                    }
                    for f in faces
                ]
            )
    return frames, size


def cut(image: np.ndarray, box: list[int], context: float = 0.35) -> np.ndarray:
    """The face with ``context`` times its size around it on each side, clipped to the frame (RGB)."""
    x, y, w, h = box
    dx, dy = int(w * context), int(h * context)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(image.shape[1], x + w + dx), min(image.shape[0], y + h + dy)
    return image[y0:y1, x0:x1]


def tile(crop: np.ndarray, caption: str) -> np.ndarray:
    """A square tile of side TILE: the crop fitted in, caption on a strip underneath (BGR)."""
    s = TILE / max(crop.shape[:2])
    img = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))), interpolation=cv2.INTER_AREA)
    out = np.full((TILE + 24, TILE, 3), 255, np.uint8)
    out[: img.shape[0], : img.shape[1]] = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    cv2.putText(out, caption, (4, TILE + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def write_cuts(shared: Path, records: list[dict], folder: Path) -> None:
    """Each record's cut as ``ID.png`` and montages of six, 3 x 2, in ``folder``."""
    from fer_stream.io.sources import open_source

    folder.mkdir(parents=True, exist_ok=True)
    tiles: list[np.ndarray] = []
    for video in VIDEOS:
        wanted = [r for r in records if r["video"] == video]
        by_frame: dict[int, list[dict]] = {}
        for r in wanted:
            by_frame.setdefault(r["frame"], []).append(r)
        with open_source(str(shared / "media" / video)) as source:
            for frame in source.frames():
                for r in by_frame.get(frame.index, []):
                    crop = cut(frame.image, r["box"])
                    cv2.imwrite(str(folder / f"{r['id']:03d}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
                    tiles.append(tile(crop, f"#{r['id']} {video.split('_')[0]} f{r['frame']}"))
    for m in range(0, len(tiles), 6):
        group = tiles[m : m + 6] + [np.full_like(tiles[0], 255)] * (6 - len(tiles[m : m + 6]))
        rows = [np.hstack(group[i : i + 3]) for i in (0, 3)]
        cv2.imwrite(str(folder / f"montage-{m // 6:02d}.png"), np.vstack(rows))


def main() -> int:
    import os

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", default=os.environ.get("FER_STREAM_SHARED", "../shared"), help="the shared data folder")
    ap.add_argument("--per-video", type=int, default=34, help="frames chosen per video (default 34: about 100 faces)")
    ap.add_argument("--out", required=True, help="JSONL of the chosen faces (no labels)")
    ap.add_argument("--cuts", default=None, help="folder for the face cuts and montages (outside the repository)")
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    if out.exists():
        print(f"pick_video_faces: '{out}' exists; name a new file with --out", file=sys.stderr)
        return 2

    records: list[dict] = []
    skipped: dict[str, int] = {}
    for video in VIDEOS:
        frames, (width, height) = detect_all(shared / "media" / video)
        rule = f"frame floor((i+0.5)*{len(frames)}/{args.per_video}), i=0..{args.per_video - 1}; every usable face of the default detector"
        for index in chosen_frames(len(frames), args.per_video):
            for face in frames[index]:
                if not face["usable"]:
                    skipped[video] = skipped.get(video, 0) + 1
                    continue
                records.append(
                    {
                        "id": len(records),
                        "video": video,
                        "frame": index,
                        "frames": len(frames),
                        "size": [width, height],
                        "box": face["box"],
                        "chosen": rule,
                    }
                )
        chosen = sum(r["video"] == video for r in records)
        print(f"{video}: {len(frames)} frames, {chosen} faces chosen, {skipped.get(video, 0)} unusable skipped")
    with out.open("x") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    if args.cuts:
        write_cuts(shared, records, Path(args.cuts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
