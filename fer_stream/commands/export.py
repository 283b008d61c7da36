"""``fer-stream export --format onnx OUT.onnx``: the classifier as an ONNX file (dynamic batch axis,
labels and preprocessing in its metadata), checked against PyTorch (:mod:`fer_stream.model.export`).

``--int8 --calibration DIR`` writes the static int8 model instead, calibrated on DIR's face crops
and checked against fp32 on others from DIR (:mod:`fer_stream.model.quantize`)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fer_stream.commands.options import model_flags, setting_flags
from fer_stream.config import Config
from fer_stream.errors import ConfigError, SourceError, counted
from fer_stream.io.sinks import check_output

if TYPE_CHECKING:
    from fer_stream.model.quantize import Int8Plan

# The quantize module's defaults, repeated so that ``--help`` stays free of numpy and ONNX imports
# (tests/test_export_int8.py checks they match).
CALIBRATION_IMAGES, CHECK_IMAGES, MIN_AGREEMENT = 256, 256, 0.95


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream export",
        description="Export the classifier to ONNX (dynamic batch axis, labels and preprocessing in the file's metadata), "
        "then check it against PyTorch and print the largest difference.",
    )
    p.add_argument("out", metavar="OUT.onnx", help="file to write")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        metavar="D",
        help="largest allowed difference of the probabilities against PyTorch, above 0 (default 0.001)",
    )
    q = p.add_argument_group("int8 (static quantization with ONNX Runtime, calibrated on real face crops)")
    q.add_argument("--int8", action="store_true", help="write the int8 model (convolutions and linear layers in int8) instead of fp32")
    q.add_argument(
        "--calibration",
        metavar="DIR",
        help="face crops to calibrate and check on: a data set with one folder per class (sampled per class), or a folder of crops",
    )
    q.add_argument(
        "--calibration-list", metavar="LIST.txt", help="just the images listed (CLASS/FILE paths relative to DIR, as eval --only)"
    )
    q.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        metavar="N",
        help=f"images that calibrate, chosen with a fixed seed; at most half of those given (default {CALIBRATION_IMAGES})",
    )
    q.add_argument(
        "--check-images",
        type=int,
        default=CHECK_IMAGES,
        metavar="N",
        help=f"other images of DIR the int8 model is compared with fp32 on (default {CHECK_IMAGES})",
    )
    q.add_argument(
        "--min-agreement",
        type=float,
        default=MIN_AGREEMENT,
        metavar="F",
        help=f"share of those images whose top label int8 and fp32 must agree on, else no file is written (default {MIN_AGREEMENT})",
    )
    setting_flags(p, ("output.overwrite",))
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    int8: dict[str, Any] | None = None
    if args.int8:
        int8 = {
            "calibration": args.calibration,
            "listing": args.calibration_list,
            "count": args.calibration_images,
            "check": args.check_images,
            "min_agreement": args.min_agreement,
        }
    elif args.calibration or args.calibration_list:
        raise ConfigError("--calibration and --calibration-list choose the images of an int8 export; add --int8")
    return run_export(cfg, args.out, opset=args.opset, tolerance=args.tolerance, as_json=args.json, int8=int8)


def calibration_images(root: str, listing: str | None = None) -> tuple[list[Path], list[str]]:
    """The crops under ``root`` and their class folder names: a data set with one folder per class
    (or the images ``listing`` names, paths relative to ``root``), else a plain folder of crops (one class)."""
    from fer_stream.commands.evaluate import load_dataset  # OpenCV: not for ``fer-stream export --help``
    from fer_stream.io.images import find_images

    base = Path(root)
    if not base.is_dir():
        raise SourceError(
            f"calibration folder '{root}' does not exist; pass --calibration a folder of face crops (one subfolder per class, or images)"
        )
    if listing is None and not any(d.is_dir() and not d.name.startswith(".") for d in base.iterdir()):
        files = find_images(base)
        return files, [""] * len(files)
    return load_dataset(root, listing)


def int8_plan(calibration: str | None, listing: str | None, count: int, check: int, min_agreement: float) -> Int8Plan:
    """The images of an int8 export, checked before any model loads."""
    if not calibration:
        raise ConfigError(
            "--int8 needs --calibration DIR: real face crops to calibrate on (a data set with one folder per class, "
            "e.g. the one the model was trained on)"
        )
    from fer_stream.model.quantize import split_images

    files, classes = calibration_images(calibration, listing)
    source = calibration if listing is None else f"{calibration} ({listing})"
    return split_images(files, classes, calibration=count, check=check, min_agreement=min_agreement, source=source)


def run_export(cfg: Config, out: str, *, opset: int, tolerance: float, as_json: bool, int8: dict[str, Any] | None = None) -> int:
    """``fer-stream export``: write, check and report; returns the exit code."""
    if not out.lower().endswith(".onnx"):
        raise ConfigError(f"export file '{out}' must end in .onnx")
    if not tolerance > 0 or not math.isfinite(tolerance):
        raise ConfigError(f"--tolerance must be a positive number, not {tolerance:g}")
    check_output(out, overwrite=cfg.output.overwrite)  # as every output: an existing file only with --overwrite
    plan = int8_plan(**int8) if int8 is not None else None
    from fer_stream.model.export import export_onnx  # torch (seconds) at its top: not for ``fer-stream export --help``

    result = export_onnx(cfg.classifier.model, out, opset=opset, tolerance=tolerance, int8=plan)
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    if plan is None:
        print(
            f"wrote {result['path']} ({result['size_mb']} MB, opset {result['opset']}, dynamic batch); "
            f"largest difference from PyTorch on {counted(result['images'], 'image')}: {result['max_abs_diff']:.2e} "
            f"(probabilities), {result['max_abs_diff_logits']:.2e} (logits); top-1 agreement "
            f"{result['top1_agreement']:.0%}"
        )
        return 0
    q = result["int8"]
    classes = f", {counted(q['calibration_classes'], 'class', 'classes')}" if q["calibration_classes"] > 1 else ""
    print(
        f"wrote {result['path']} (int8, {result['size_mb']} MB from {result['fp32_size_mb']} MB fp32, opset {result['opset']}, "
        f"dynamic batch); calibrated on {counted(q['calibration_images'], 'image')} of {q['calibration_source']}{classes}; "
        f"against fp32 on {counted(q['check_images'], 'other image')}: top-1 agreement {q['top1_agreement']:.1%} "
        f"(floor {q['min_agreement']:.0%}), largest probability difference {q['max_prob_diff']:.3f}; "
        f"fp32 graph against PyTorch: {result['max_abs_diff']:.2e}"
    )
    return 0
