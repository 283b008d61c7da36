"""Models on real video: faces flagged, the label mix, and agreement with a person's labels.

For each model (``--model FOLDER``, repeatable; default every shipped ``samples/models/*``) runs
the fer-stream pipeline with the default settings (the detector, tracking and smoothing of
``fer-stream --source VIDEO``) over ../shared's three videos and reports per video and in all:

- usable faces (faces the detector found fit to classify) and the share of them flagged at the
  model's own threshold (``config.json`` ``"fer_stream"."threshold"``, else 0.7);
- the label mix: the share of usable faces given each label;
- agreement with ``benchmarks/data/video_faces.jsonl`` (faces a person labelled, see
  ``benchmarks/data/video_faces.md``): the pipeline's label of the face with the same box
  (IoU >= 0.5) in the same frame, against the person's; accuracy, mean per-label recall, per-label
  counts and the confusion. Faces the person marked ``unsure`` are counted, not scored.

With ``--tta flip`` (the default asks for both ``none`` and ``flip``) a second row per model runs
the classifier with test-time flip averaging, where fer-stream has that setting
(``classifier.tta``); where it does not, the flip rows are skipped with one line.

    FER_STREAM_SHARED=../shared FER_STREAM_DETECTOR_MODEL=../shared/models/blaze_face_short_range.tflite \
    FER_STREAM_FULL_RANGE_MODEL=../shared/models/face_detection_full_range_sparse.tflite \
    FER_STREAM_LANDMARK_MODEL=../shared/models/face_landmark.tflite \
        python benchmarks/bench_video.py --model samples/models/fer2013-small --json video.json

Prints Markdown tables; ``--json OUT`` writes every figure. Counts only, no timings: the figures
do not depend on the machine's speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LABELS_FILE = ROOT / "benchmarks" / "data" / "video_faces.jsonl"
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
UNSURE = "unsure"
VIDEOS = ("webcam_720p60_audio.mp4", "two_people_512.mp4", "portrait_436x384.mp4")
FALLBACK_THRESHOLD = 0.7
MIN_IOU = 0.5


# -- the person's labels and the scoring (no model needed) ------------------------------------


def load_labels(path: Path = LABELS_FILE) -> list[dict[str, Any]]:
    """The labelled faces, one dict per line of ``path``."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x, y, w, h]`` boxes.

    >>> iou([0, 0, 10, 10], [5, 0, 10, 10])
    0.3333333333333333
    """
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def agreement(pairs: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
    """Scores ``(person's label, model's label)`` pairs.

    The person's ``unsure`` faces are counted (``unsure``) and left out; a model label of ``None``
    (the face was not found, or not classified) is counted as ``missed`` and left out too. Of the
    rest: ``n``, ``agree``, ``accuracy``, ``per_label`` (for each label the person used: ``n``,
    ``agree``, ``recall``), ``mean_recall`` over those labels, ``confusion`` (person's label ->
    model's label -> count) and ``majority``: the accuracy of always answering the person's most
    common label (what accuracy must beat to mean anything on a skewed set).

    >>> a = agreement([("happy", "happy"), ("happy", "neutral"), ("neutral", "neutral"), ("unsure", "sad")])
    >>> a["accuracy"], a["per_label"]["happy"], a["mean_recall"], a["unsure"]
    (0.6666666666666666, {'n': 2, 'agree': 1, 'recall': 0.5}, 0.75, 1)
    """
    confusion: dict[str, Counter[str]] = {}
    unsure = missed = 0
    for person, model in pairs:
        if person == UNSURE:
            unsure += 1
        elif model is None:
            missed += 1
        else:
            confusion.setdefault(person, Counter())[model] += 1
    per_label = {}
    for label in [*(e for e in EMOTIONS if e in confusion), *sorted(set(confusion) - set(EMOTIONS))]:
        n, right = sum(confusion[label].values()), confusion[label][label]
        per_label[label] = {"n": n, "agree": right, "recall": right / n}
    n = sum(p["n"] for p in per_label.values())
    agree = sum(p["agree"] for p in per_label.values())
    return {
        "n": n,
        "agree": agree,
        "accuracy": agree / n if n else None,
        "mean_recall": sum(p["recall"] for p in per_label.values()) / len(per_label) if per_label else None,
        "majority": max(p["n"] for p in per_label.values()) / n if n else None,
        "per_label": per_label,
        "confusion": {p: dict(sorted(c.items())) for p, c in ((p, confusion[p]) for p in per_label)},
        "unsure": unsure,
        "missed": missed,
    }


# -- running a model over the videos ----------------------------------------------------------


def model_threshold(model: str) -> tuple[float, str]:
    """The model's own flag threshold (its config.json's ``fer_stream.threshold``) and where it came from."""
    from fer_stream.model.calibration import calibration_of

    config = Path(model) / "config.json"
    if config.is_file():
        threshold = calibration_of(json.loads(config.read_text(encoding="utf-8"))).threshold
        if threshold is not None:
            return threshold, "config.json"
    return FALLBACK_THRESHOLD, "fallback"


def tta_supported() -> bool:
    """Whether this fer-stream has test-time augmentation as a classifier setting (``classifier.tta``)."""
    from dataclasses import fields

    from fer_stream.config import ClassifierConfig

    return "tta" in {f.name for f in fields(ClassifierConfig)}


def run_video(cfg: Any, clf: Any, video: Path, labelled: list[dict[str, Any]], max_frames: int | None) -> dict[str, Any]:
    """One pass of the pipeline over ``video``: its face counts, label mix and, for each labelled
    face of it, the pipeline's label (``None``: no usable classified face with its box)."""
    from fer_stream.build import make_detector, make_pipeline
    from fer_stream.io.sources import open_source

    wanted: dict[int, list[dict[str, Any]]] = {}
    for r in labelled:
        wanted.setdefault(r["frame"], []).append(r)
    faces = usable = flagged = frames = 0
    mix: Counter[str] = Counter()
    answers: dict[int, str | None] = {}
    with make_detector(cfg) as detector, open_source(str(video)) as source:
        with make_pipeline(cfg, source, clf, detector, max_frames=max_frames) as results:
            for result in results:
                frames += 1
                for face in result.faces:
                    faces += 1
                    if face.usable and face.prediction is not None:
                        usable += 1
                        flagged += face.prediction.flagged
                        mix[face.prediction.label] += 1
                for r in wanted.get(result.frame.index, []):
                    best = max(result.faces, key=lambda f: iou(f.box.as_list(), r["box"]), default=None)
                    ok = best is not None and iou(best.box.as_list(), r["box"]) >= MIN_IOU and best.prediction is not None
                    answers[r["id"]] = best.prediction.label if ok and best.prediction else None
    pairs = [(r["label"], answers[r["id"]]) for r in labelled if r["id"] in answers]
    return {
        "frames": frames,
        "faces": faces,
        "usable": usable,
        "flagged": flagged,
        "flagged_share": flagged / usable if usable else None,
        "label_mix": {k: v / usable for k, v in mix.most_common()} if usable else {},
        "label_counts": dict(mix.most_common()),
        "not_reached": sum(r["id"] not in answers for r in labelled),
        "agreement": agreement(pairs),
        "answers": {str(k): v for k, v in sorted(answers.items())},
    }


