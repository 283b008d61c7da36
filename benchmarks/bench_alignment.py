"""Aligned against unaligned classifier crops, and the landmarks' head pose: what ``detector.align`` is worth.

    PYTHONPATH=$PWD python benchmarks/bench_alignment.py [--limit 1000] [--seed 0] [--roi both] [--videos ../shared/media/*.mp4]

Prints JSON with three parts (``--skip heldout,videos,pose`` leaves parts out):

- ``heldout``: the shipped model (``samples/models/fer2013-small``) on its held-out FER2013 crops
  (``heldout.txt``; ``--limit`` takes a seeded sample), each rolled by ``--angles`` degrees (the
  :class:`~fer_stream.frames.Pose` convention: positive rolls make the eye line fall to the image's
  right). A 48x48 crop is upscaled to 192 px, padded into a 480x480 canvas (replicated edges, or
  ``--pad grey``) and the canvas turned about the face's centre. A stand-in detector returns the
  face's known box, which :class:`~fer_stream.model.mesh.MeshDetector` (``follow=False``) verifies
  and crops with ``align`` true and false; the landmark model's crop is cut from that box at angle
  0 (``roi: zero``, a detector without keypoints) or turned by the true roll (``roi: true``, what
  BlazeFace's eye keypoints or a followed face's landmarks give). Per angle: the share of crops
  whose landmarks were found (presence >= 0.5), the accuracy of aligned and unaligned crops on
  those, how many each got right that the other got wrong, the median roll the landmarks measured,
  and ``box``: the accuracy of the known box cut along the frame's axes (no landmarks; at angle 0
  that is the crop itself, upscaled).
- ``videos``: each video through two detectors built by ``make_detector`` with ``detector.align``
  true and false (the default detector otherwise: tiled, landmark tracking), the same frames; the
  faces are paired by box (both follow the same landmarks) and each crop classified by the shipped
  model: the share of faces given the same label (all faces, usable ones, and by the face's roll),
  and the head pose's distribution (median, p5, p95 of yaw, pitch, roll; shares past 30/45/60
  degrees of yaw).
- ``pose``: :func:`~fer_stream.model.landmarks.head_pose` on the real landmarks of a frontal face
  (``../shared/faces/one_face_large.png``) turned in 3-D about the head's vertical axis by a known
  yaw (also combined with a roll and a pitch): the yaw it measures against the true one.

Accuracy figures only: the machine's speed is not measured.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_stream.build import make_detector
from fer_stream.config import load_config
from fer_stream.frames import Box, Face, Pose
from fer_stream.io.images import read_image
from fer_stream.io.sources import AVSource
from fer_stream.model.blazeface import FULL_RANGE, BlazeFace
from fer_stream.model.classifier import EmotionClassifier
from fer_stream.model.detector import crop
from fer_stream.model.detector_files import resolve_detector_model, resolve_landmark_model
from fer_stream.model.landmarks import FaceLandmarker, head_axes, head_pose, roi_from_box
from fer_stream.model.mesh import MeshDetector

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = ROOT / "samples" / "models" / "fer2013-small"
FACE_PX = 192  # a held-out crop's side once upscaled (the landmark model's input size)
CANVAS = 480  # the canvas it is padded into: room for the landmark crop (1.5x) turned by 30 degrees


class KnownFace:
    """A stand-in detector that finds one face where it is known to be (:attr:`face`)."""

    kind = "known"
    rejected: tuple[Box, ...] = ()

    def __init__(self) -> None:
        self.face: Face | None = None

    def detect(self, image: np.ndarray) -> list[Face]:
        return [] if self.face is None else [self.face]

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> KnownFace:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def rolled_canvas(grey: np.ndarray, roll: float, pad: str) -> np.ndarray:
    """The 48x48 ``grey`` crop upscaled, padded into the canvas and turned by ``roll`` degrees
    about its centre (positive: clockwise on screen, the eye line falling to the right); RGB."""
    face = cv2.resize(grey, (FACE_PX, FACE_PX), interpolation=cv2.INTER_CUBIC)
    side = (CANVAS - FACE_PX) // 2
    border = cv2.BORDER_REPLICATE if pad == "replicate" else cv2.BORDER_CONSTANT
    canvas = cv2.copyMakeBorder(face, side, side, side, side, border, value=128)
    centre = ((CANVAS - 1) / 2, (CANVAS - 1) / 2)
    turn = cv2.getRotationMatrix2D(centre, -roll, 1.0)  # OpenCV's positive angle is anticlockwise
    turned = cv2.warpAffine(canvas, turn, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=128)
    return np.ascontiguousarray(np.repeat(turned[:, :, None], 3, axis=2))


def known_face(roll: float, roi: str) -> Face:
    """The face's box in the canvas (the upscaled crop's square; turning about its centre keeps the
    centre), with eye keypoints along the true roll for ``roi == "true"``, none for ``"zero"``."""
    box = Box((CANVAS - FACE_PX) // 2, (CANVAS - FACE_PX) // 2, FACE_PX, FACE_PX)
    keypoints = None
    if roi == "true":
        c = np.array([box.x + box.w / 2, box.y + box.h / 2])
        d = FACE_PX / 4 * np.array([math.cos(math.radians(roll)), math.sin(math.radians(roll))])
        keypoints = np.array([c - d, c + d, c, c, c, c], np.float32)  # only the eyes (0, 1) set the crop's angle
    return Face(box=box, score=1.0, keypoints=keypoints)


def heldout_sample(limit: int, seed: int) -> list[tuple[Path, str]]:
    root = SHARED / "datasets" / "fer2013-train"
    lines = [line.strip() for line in (MODEL / "heldout.txt").read_text().splitlines() if line.strip()]
    if limit and limit < len(lines):
        lines = sorted(random.Random(seed).sample(lines, limit))
    return [(root / line, line.split("/")[0]) for line in lines]


def _pose(face: Face) -> Pose:
    """A face's head pose (MeshDetector gives every face one)."""
    assert face.quality is not None and face.quality.pose is not None
    return face.quality.pose


