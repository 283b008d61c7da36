"""``fer-stream eval``: accuracy of the classifier on a folder-per-class data set of face crops.

Class folders map to the model's labels by name, case-insensitively and through common synonyms
(anger/angry, happiness/happy, sadness/sad, surprised/surprise, ...), so data sets and models that
spell the classes differently still line up; a folder that maps to no label is an error. The
report has the accuracy, each label's precision, recall, F1 and support, and the confusion matrix
(rows: true classes, columns: predictions, both in the model's label order), as text, JSON and PNG.

>>> report = evaluate(clf, "faces/")          # doctest: +SKIP
>>> report["accuracy"]                        # doctest: +SKIP
0.71
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from fer_stream.build import make_classifier
from fer_stream.commands.options import model_flags
from fer_stream.config import Config
from fer_stream.errors import ConfigError, SourceError, counted, printable
from fer_stream.io.images import find_images, read_image
from fer_stream.io.report import _pyplot
from fer_stream.io.sinks import writable_path, write_atomic, write_json
from fer_stream.model.calibration import flag_split, reliability, threshold_for

SYNONYMS = {
    "anger": "angry",
    "angry": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neutral": "neutral",
    "calm": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "contempt": "contempt",
}


def canonical(name: str) -> str:
    key = name.strip().lower()
    return SYNONYMS.get(key, key)


def map_classes(folders: list[str], labels: tuple[str, ...]) -> dict[str, str]:
    """Folder name -> model label; raises with the list of labels when a folder matches none."""
    by_canon = {canonical(label): label for label in labels}
    out = {}
    for folder in folders:
        label = by_canon.get(canonical(folder))
        if label is None:
            raise SourceError(
                f"class folder '{folder}' matches none of the model's labels ({', '.join(labels)}); "
                "rename it or leave it out of the data set"
            )
        out[folder] = label
    targets = list(out.values())
    dupes = sorted({t for t in targets if targets.count(t) > 1})
    if dupes:
        names = [f for f, t in out.items() if t == dupes[0]]
        raise SourceError(f"class folders {', '.join(names)} all map to the label '{dupes[0]}'; merge them into one folder")
    return out


def load_dataset(root: str | Path, only: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Image paths and their folder names, from ``root/<class>/...`` (subfolders of a class searched).

    ``only`` names a text file of paths relative to ``root`` (one per line, as ``fer-stream train``
    writes its held-out split to ``heldout.txt``): just those images are taken.
    """
    if only is not None:
        return _listed(Path(root), Path(only))
    base = Path(root)
    if not base.is_dir():
        raise SourceError(f"data set folder '{root}' does not exist; pass a folder with one subfolder of images per class")
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SourceError(f"'{root}' has no class subfolders; expected {root}/happy/*.jpg, {root}/sad/*.jpg, ...")
    files, names = [], []
    for c in classes:
        for f in find_images(base / c):
            files.append(f)
            names.append(c)
    return files, names


def _listed(root: Path, listing: Path) -> tuple[list[Path], list[str]]:
    if not root.is_dir():
        raise SourceError(f"data set folder '{root}' does not exist; pass the folder the list's paths are relative to")
    try:
        lines = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as e:
        raise SourceError(f"cannot read the image list '{listing}': {e.strerror}") from None
    files, names = [], []
    for line in lines:
        rel = Path(line)
        if rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2:
            raise SourceError(f"'{listing}' lists '{line}'; expected CLASS/FILE paths relative to {root}")
        if not (root / rel).is_file():
            raise SourceError(f"'{listing}' lists '{line}', which is not in {root}; pass the data set it was made from")
        files.append(root / rel)
        names.append(rel.parts[0])
    if not files:
        raise SourceError(f"the image list '{listing}' is empty")
    return files, names


def evaluate(clf: Any, root: str | Path, only: str | Path | None = None) -> dict[str, Any]:
    """Classify every image under ``root`` (or those listed in ``only``) and compare with its folder's class."""
    files, folders = load_dataset(root, only)
    return evaluate_files(clf, files, folders, str(root))


