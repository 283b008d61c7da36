"""The ``fer-stream`` command line.

    fer-stream --source 0                                   # webcam, on screen
    fer-stream --source talk.mp4 --output talk.annotated.mp4 --events talk.jsonl
    fer-stream batch ARCHIVE/ more/*.mp4 list.txt --out RESULTS/ [--jobs 2] [--ray auto]
    fer-stream fleet --ray auto site-a.toml site-b.toml     # camera groups as Ray actors, each with /metrics
    fer-stream image face.jpg [more.jpg ...] [--dir FACES] [--json] [--no-detect]
    fer-stream bench --video talk.mp4 [--images FACES] [--json]   # speed on this machine
    fer-stream parity --device cuda [--precision fp16] [--images FACES] [--json]   # device vs CPU
    fer-stream eval FACES_BY_CLASS/ [--out REPORT/] [--json]      # accuracy, F1, confusion matrix
    fer-stream export --format onnx fer.onnx [--model M]          # then --backend onnxruntime --model fer.onnx
    fer-stream train FACES_BY_CLASS/ --model BASE --out MY_MODEL/  # fine-tune
    fer-stream models pull                                  # fetch both models for offline use
    fer-stream config                                       # print the effective settings as TOML

A user's mistake ends in one line, ``fer-stream: error: ...``, and a non-zero exit; ``--debug``
(or ``FER_STREAM_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from fer_stream import __version__
from fer_stream.config import DEFAULT_MODEL, PRECISIONS, SMOOTHING, X264_PRESETS, load_config
from fer_stream.errors import ConfigError, FerStreamError

COMMANDS = ("run", "batch", "fleet", "image", "bench", "parity", "eval", "export", "train", "models", "config")

# flag destination -> "table.key" in config.toml
_OVERRIDES = {
    "serve": "serve.address",
    "serve_token": "serve.token",
    "segment_seconds": "output.segment_seconds",
    "max_reconnects": "source.max_reconnects",
    "stall_timeout": "source.stall_timeout_s",
    "transport": "source.transport",
    "max_frames": "source.max_frames",
    "max_pixels": "source.max_pixels",
    "live": "source.live",
    "precision": "classifier.precision",
    "backend": "classifier.backend",
    "threads": "classifier.threads",
    "classify_every": "classifier.classify_every",
    "live_max_hz": "classifier.live_max_hz",
    "smoothing": "tracking.smoothing",
    "model": "classifier.model",
    "device": "classifier.device",
    "max_batch": "classifier.max_batch",
    "batch_wait_ms": "classifier.batch_wait_ms",
    "threshold": "classifier.threshold",
    "warmup": "classifier.warmup",
    "detector": "detector.kind",
    "detector_model": "detector.model",
    "full_range_model": "detector.full_model",
    "tile_size": "detector.tile_size",
    "min_face_px": "quality.min_face_px",
    "min_sharpness": "quality.min_sharpness",
    "min_detection_confidence": "detector.min_confidence",
    "crop_margin": "detector.crop_margin",
    "display": "display.enabled",
    "output": "output.video",
    "events": "output.events",
    "summary": "output.summary",
    "report": "output.report",
    "timeline": "output.timeline",
    "timeline_seconds": "output.timeline_seconds",
    "audio": "output.audio",
    "overwrite": "output.overwrite",
    "crf": "output.crf",
    "preset": "output.preset",
    "progress": "output.progress",
}


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and settings")
    g.add_argument("--config", metavar="PATH", help="settings file (TOML); flags override it")
    g.add_argument("--model", help=f"classifier: Hugging Face hub id or local folder (default {DEFAULT_MODEL})")
    g.add_argument("--device", help="auto | npu | cuda | mps | cpu (default auto: the first of those present)")
    g.add_argument("--max-batch", type=int, metavar="N", help="most faces per classifier batch (default 8)")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="classifier precision (default fp32); int8 = dynamic quantization on the CPU, fp16/bf16 for accelerators")
    g.add_argument("--backend", choices=("torch", "onnxruntime"),
                   help="run the classifier with PyTorch (default) or ONNX Runtime (--model file.onnx from `fer-stream export`)")
    g.add_argument("--threads", type=int, metavar="N", help="CPU threads for the classifier (default: all cores; live, all but one)")
    g.add_argument("--threshold", type=float, metavar="P", help="flag predictions under this confidence (default 0.7)")
    g.add_argument("--detector", choices=("auto", "short", "full", "tiled"),
                   help="face detector: short (faces near the camera), full (up to ~5 m), tiled (full-range on tiles: "
                        "small, far faces) or auto (default: short for webcams, tiled otherwise)")
    g.add_argument("--detector-model", metavar="PATH", help="blaze_face_short_range.tflite (default: $FER_STREAM_DETECTOR_MODEL or the cached download)")
    g.add_argument("--full-range-model", metavar="PATH",
                   help="face_detection_full_range_sparse.tflite (default: $FER_STREAM_FULL_RANGE_MODEL or the cached download)")
    g.add_argument("--tile-size", type=int, metavar="PX", help="tiled detector: tile side in frame pixels (default 640)")
    g.add_argument("--min-face-px", type=int, metavar="PX", help="smaller faces are unusable, not classified (default 20)")
    g.add_argument("--min-sharpness", type=float, metavar="S", help="blurrier faces are unusable, not classified (default 10)")
    g.add_argument("--min-detection-confidence", type=float, metavar="P", help="minimum face-detection score (default 0.5)")
    g.add_argument("--crop-margin", type=float, metavar="F", help="grow face boxes by this fraction before cropping (default 0.1)")
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream",
        description="Real-time facial-expression analysis of a webcam, video file or camera stream.",
        epilog="other commands: fer-stream image --help | fer-stream bench --help | fer-stream parity --help | "
               "fer-stream batch --help | fer-stream fleet --help | fer-stream eval --help | fer-stream export --help | fer-stream train --help | "
               "fer-stream models pull --help | "
               "fer-stream config --help",
    )
    p.add_argument("--version", action="version", version=f"fer-stream {__version__}")
    p.add_argument("--source", metavar="[ID=]SRC", action="append",
                   help="webcam index (0), video file, or URL (rtsp://...); repeat for several cameras, "
                        "optionally named: --source door=rtsp://...")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="serve /healthz, /metrics and /sources/<id>/mjpeg (host 127.0.0.1 unless given)")
    p.add_argument("--serve-token", metavar="TOKEN", help="--serve: require this token (or set $FER_STREAM_SERVE_TOKEN)")
    p.add_argument("--segment-seconds", type=float, metavar="S", help="cut the MP4 into S-second segments named by source and start time")
    p.add_argument("--max-reconnects", type=int, metavar="N", help="network cameras: give up after N failed attempts in a row (default: never)")
    p.add_argument("--stall-timeout", type=float, metavar="S", help="network cameras: no frame for S seconds is an outage (default 10)")
    p.add_argument("--transport", choices=("tcp", "udp", "http"), help="RTSP transport (default tcp)")
    p.add_argument("--output", metavar="OUT.mp4", help="write the annotated video (H.264, input's audio kept)")
    p.add_argument("--events", metavar="OUT.jsonl", help="write one record per face per frame (.jsonl or .csv)")
    p.add_argument("--summary", metavar="OUT.json", help="write the run's summary as JSON")
    p.add_argument("--report", metavar="OUT.html", help="write a self-contained HTML report (timelines, flagged faces, settings)")
    p.add_argument("--timeline", metavar="OUT.csv", help="write per-second, per-track mean probabilities and dominant label")
    p.add_argument("--timeline-seconds", type=float, metavar="S", help="timeline bucket length (default 1)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace outputs that already exist (never the input; default: refuse)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--max-pixels", type=int, metavar="N", help="refuse frames larger than N pixels (default 7680*4320, 8K; 0 = any)")
    p.add_argument("--live", action="store_true", default=None,
                   help="play a file at its own frame rate as a camera would (newest frame wins, drops counted)")
    p.add_argument("--classify-every", type=int, metavar="N",
                   help="files: classify each face track every Nth frame and reuse the result between (default 1: every frame)")
    p.add_argument("--live-max-hz", type=float, metavar="HZ",
                   help="live: most classifications per face track per second (default 5; 0 = as fast as possible)")
    p.add_argument("--smoothing", choices=SMOOTHING, help="per-track smoothing of probabilities (default ema; off = raw)")
    p.add_argument("--display", action=argparse.BooleanOptionalAction, default=None,
                   help="show an on-screen window (default: on for webcams when a screen exists); q or Esc quits")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument("--batch-wait-ms", type=int, metavar="MS", help="longest wait for a batch to fill (default 50)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", default=None, help="skip the warm-up batch")
    p.add_argument("--no-audio", dest="audio", action="store_false", default=None, help="do not copy the input's audio")
    p.add_argument("--crf", type=int, metavar="Q", help="H.264 quality 0-51, lower is better (default 20)")
    p.add_argument("--preset", choices=X264_PRESETS, help="x264 speed preset (default veryfast)")
    _common(p)
    return p


def _batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream batch",
        description="Analyse many videos: each gets OUT/<name>/ with annotated.mp4, events.jsonl, summary.json, "
                    "report.html and timeline.csv; OUT/manifest.jsonl records every attempt. A re-run skips finished, "
                    "unchanged videos and runs new, changed, failed and interrupted ones.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (searched recursively), glob patterns ('talks/**/*.mp4') or .txt lists of paths/URLs")
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created if missing)")
    p.add_argument("--jobs", type=int, default=2, metavar="N",
                   help="videos decoded and detected at once, all feeding one classifier (default 2)")
    p.add_argument("--force", action="store_true", help="run every input again, finished or not")
    p.add_argument("--retry-failed", action="store_true", help="run only the inputs whose last attempt failed")
    p.add_argument("--no-video", dest="video", action="store_false", help="no annotated MP4s (events, summaries and reports only)")
    p.add_argument("--ray", metavar="auto|ADDRESS",
                   help="run on a Ray cluster (pip install 'fer-stream[ray]'): auto = the cluster this machine "
                        "joined with `ray start` (else a local one), or ray://HOST:10001")
    p.add_argument("--max-frames", type=int, metavar="N", help="at most N frames of each video")
    p.add_argument("--classify-every", type=int, metavar="N",
                   help="classify each face track every Nth frame and reuse the result between (default 1: every frame)")
    p.add_argument("--smoothing", choices=SMOOTHING, help="per-track smoothing of probabilities (default ema; off = raw)")
    p.add_argument("--timeline-seconds", type=float, metavar="S", help="timeline bucket length (default 1)")
    p.add_argument("--batch-wait-ms", type=int, metavar="MS", help="longest wait for a batch to fill (default 50)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false", default=None, help="skip the warm-up batch")
    p.add_argument("--no-audio", dest="audio", action="store_false", default=None, help="do not copy the input's audio")
    p.add_argument("--crf", type=int, metavar="Q", help="H.264 quality 0-51, lower is better (default 20)")
    p.add_argument("--preset", choices=X264_PRESETS, help="x264 speed preset (default veryfast)")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    _common(p)
    return p


def _fleet_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream fleet",
        description="Run camera groups across a Ray cluster: each GROUP.toml (its [[sources]], outputs and [serve] "
                    "address) becomes one Ray actor that analyses its cameras and serves its own /healthz and /metrics. "
                    "Ctrl-C stops every group; outputs are finalized.",
    )
    p.add_argument("groups", nargs="+", metavar="GROUP.toml", help="one settings file per camera group (its name: the file name)")
    p.add_argument("--ray", default="auto", metavar="auto|ADDRESS",
                   help="the cluster: auto (the one this machine joined, else a local one) or ray://HOST:10001")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


def _image_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream image",
        description="Find the faces in still images and print each face's box and its emotions, most likely first.",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (.jpg, .png, ...)")
    p.add_argument("--dir", metavar="FOLDER", help="also every image in FOLDER")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-detect", dest="detect", action="store_false",
                   help="classify each whole image as one face (for ready-cropped faces)")
    _common(p)
    return p


def _csv(kind: type, choices: Sequence[Any] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, like 1,8 (got {text!r})") from None
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(map(str, choices or []))} (got {text!r})")
        return values
    return parse


def _bench_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream bench",
        description="Measure decoder, detector, classifier (per precision and batch size) and the whole pipeline "
                    "(exact and live) on a video, against the naive single-thread loop. With --detection: recall and "
                    "false positives of each face detector by face size, on 720p and 1080p frames built from the videos.",
    )
    p.add_argument("--video", required=True, action="append", metavar="FILE",
                   help="a video with faces (its own frame rate is the live camera's); --detection takes several")
    p.add_argument("--detection", action="store_true",
                   help="benchmark the face detectors instead: recall by face height (16-300 px), false positives, frames/s")
    p.add_argument("--detectors", type=_csv(str, ("short", "full", "tiled")), default=["short", "full", "tiled"],
                   metavar="LIST", help="--detection: the kinds to compare (default short,full,tiled)")
    p.add_argument("--canvases", type=int, default=3, metavar="N",
                   help="--detection: frames per face height and resolution (default 3)")
    p.add_argument("--images", metavar="DIR", help="face images (subfolders searched) for each precision's agreement with fp32 "
                   "(default: the video's face crops)")
    p.add_argument("--precisions", type=_csv(str, PRECISIONS), metavar="LIST",
                   help="classifier precisions to measure (default fp32,int8 on the CPU; fp32,fp16,bf16 elsewhere)")
    p.add_argument("--devices", type=_csv(str), metavar="LIST",
                   help="devices for the classifier table, e.g. cpu,cuda (default: --device); int8 runs on the CPU only")
    p.add_argument("--batches", type=_csv(int), default=[1, 8], metavar="LIST", help="classifier batch sizes (default 1,8)")
    p.add_argument("--frames", type=int, default=96, metavar="N", help="frames for decoder, detector and exact pipeline (default 96)")
    p.add_argument("--naive-frames", type=int, default=24, metavar="N", help="frames for the naive loop (default 24)")
    p.add_argument("--live-seconds", type=float, default=20.0, metavar="S", help="longest live run (default 20)")
    p.add_argument("--min-time", type=float, default=3.0, metavar="S", help="least time per classifier measurement (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--live-max-hz", type=float, metavar="HZ", help="live: most classifications per track per second (default 5)")
    p.add_argument("--classify-every", type=int, metavar="N", help="exact pipeline: classify each track every Nth frame (default 1)")
    _common(p)
    return p


def _parity_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream parity",
        description="Check a device and precision against the CPU in fp32 on the same face images: mean cosine "
                    "similarity, mean absolute error, top-1 agreement and both throughputs; exit 1 when outside tolerances.",
    )
    p.add_argument("--images", metavar="DIR", help="face images (subfolders searched); default: a fixed-seed synthetic set")
    p.add_argument("--count", type=int, default=64, metavar="N", help="synthetic images when --images is not given (default 64)")
    p.add_argument("--min-cosine", type=float, default=0.999, metavar="C", help="least mean cosine similarity to pass (default 0.999)")
    p.add_argument("--min-top1", type=float, default=0.99, metavar="F", help="least top-1 agreement to pass, 0-1 (default 0.99)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)
    return p


def _eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream eval",
        description="Accuracy, per-class precision/recall/F1 and the confusion matrix of the classifier on a "
                    "folder-per-class data set of face crops (folder names map to the model's labels, synonyms allowed).",
    )
    p.add_argument("data", metavar="DIR", help="one subfolder of images per class, e.g. DIR/happy/*.jpg")
    p.add_argument("--out", metavar="FOLDER", help="also write FOLDER/eval.json and FOLDER/confusion.png")
    p.add_argument("--only", metavar="LIST.txt",
                   help="just the images listed (CLASS/FILE paths relative to DIR), e.g. a trained model's heldout.txt")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)
    return p


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream export",
        description="Export the classifier to ONNX (dynamic batch axis, labels and preprocessing in the file's metadata), "
                    "then check it against PyTorch and print the largest difference.",
    )
    p.add_argument("out", metavar="OUT.onnx", help="file to write")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="export format (onnx)")
    p.add_argument("--opset", type=int, default=17, metavar="N", help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3, metavar="D",
                   help="largest allowed difference of the probabilities against PyTorch (default 0.001)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _common(p)
    return p


def _train_parser() -> argparse.ArgumentParser:
    from fer_stream.commands.train import Recipe

    d = Recipe()
    p = argparse.ArgumentParser(
        prog="fer-stream train",
        description="Fine-tune a Hugging Face image classifier on a folder-per-class data set; the best epoch is saved "
                    "with save_pretrained, labels from the folder names.",
    )
    p.add_argument("data", metavar="DIR", help="one subfolder of face crops per class")
    p.add_argument("--out", required=True, metavar="FOLDER", help="where the best model goes (FOLDER/last: latest epoch)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"(default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr:g})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"(default {d.weight_decay:g})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help=f"(default {d.label_smoothing:g})")
    p.add_argument("--accumulate", type=int, default=d.accumulate, help="batches per optimizer step (default 1)")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction, help=f"held out per class (default {d.val_fraction:g})")
    p.add_argument("--clip", type=float, default=d.clip, help=f"gradient norm clip (default {d.clip:g})")
    p.add_argument("--restart-epochs", type=int, default=d.restart_epochs, help=f"cosine warm-restart period (default {d.restart_epochs})")
    p.add_argument("--seed", type=int, default=d.seed, help="(default 0)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no flips, colour jitter or affine changes")
    p.add_argument("--class-weights", choices=("inverse", "sqrt", "none"), default=d.class_weights,
                   help="loss weight of each class: inverse of its count, its square root, or equal (default inverse)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes decoding images ahead of the model (default: cores - 1, at most 4; 0 = none)")
    p.add_argument("--resume", action="store_true", help="continue from FOLDER/last")
    p.add_argument("--json", action="store_true", help="print the run's figures as JSON")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    _common(p)
    return p


def _models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-stream models", description="Manage model files.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = sub.add_parser("pull", help="download the detector and classifier ahead of time (for air-gapped use)",
                          description="Download MediaPipe's face detector into the cache and the classifier into the Hugging Face cache.")
    pull.add_argument("--force", action="store_true", help="download the detector again even if cached")
    pull.add_argument("--config", metavar="PATH", help="settings file naming the classifier")
    pull.add_argument("--model", help=f"classifier hub id (default {DEFAULT_MODEL})")
    pull.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _config_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-stream config",
                                description="Print the effective settings (defaults, --config file, flags) as TOML.")
    _common(p)
    return p


def _cpu_only(cfg: Any) -> bool:
    from fer_stream.model.devices import resolve_device

    return resolve_device(cfg.classifier.device).type == "cpu"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {key: getattr(args, dest) for dest, key in _OVERRIDES.items() if getattr(args, dest, None) is not None}
    sources = getattr(args, "source", None)
    if sources:
        named = [_named_source(text, n) for n, text in enumerate(sources, 1)]
        if len(named) == 1 and named[0][0] is None:
            out["source.input"] = named[0][1]
        elif len(named) == 1:
            out["source.id"], out["source.input"] = named[0]
        else:
            ids = [sid or f"cam{n}" for n, (sid, _) in enumerate(named, 1)]
            if len(set(ids)) != len(ids):
                raise ConfigError(f"--source ids must differ; got {', '.join(ids)}")
            out["sources"] = [(sid, spec) for sid, (_, spec) in zip(ids, named)]
    return out


def _named_source(text: str, n: int) -> tuple[str | None, str]:
    """``door=rtsp://...`` -> ("door", "rtsp://..."); a plain source has no name."""
    from fer_stream.config import valid_id

    name, sep, rest = text.partition("=")
    if sep and valid_id(name) and not Path(text).exists():
        return name, rest
    return None, text


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(format="fer-stream: %(levelname)s: %(message)s", stream=sys.stderr,
                        level=logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.addLevelName(logging.INFO, "info")
    logging.addLevelName(logging.DEBUG, "debug")
    if not debug:
        for noisy in ("libav", "transformers", "httpx", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fer-stream`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else "run"
    if argv and argv[0] in COMMANDS:
        argv = argv[1:]
    parser = {"run": _run_parser, "batch": _batch_parser, "fleet": _fleet_parser, "image": _image_parser, "bench": _bench_parser, "parity": _parity_parser,
              "eval": _eval_parser, "export": _export_parser, "train": _train_parser, "models": _models_parser,
              "config": _config_parser}[command]()
    args = parser.parse_args(argv)
    debug = bool(args.debug or os.environ.get("FER_STREAM_DEBUG"))
    _setup_logging(debug)
    try:
        cfg = load_config(getattr(args, "config", None), _overrides(args))
        if command == "run":
            from fer_stream.commands.run import run_stream

            return run_stream(cfg)
        if command == "batch":
            from fer_stream.commands.batch import run_batch

            return run_batch(cfg, args.inputs, args.out, jobs=args.jobs, force=args.force, retry_failed=args.retry_failed,
                             video=args.video, ray=args.ray)
        if command == "fleet":
            from fer_stream.commands.cluster import run_fleet

            return run_fleet(args.groups, args.ray)
        if command == "image":
            from fer_stream.commands.image import classify_images

            return classify_images(cfg, args.images, args.dir, detect=args.detect, as_json=args.json)
        if command == "bench" and args.detection:
            from fer_stream.commands.detection_bench import run_detection_bench

            return run_detection_bench(cfg, args.video, kinds=args.detectors, canvases=args.canvases, as_json=args.json)
        if command == "bench":
            from fer_stream.commands.bench import run_bench

            if len(args.video) > 1:
                raise ConfigError("bench takes one --video (several only with --detection)")

            if cfg.classifier.backend == "onnxruntime":
                precisions = ["fp32"]  # the exported model
            else:
                precisions = args.precisions or (["fp32", "int8"] if _cpu_only(cfg) else ["fp32", "fp16", "bf16"])
            return run_bench(
                cfg, args.video[0], as_json=args.json, precisions=precisions, devices=args.devices, batches=args.batches, frames=args.frames,
                naive_frames=args.naive_frames, live_seconds=args.live_seconds, images=args.images, min_time=args.min_time,
            )
        if command == "parity":
            from fer_stream.commands.parity import run_parity

            if args.count < 1:
                raise ConfigError("--count must be at least 1")
            return run_parity(cfg, device=cfg.classifier.device, precision=cfg.classifier.precision, images=args.images,
                              count=args.count, min_cosine=args.min_cosine, min_top1=args.min_top1, as_json=args.json)
        if command == "eval":
            from fer_stream.commands.evaluate import run_eval

            return run_eval(cfg, args.data, out=args.out, as_json=args.json, only=args.only)
        if command == "export":
            from fer_stream.commands.export import export_onnx
            from fer_stream.io.sinks import writable_path

            if not args.out.lower().endswith(".onnx"):
                raise ConfigError(f"export file '{args.out}' must end in .onnx")
            writable_path(args.out)
            result = export_onnx(cfg.classifier.model, args.out, opset=args.opset, tolerance=args.tolerance)
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                print(f"wrote {result['path']} ({result['size_mb']} MB, opset {result['opset']}, dynamic batch); "
                      f"largest difference from PyTorch on {result['images']} images: {result['max_abs_diff']:.2e} "
                      f"(probabilities), {result['max_abs_diff_logits']:.2e} (logits); top-1 agreement "
                      f"{result['top1_agreement']:.0%}")
            return 0
        if command == "train":
            from fer_stream.commands.train import Recipe, run_train

            recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                            label_smoothing=args.label_smoothing, accumulate=args.accumulate, val_fraction=args.val_fraction,
                            clip=args.clip, restart_epochs=args.restart_epochs, seed=args.seed, augment=args.augment,
                            class_weights=args.class_weights)
            if min(recipe.epochs, recipe.batch_size, recipe.accumulate, recipe.restart_epochs) < 1 or not 0 <= recipe.val_fraction < 1:
                raise ConfigError("--epochs, --batch-size, --accumulate and --restart-epochs must be at least 1, --val-fraction in [0, 1)")
            if args.workers is not None and args.workers < 0:
                raise ConfigError("--workers must be 0 or more")
            return run_train(cfg, args.data, base=cfg.classifier.model, out=args.out, recipe=recipe, resume=args.resume,
                             as_json=args.json, workers=args.workers)
        if command == "models":
            from fer_stream.commands.pull import pull_models

            return pull_models(cfg, force=args.force)
        from fer_stream.config import render

        sys.stdout.write(render(cfg))
        return 0
    except FerStreamError as e:
        if debug:
            logging.getLogger("fer_stream").exception("traceback")
        print(f"fer-stream: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fer-stream: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: still one line unless debugging
        if debug:
            raise
        print(f"fer-stream: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