def _crop(face: Face) -> np.ndarray:
    assert face.crop is not None
    return face.crop


def _labels(clf: EmotionClassifier, crops: Sequence[np.ndarray]) -> list[str]:
    return [p.label for p in clf.predict(list(crops))] if crops else []


def heldout(clf: EmotionClassifier, landmarker: FaceLandmarker, args: argparse.Namespace) -> dict[str, Any]:
    sample = heldout_sample(args.limit, args.seed)
    angles = [float(a) for a in args.angles.split(",")]
    rois = ["zero", "true"] if args.roi == "both" else [args.roi]
    base = KnownFace()
    aligned = MeshDetector(base, landmarker, follow=False, align=True, margin=args.margin)
    unaligned = MeshDetector(base, landmarker, follow=False, align=False, margin=args.margin)
    out: dict[str, Any] = {
        "crops": len(sample),
        "of_heldout": sum(1 for line in (MODEL / "heldout.txt").read_text().splitlines() if line.strip()),
        "seed": args.seed,
        "pad": args.pad,
        "margin": args.margin,
        "angles": {},
    }
    greys = [read_image(path)[:, :, 0] for path, _ in sample]  # grey JPEGs come back as equal R, G, B
    truth = [label for _, label in sample]
    for angle in angles:
        canvases = [rolled_canvas(g, angle, args.pad) for g in greys]
        box = known_face(angle, "zero").box
        box_labels = _labels(clf, [crop(c, box) for c in canvases])
        row: dict[str, Any] = {"box_accuracy": round(float(np.mean([p == t for p, t in zip(box_labels, truth)])), 4)}
        for roi in rois:
            base.face = known_face(angle, roi)
            found, crops_a, crops_u, rolls, yaws = [], [], [], [], []
            for c in canvases:
                fa, fu = aligned.detect(c), unaligned.detect(c)
                assert len(fa) == len(fu) <= 1  # the same landmarks: found by both or neither
                found.append(bool(fa))
                if fa:
                    crops_a.append(_crop(fa[0]))
                    crops_u.append(_crop(fu[0]))
                    rolls.append(_pose(fa[0]).roll)
                    yaws.append(abs(_pose(fa[0]).yaw))
            la, lu = iter(_labels(clf, crops_a)), iter(_labels(clf, crops_u))
            right_a, right_u, right_box = [], [], []
            for t, f, b in zip(truth, found, box_labels):
                if f:
                    right_a.append(next(la) == t)
                    right_u.append(next(lu) == t)
                    right_box.append(b == t)
            a, u = np.array(right_a, bool), np.array(right_u, bool)
            n = int(a.size)
            row[f"roi_{roi}"] = {
                "found": round(n / len(sample), 4),
                "aligned_accuracy": round(float(a.mean()), 4) if n else None,
                "unaligned_accuracy": round(float(u.mean()), 4) if n else None,
                "box_accuracy_on_found": round(float(np.mean(right_box)), 4) if n else None,
                "aligned_only_right": int((a & ~u).sum()),
                "unaligned_only_right": int((u & ~a).sum()),
                "measured_roll_median": round(float(np.median(rolls)), 2) if rolls else None,
            }
            if angle == 0 and roi == rois[-1]:  # upright, the crop's angle is 0 either way
                out["by_yaw_upright"] = by_yaw(np.array(yaws), a, u)
        out["angles"][f"{angle:+g}"] = row
    return out