def run_model(
    model: str, tta: str, shared: Path, labels: list[dict[str, Any]], max_frames: int | None, smoothing: str | None = None
) -> dict[str, Any]:
    """Every video through the pipeline with ``model`` at its own threshold (and ``smoothing``, if
    given, instead of the settings' default); per video and in all."""
    from fer_stream.build import make_classifier
    from fer_stream.config import load_config

    threshold, source = model_threshold(model)
    overrides: dict[str, Any] = {"classifier.model": model, "classifier.threshold": threshold}
    if tta != "none":
        overrides["classifier.tta"] = tta
    if smoothing is not None:
        overrides["tracking.smoothing"] = smoothing
    cfg = load_config(None, overrides)
    clf = make_classifier(cfg, threads=cfg.classifier.threads or None)
    videos = {}
    for name in VIDEOS:
        print(f"bench_video: {Path(model).name} tta={tta}: {name}", file=sys.stderr)
        videos[name] = run_video(cfg, clf, shared / "media" / name, [r for r in labels if r["video"] == name], max_frames)
    usable = sum(v["usable"] for v in videos.values())
    mix: Counter[str] = Counter()
    for v in videos.values():
        mix.update(v["label_counts"])
    pairs = [(r["label"], videos[r["video"]]["answers"].get(str(r["id"]))) for r in labels if str(r["id"]) in videos[r["video"]]["answers"]]
    total = {
        "faces": sum(v["faces"] for v in videos.values()),
        "usable": usable,
        "flagged": sum(v["flagged"] for v in videos.values()),
        "flagged_share": sum(v["flagged"] for v in videos.values()) / usable if usable else None,
        "label_mix": {k: n / usable for k, n in mix.most_common()} if usable else {},
        "label_counts": dict(mix.most_common()),
        "agreement": agreement(pairs),
    }
    return {
        "model": model,
        "tta": tta,
        "threshold": threshold,
        "threshold_from": source,
        "smoothing": cfg.tracking.smoothing,
        "labels": list(clf.labels),
        "videos": videos,
        "all": total,
    }