def evaluate_files(clf: Any, files: list[Path], folders: list[str], data: str) -> dict[str, Any]:
    """Classify ``files`` and compare with their classes ``folders`` (names mapped to the model's labels)."""
    mapping = map_classes(sorted(set(folders)), clf.labels)
    labels = list(clf.labels)
    index = {label: i for i, label in enumerate(labels)}
    y_true = np.array([index[mapping[f]] for f in folders])
    probs = []
    for i in range(0, len(files), clf.max_batch):
        chunk = [read_image(p) for p in files[i : i + clf.max_batch]]
        probs.append(clf.forward(clf.preprocess(chunk)))
    p = np.concatenate(probs)
    y_pred = p.argmax(1)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    tp = np.diag(confusion).astype(float)
    support, predicted = confusion.sum(1), confusion.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, np.nan)
        recall = np.where(support > 0, tp / support, np.nan)
        f1 = np.where((precision + recall) > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = {
        label: {
            "precision": None if np.isnan(precision[i]) else round(float(precision[i]), 4),
            "recall": None if np.isnan(recall[i]) else round(float(recall[i]), 4),
            "f1": None if support[i] == 0 and predicted[i] == 0 else round(float(np.nan_to_num(f1[i])), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    present = [i for i in range(n) if support[i] > 0]
    return {
        "data": data,
        "model": getattr(clf, "model_name", ""),
        "images": len(files),
        "accuracy": round(float(tp.sum() / len(files)), 4),
        "macro_f1": round(float(np.mean([np.nan_to_num(f1[i]) for i in present])), 4),
        "labels": labels,
        "folders": mapping,
        "confusion": confusion.tolist(),
        "per_class": per_class,
        "calibration": calibration_report(p, y_true, float(getattr(clf, "threshold", 0.7))),
    }


def calibration_report(probs: np.ndarray, y_true: np.ndarray, threshold: float, target: float = 0.85) -> dict[str, Any]:
    """How far the confidences can be trusted on these images: the expected calibration error and
    its 10 bins, how often the unflagged and the flagged answers are right at ``threshold`` (the
    model's, as fer-stream would flag them), and the threshold that would make unflagged answers
    ``target`` right on this data."""
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
    rel = reliability(conf, correct)
    return {
        "ece": rel.ece,
        "mean_confidence": round(float(conf.mean()), 4) if len(conf) else None,
        "at_threshold": flag_split(conf, correct, threshold),
        "target_accuracy": target,
        "threshold_for_target": threshold_for(conf, correct, target),
        "bins": rel.as_dict(),
    }


def confusion_png(report: dict[str, Any], path: str | Path) -> Path:
    """Draw the confusion matrix (cells shaded by row share, counts written in) and, beside it, the
    reliability diagram (accuracy against confidence per bin) as one PNG, with matplotlib."""
    plt = _pyplot()
    labels, m = report["labels"], np.array(report["confusion"])
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(labels)
    fig, (ax, rel_ax) = plt.subplots(1, 2, figsize=(1.1 * n + 7.4, 1.0 * n + 1.8), dpi=100, width_ratios=[1.1 * n + 2.2, 5.2])
    _reliability_axes(rel_ax, report["calibration"])
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for r in range(n):
        for c in range(n):
            ax.text(
                c,
                r,
                f"{m[r, c]}\n{share[r, c]:.0%}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if share[r, c] > 0.55 else "black",
            )
    ax.set_xticks(range(n), labels, rotation=35, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    images = counted(report["images"], "image")
    ax.set_title(f"accuracy {report['accuracy']:.1%}, macro F1 {report['macro_f1']:.3f} on {images}", fontsize=10)
    fig.tight_layout()

    def write(f: Any) -> None:
        f.flush()
        fig.savefig(f.buffer, format="png")  # the binary file under write_atomic's text one

    try:
        return write_atomic(path, write, "confusion matrix")
    finally:
        plt.close(fig)


def _reliability_axes(ax: Any, cal: dict[str, Any]) -> None:
    """Bars of each confidence bin's accuracy, outlines of its mean confidence, the diagonal of perfect calibration; the
    model's threshold as a dashed line; bin counts under the bars."""
    bins = cal["bins"]
    edges = np.array(bins["edges"])
    mids, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    acc = np.array([a if a is not None else np.nan for a in bins["accuracy"]], dtype=float)
    conf = np.array([c if c is not None else np.nan for c in bins["confidence"]], dtype=float)
    seen = np.array(bins["counts"]) > 0
    ax.bar(mids[seen], acc[seen], width=width * 0.92, color="#3b7dd8", label="accuracy")
    ax.bar(mids[seen], conf[seen], width=width * 0.92, fill=False, edgecolor="#d9480f", linewidth=1.4, label="mean confidence")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="calibrated")
    thr = cal["at_threshold"]["threshold"]
    ax.axvline(thr, color="#b36b00", linestyle="--", linewidth=1, label=f"threshold {thr:.2f}")
    for x, c in zip(mids, bins["counts"]):
        if c:
            ax.text(x, 0.01, str(c), ha="center", va="bottom", fontsize=7, rotation=90, color="white")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    split = cal["at_threshold"]
    pct = lambda v: "-" if v is None else f"{v:.0%}"
    ax.set_title(
        f"ECE {cal['ece']:.3f}; right: unflagged {pct(split['unflagged_accuracy'])}, flagged {pct(split['flagged_accuracy'])}",
        fontsize=10,
    )
    ax.legend(loc="upper left", fontsize=8)


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"{counted(r['images'], 'image')} from {r['data']}: accuracy {r['accuracy']:.2%}, macro F1 {r['macro_f1']:.3f}",
        "",
        f"{'label':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for label, m in r["per_class"].items():
        lines.append(f"{label:<10} {fmt(m['precision']):>9} {fmt(m['recall']):>7} {fmt(m['f1']):>6} {m['support']:>8}")
    lines += ["", "confusion (rows: true, columns: predicted)", " " * 10 + "".join(f"{l[:7]:>8}" for l in r["labels"])]
    for label, row in zip(r["labels"], r["confusion"]):
        lines.append(f"{label[:10]:<10}" + "".join(f"{v:>8}" for v in row))
    cal = r.get("calibration")
    if cal:
        split, pct = cal["at_threshold"], lambda v: "-" if v is None else f"{v:.1%}"
        target = cal["threshold_for_target"]
        lines += [
            "",
            f"calibration: expected calibration error {cal['ece']:.3f} (mean confidence {cal['mean_confidence']:.3f})",
            f"at the threshold {split['threshold']:.2f}: {counted(split['flagged'], 'answer')} flagged ({pct(split['flagged_share'])}), "
            f"right {pct(split['flagged_accuracy'])} of the time; unflagged right {pct(split['unflagged_accuracy'])}",
            f"threshold for unflagged answers {cal['target_accuracy']:.0%} right on these images: "
            + (f"{target:.2f}" if target is not None else "none reaches it"),
        ]
    rv = r.get("review")
    if rv:
        lines += ["", f"left out: {rv['not_a_face']} marked not a face (detector errors), {rv['skip']} skipped"]
    return "\n".join(printable(line) for line in lines)  # labels are folder names someone else chose


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream eval",
        description="Accuracy, per-class precision/recall/F1 and the confusion matrix of the classifier on a "
        "folder-per-class data set of face crops (folder names map to the model's labels, synonyms allowed).",
    )
    p.add_argument("data", metavar="DIR", nargs="?", help="one subfolder of images per class, e.g. DIR/happy/*.jpg")
    p.add_argument(
        "--from-review",
        nargs="+",
        metavar="STORE",
        help="score on the faces people labelled in these review stores (not-a-face and skipped left out) instead of DIR",
    )
    p.add_argument("--out", metavar="FOLDER", help="also write FOLDER/eval.json and FOLDER/confusion.png")
    p.add_argument(
        "--only", metavar="LIST.txt", help="just the images listed (CLASS/FILE paths relative to DIR), e.g. a trained model's heldout.txt"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    if (args.data is None) == (args.from_review is None):
        raise ConfigError("fer-stream eval needs DIR (one subfolder of images per class) or --from-review STORE, one of them")
    if args.from_review and args.only:
        raise ConfigError("--only lists images of DIR; it does not apply to --from-review")
    return run_eval(cfg, args.data, out=args.out, as_json=args.json, only=args.only, stores=args.from_review)


def run_eval(
    cfg: Config, root: str | None, *, out: str | None, as_json: bool, only: str | None = None, stores: list[str] | None = None
) -> int:
    """The ``eval`` command."""
    if stores:
        from fer_stream.io.review import reviewed

        rev = reviewed(stores)  # a bad store fails before the model loads
        if not len(rev):
            raise SourceError(f"no labelled faces in {', '.join(stores)}; label some with fer-stream review {stores[0]}")
    else:
        assert root is not None
        load_dataset(root, only)  # a bad folder or list fails before the model loads
    if out:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)  # the report folder the user named
        except OSError as e:
            raise SourceError(f"cannot create the report folder '{out}': {e.strerror}") from None
        writable_path(Path(out) / "eval.json")
    clf = make_classifier(cfg)
    if stores:
        report = evaluate_files(clf, list(rev.files), list(rev.labels), " ".join(stores))
        report["review"] = {"stores": list(rev.stores), "labelled": len(rev), **rev.marks}
    else:
        assert root is not None
        report = evaluate(clf, root, only)
    if out:
        write_json(Path(out) / "eval.json", report)
        confusion_png(report, Path(out) / "confusion.png")
    print(json.dumps(report, indent=2) if as_json else format_report(report))
    if out and not as_json:
        print(f"\nwrote {printable(str(Path(out) / 'eval.json'))} and {printable(str(Path(out) / 'confusion.png'))}")
    return 0