YAW_BINS = (0, 15, 30, 45, 60, 180)


def by_yaw(yaws: np.ndarray, right_a: np.ndarray, right_u: np.ndarray) -> dict[str, Any]:
    """Accuracy of aligned and unaligned crops by the face's measured yaw (its absolute value)."""
    out = {}
    for lo, hi in zip(YAW_BINS, YAW_BINS[1:]):
        m = (yaws >= lo) & (yaws < hi)
        n = int(m.sum())
        out[f"{lo}-{hi}"] = {
            "crops": n,
            "aligned_accuracy": round(float(right_a[m].mean()), 4) if n else None,
            "unaligned_accuracy": round(float(right_u[m].mean()), 4) if n else None,
        }
    return out


def _paired(fa: list[Face], fu: list[Face]) -> Iterator[tuple[Face, Face]]:
    """The faces of the two detectors that have the same box."""
    by_box = {f.box: f for f in fu}
    for f in fa:
        if f.box in by_box:
            yield f, by_box[f.box]


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    return {k: round(float(np.percentile(v, q)), 1) for k, q in (("p5", 5), ("median", 50), ("p95", 95))}


def video(clf: EmotionClassifier, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    dets = [make_detector(load_config(overrides={"detector.align": align}), follow=True) for align in (True, False)]
    pairs: list[tuple[Face, Face]] = []
    frames = unpaired = 0
    try:
        for d in dets:
            d.reset()
        with AVSource(str(path)) as src:
            for frame in src.frames():
                frames += 1
                fa, fu = (d.detect(frame.image) for d in dets)
                now = list(_paired(fa, fu))
                unpaired += len(fa) + len(fu) - 2 * len(now)
                pairs += now
    finally:
        for d in dets:
            d.close()
    la = _labels(clf, [_crop(a) for a, _ in pairs])
    lu = _labels(clf, [_crop(u) for _, u in pairs])
    same = np.array([x == y for x, y in zip(la, lu)], bool)
    poses = [_pose(a) for a, _ in pairs]
    usable = np.array([a.usable and u.usable for a, u in pairs], bool)
    roll = np.array([abs(p.roll) for p in poses])
    yaw = np.array([abs(p.yaw) for p in poses])

    def share(mask: np.ndarray) -> dict[str, Any]:
        return {"faces": int(mask.sum()), "same_label": round(float(same[mask].mean()), 4) if mask.any() else None}

    return {
        "frames": frames,
        "faces": len(pairs),
        "unpaired": unpaired,
        "same_label": round(float(same.mean()), 4) if pairs else None,
        "usable": share(usable),
        "roll_under_5": share(roll < 5),
        "roll_5_to_15": share((roll >= 5) & (roll < 15)),
        "roll_15_up": share(roll >= 15),
        "yaw": _spread([p.yaw for p in poses]),
        "pitch": _spread([p.pitch for p in poses]),
        "roll": _spread([p.roll for p in poses]),
        "yaw_over": {str(t): round(float((yaw > t).mean()), 4) for t in (30, 45, 60)},
    }


def _turn(points: np.ndarray, yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """``points`` turned in 3-D about their centroid: ``yaw`` about the vertical axis (positive: the
    nose to the image's right), then ``pitch`` (positive: the face up), then ``roll`` in the image
    plane (positive: clockwise on screen); degrees, y pointing down, z away from the camera."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    c = points.mean(axis=0)
    return (points - c) @ (rz @ rx @ ry).T + c


def frontal_landmarks(rgb: np.ndarray, landmarker: FaceLandmarker) -> np.ndarray:
    """The landmarks of the best face the full-range BlazeFace finds in ``rgb``."""
    with BlazeFace(resolve_detector_model(None, kind="full"), FULL_RANGE) as bf:
        boxes, keypoints, _ = bf.detect_keypoints([rgb])[0]
    x0, y0, x1, y1 = boxes[0]
    roi = roi_from_box(Box(round(x0), round(y0), round(x1 - x0), round(y1 - y0)), (keypoints[0][0], keypoints[0][1]))
    [marks] = landmarker.run(rgb, [roi])
    return marks.points.astype(np.float64)


def _rounded(pose: Pose) -> dict[str, float]:
    return {"yaw": round(pose.yaw, 1), "pitch": round(pose.pitch, 1), "roll": round(pose.roll, 1)}


def pose_check(landmarker: FaceLandmarker, image: Path) -> dict[str, Any]:
    """Known turns of a real face's landmarks, made frontal first (turned into its own
    :func:`head_axes`), and the pose of the same face in the mirrored image."""
    rgb = read_image(image)
    points = frontal_landmarks(rgb, landmarker)
    centre = points.mean(axis=0)
    frontal = (points - centre) @ head_axes(points)  # the same face, upright and facing the camera
    rows = []
    for true_yaw in range(10, 90, 10):
        for pitch, roll in ((0, 0), (15, 0), (-20, 0), (0, 25), (20, 25)):
            p = head_pose(_turn(frontal, true_yaw, pitch, roll) + centre)
            rows.append(
                {
                    "true": [true_yaw, pitch, roll],
                    "measured": [round(p.yaw, 1), round(p.pitch, 1), round(p.roll, 1)],
                    "worst_error": round(max(abs(p.yaw - true_yaw), abs(p.pitch - pitch), abs(p.roll - roll)), 1),
                }
            )
    mirrored = head_pose(frontal_landmarks(np.ascontiguousarray(rgb[:, ::-1]), landmarker))
    return {"image": str(image), "as_found": _rounded(head_pose(points)), "mirrored": _rounded(mirrored), "turned": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(MODEL))
    ap.add_argument("--landmark-model", default=None, help="face_landmark.tflite (default: $FER_STREAM_LANDMARK_MODEL or the cache)")
    ap.add_argument("--limit", type=int, default=0, help="held-out crops to use, a seeded sample (0: all 2,872)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--angles", default="-30,-15,0,15,30")
    ap.add_argument("--roi", choices=("zero", "true", "both"), default="both")
    ap.add_argument("--pad", choices=("replicate", "grey"), default="replicate")
    ap.add_argument("--margin", type=float, default=0.1, help="crop margin (detector.crop_margin)")
    ap.add_argument("--videos", nargs="*", default=[str(p) for p in sorted((SHARED / "media").glob("*.mp4"))])
    ap.add_argument("--pose-image", default=str(SHARED / "faces" / "one_face_large.png"))
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out: heldout, videos, pose")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    clf = EmotionClassifier(args.model, device="cpu", max_batch=64)
    out: dict[str, Any] = {"model": args.model}
    with FaceLandmarker(resolve_landmark_model(args.landmark_model)) as landmarker:
        if "heldout" not in skip:
            out["heldout"] = heldout(clf, landmarker, args)
        if "pose" not in skip:
            out["pose"] = pose_check(landmarker, Path(args.pose_image))
    if "videos" not in skip:
        out["videos"] = {Path(v).name: video(clf, Path(v), args) for v in args.videos}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