# -- the report -------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _name(run: dict[str, Any]) -> str:
    return Path(run["model"]).name + (f" +{run['tta']}" if run["tta"] != "none" else "")


def markdown(runs: list[dict[str, Any]]) -> str:
    """The figures as Markdown tables: flagged and label mix, agreement, confusion."""
    out = [
        "## Faces flagged and the label mix",
        "",
        "| model | video | faces | usable | flagged | threshold | label mix |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        thr = f"{run['threshold']:.2f} ({run['threshold_from']})"
        for video, v in [*run["videos"].items(), ("all", run["all"])]:
            mix = ", ".join(f"{k} {_pct(s)}" for k, s in v["label_mix"].items())
            out.append(f"| {_name(run)} | {video} | {v['faces']} | {v['usable']} | {_pct(v['flagged_share'])} | {thr} | {mix} |")
    out += ["", "## Agreement with a person's labels (benchmarks/data/video_faces.jsonl)", ""]
    labels = [e for e in EMOTIONS if any(e in r["all"]["agreement"]["per_label"] for r in runs)]
    out.append(
        "| model | video | scored | agree | accuracy | always-majority | mean recall | " + " | ".join(labels) + " | unsure | missed |"
    )
    out.append("| --- " * (9 + len(labels)) + "|")
    for run in runs:
        for video, v in [*run["videos"].items(), ("all", run["all"])]:
            a = v["agreement"]
            cells = [f"{a['per_label'][e]['agree']}/{a['per_label'][e]['n']}" if e in a["per_label"] else "-" for e in labels]
            out.append(
                f"| {_name(run)} | {video} | {a['n']} | {a['agree']} | {_pct(a['accuracy'])} | {_pct(a['majority'])} | "
                f"{_pct(a['mean_recall'])} | " + " | ".join(cells) + f" | {a['unsure']} | {a['missed']} |"
            )
    for run in runs:
        a = run["all"]["agreement"]
        cols = list(run["labels"])
        out += ["", f"### Confusion, {_name(run)}, all videos (rows: the person, columns: the model)", ""]
        out += ["| person \\ model | " + " | ".join(cols) + " |", "| --- " * (len(cols) + 1) + "|"]
        for person, row in a["confusion"].items():
            out.append(f"| {person} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |")
    return "\n".join(out) + "\n"


def default_models() -> list[str]:
    """Every shipped model folder (``samples/models/*`` holding a config.json)."""
    return [str(p.parent) for p in sorted((ROOT / "samples" / "models").glob("*/config.json"))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="a model folder (repeatable; default: every samples/models/* folder)")
    ap.add_argument("--shared", default=os.environ.get("FER_STREAM_SHARED", str(ROOT.parent / "shared")), help="the shared data folder")
    ap.add_argument("--labels", default=str(LABELS_FILE), help="the person's labels (JSONL)")
    ap.add_argument(
        "--tta", action="append", choices=("none", "flip"), help="test-time augmentation runs (repeatable; default: none and flip)"
    )
    ap.add_argument("--smoothing", choices=("ema", "window", "off"), default=None, help="per-track smoothing (default: the settings', ema)")
    ap.add_argument("--max-frames", type=int, default=None, help="frames per video (a quick check; labelled faces past it are not scored)")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file (a new file)")
    args = ap.parse_args()

    shared = Path(args.shared)
    missing = [v for v in VIDEOS if not (shared / "media" / v).is_file()]
    if missing:
        print(
            f"bench_video: {', '.join(missing)} not found in {shared / 'media'}; "
            "point --shared (or FER_STREAM_SHARED) at the shared/ folder",
            file=sys.stderr,
        )
        return 2
    if args.json and Path(args.json).exists():
        print(f"bench_video: '{args.json}' exists; name a new file with --json", file=sys.stderr)
        return 2
    models = args.model or default_models()
    if not models:
        print("bench_video: no model folder in samples/models; give one with --model", file=sys.stderr)
        return 2
    ttas = args.tta or ["none", "flip"]
    if "flip" in ttas and not tta_supported():
        print("bench_video: this fer-stream has no classifier.tta setting; the --tta flip runs are skipped", file=sys.stderr)
        ttas = [t for t in ttas if t != "flip"]
    labels = load_labels(Path(args.labels))
    runs = [run_model(m, t, shared, labels, args.max_frames, args.smoothing) for m in models for t in dict.fromkeys(ttas)]
    print(markdown(runs))
    if args.json:
        with open(args.json, "x", encoding="utf-8") as f:
            json.dump({"labels_file": str(args.labels), "min_iou": MIN_IOU, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
