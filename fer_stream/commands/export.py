"""``fer-stream export --format onnx OUT.onnx``: the classifier as an ONNX file (dynamic batch axis,
labels and preprocessing in its metadata), checked against PyTorch (:mod:`fer_stream.model.export`)."""

from __future__ import annotations

import argparse
import json
import math

from fer_stream.commands.options import model_flags, setting_flags
from fer_stream.config import Config
from fer_stream.errors import ConfigError, counted
from fer_stream.io.sinks import check_output


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
    setting_flags(p, ("output.overwrite",))
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return run_export(cfg, args.out, opset=args.opset, tolerance=args.tolerance, as_json=args.json)


def run_export(cfg: Config, out: str, *, opset: int, tolerance: float, as_json: bool) -> int:
    """``fer-stream export``: write, check and report; returns the exit code."""
    if not out.lower().endswith(".onnx"):
        raise ConfigError(f"export file '{out}' must end in .onnx")
    if not tolerance > 0 or not math.isfinite(tolerance):
        raise ConfigError(f"--tolerance must be a positive number, not {tolerance:g}")
    check_output(out, overwrite=cfg.output.overwrite)  # as every output: an existing file only with --overwrite
    from fer_stream.model.export import export_onnx  # torch (seconds) at its top: not for ``fer-stream export --help``

    result = export_onnx(cfg.classifier.model, out, opset=opset, tolerance=tolerance)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"wrote {result['path']} ({result['size_mb']} MB, opset {result['opset']}, dynamic batch); "
            f"largest difference from PyTorch on {counted(result['images'], 'image')}: {result['max_abs_diff']:.2e} "
            f"(probabilities), {result['max_abs_diff_logits']:.2e} (logits); top-1 agreement "
            f"{result['top1_agreement']:.0%}"
        )
    return 0
