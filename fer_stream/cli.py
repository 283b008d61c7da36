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
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fer_stream import __version__
from fer_stream.config import PRECISIONS, Config, check_unique_ids, default_id, load_config
from fer_stream.errors import ConfigError, FerStreamError, printable

# Settings every model-using command takes as flags (see config.FLAGS).
MODEL_SETTINGS = (
    "classifier.model",
    "classifier.device",
    "classifier.max_batch",
    "classifier.precision",
    "classifier.backend",
    "classifier.threads",
    "classifier.threshold",
    "detector.kind",
    "detector.model",
    "detector.full_model",
    "detector.tile_size",
    "quality.min_face_px",
    "quality.min_sharpness",
    "detector.min_confidence",
    "detector.crop_margin",
)
_DEST = "setting:"  # argparse destination prefix of a flag that sets "table.key"


def _setting_flags(p: argparse.ArgumentParser | Any, names: Sequence[str]) -> None:
    """Add the flags of ``names`` ("table.key"), with the schema's help, default and choices."""
    from fer_stream.config import FLAGS, setting

    for dotted in names:
        field = setting(dotted)
        spec = FLAGS[dotted].split(" ", 1)
        flags, metavar = spec[0].split("/"), (spec[1] if len(spec) > 1 else None)
        help_text = field.metadata.get("flag_help") or field.metadata["help"].replace(' ("" = none)', "").replace(' ("" = off)', "")
        default = field.default
        kw: dict[str, Any] = {"dest": _DEST + dotted, "default": None}
        if len(flags) == 2 and flags[1] == "--no-" + flags[0].removeprefix("--"):  # --x/--no-x: either way
            kw["action"] = argparse.BooleanOptionalAction
            flags = flags[:1]
        elif isinstance(default, bool):  # the flag turns the setting away from its default
            kw["action"] = "store_false" if default else "store_true"
            if default:  # says what it turns off, in its own words
                help_text = field.metadata.get("off") or ""
                if not help_text:
                    raise ValueError(f"setting {dotted} needs off= help for its flag {spec[0]}")
        else:
            kw["type"] = type(default) if default is not None else str
            choices = getattr(field.metadata["check"], "choices", None)
            if choices:
                kw["choices"] = choices
            elif metavar:
                kw["metavar"] = metavar
            if default not in ("", None):
                help_text += f" (default {default})"
        p.add_argument(*flags, help=help_text, **kw)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and settings")
    g.add_argument("--config", metavar="PATH", help="settings file (TOML); flags override it")
    _setting_flags(g, MODEL_SETTINGS)
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
    p.add_argument(
        "--source",
        metavar="[ID=]SRC",
        action="append",
        help="webcam index (0), video file, or URL (rtsp://...); repeat for several cameras, optionally named: --source door=rtsp://...",
    )
    _setting_flags(
        p,
        (
            "serve.address",
            "serve.token",
            "output.segment_seconds",
            "source.max_reconnects",
            "source.stall_timeout_s",
            "source.transport",
            "output.video",
            "output.events",
            "output.summary",
            "output.report",
            "output.timeline",
            "output.timeline_seconds",
            "output.overwrite",
            "source.max_frames",
            "source.max_pixels",
            "source.live",
            "classifier.classify_every",
            "classifier.live_max_hz",
            "tracking.smoothing",
            "display.enabled",
            "output.progress",
            "classifier.batch_wait_ms",
            "classifier.warmup",
            "output.audio",
            "output.crf",
            "output.preset",
        ),
    )
    _common(p)
    return p


def _batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream batch",
        description="Analyse many videos: each gets OUT/<name>/ with annotated.mp4, events.jsonl, summary.json, "
        "report.html and timeline.csv; OUT/manifest.jsonl records every attempt. A re-run skips finished, "
        "unchanged videos and runs new, changed, failed and interrupted ones.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, folders (searched recursively), glob patterns ('talks/**/*.mp4') or .txt lists of paths/URLs",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="results folder (created if missing)")
    p.add_argument(
        "--jobs", type=int, default=2, metavar="N", help="videos decoded and detected at once, all feeding one classifier (default 2)"
    )
    p.add_argument("--force", action="store_true", help="run every input again, finished or not")
    p.add_argument("--retry-failed", action="store_true", help="run only the inputs whose last attempt failed")
    p.add_argument("--no-video", dest="video", action="store_false", help="no annotated MP4s (events, summaries and reports only)")
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run on Ray (pip install 'fer-stream[ray]'): auto = a Ray of this machine's own (or the cluster "
        "$RAY_ADDRESS names), or a cluster's HOST:PORT or ray://HOST:10001",
    )
    _setting_flags(
        p,
        (
            "source.max_frames",
            "classifier.classify_every",
            "tracking.smoothing",
            "output.timeline_seconds",
            "classifier.batch_wait_ms",
            "classifier.warmup",
            "output.audio",
            "output.crf",
            "output.preset",
            "output.progress",
        ),
    )
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
    p.add_argument(
        "--ray",
        default="auto",
        metavar="auto|ADDRESS",
        help="the cluster: auto (a Ray of this machine's own, or the one $RAY_ADDRESS names), HOST:PORT or ray://HOST:10001",
    )
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
    p.add_argument(
        "--no-detect",
        dest="detect",
        action="store_false",
        help="no face detection: classify each whole image as one face (for ready-cropped faces)",
    )
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
    p.add_argument(
        "--video",
        required=True,
        action="append",
        metavar="FILE",
        help="a video with faces (its own frame rate is the live camera's); --detection takes several",
    )
    p.add_argument(
        "--detection",
        action="store_true",
        help="benchmark the face detectors instead: recall by face height (16-300 px), false positives, frames/s",
    )
    p.add_argument(
        "--detectors",
        type=_csv(str, ("short", "full", "tiled")),
        default=["short", "full", "tiled"],
        metavar="LIST",
        help="--detection: the kinds to compare (default short,full,tiled)",
    )
    p.add_argument("--canvases", type=int, default=3, metavar="N", help="--detection: frames per face height and resolution (default 3)")
    p.add_argument(
        "--images",
        metavar="DIR",
        help="face images (subfolders searched) for each precision's agreement with fp32 (default: the video's face crops)",
    )
    p.add_argument(
        "--precisions",
        type=_csv(str, PRECISIONS),
        metavar="LIST",
        help="classifier precisions to measure (default fp32,int8 on the CPU; fp32,fp16,bf16 elsewhere)",
    )
    p.add_argument(
        "--devices",
        type=_csv(str),
        metavar="LIST",
        help="devices for the classifier table, e.g. cpu,cuda (default: --device); int8 runs on the CPU only",
    )
    p.add_argument("--batches", type=_csv(int), default=[1, 8], metavar="LIST", help="classifier batch sizes (default 1,8)")
    p.add_argument("--frames", type=int, default=96, metavar="N", help="frames for decoder, detector and exact pipeline (default 96)")
    p.add_argument("--naive-frames", type=int, default=24, metavar="N", help="frames for the naive loop (default 24)")
    p.add_argument("--live-seconds", type=float, default=20.0, metavar="S", help="longest live run (default 20)")
    p.add_argument("--min-time", type=float, default=3.0, metavar="S", help="least time per classifier measurement (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _setting_flags(p, ("classifier.live_max_hz", "classifier.classify_every"))
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
    p.add_argument(
        "--only", metavar="LIST.txt", help="just the images listed (CLASS/FILE paths relative to DIR), e.g. a trained model's heldout.txt"
    )
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
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        metavar="D",
        help="largest allowed difference of the probabilities against PyTorch, above 0 (default 0.001)",
    )
    _setting_flags(p, ("output.overwrite",))
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
    p.add_argument(
        "--class-weights",
        choices=("inverse", "sqrt", "none"),
        default=d.class_weights,
        help="loss weight of each class: inverse of its count, its square root, or equal (default inverse)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes decoding images ahead of the model (default: cores - 1, at most 4; 0 = none)",
    )
    p.add_argument("--resume", action="store_true", help="continue from FOLDER/last")
    p.add_argument("--json", action="store_true", help="print the run's figures as JSON")
    p.add_argument("-q", "--quiet", dest="progress", action="store_false", default=None, help="no progress bar")
    _common(p)
    return p


def _models_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-stream models", description="Manage model files.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = sub.add_parser(
        "pull",
        help="download the detector and classifier ahead of time (for air-gapped use)",
        description="Download MediaPipe's face detector into the cache and the classifier into the Hugging Face cache.",
    )
    pull.add_argument("--force", action="store_true", help="download the detector again even if cached")
    pull.add_argument("--config", metavar="PATH", help="settings file naming the classifier")
    _setting_flags(pull, ("classifier.model",))
    pull.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _config_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream config", description="Print the effective settings (defaults, --config file, flags) as TOML."
    )
    _common(p)
    return p


def _cpu_only(cfg: Any) -> bool:
    from fer_stream.model.devices import resolve_device

    return resolve_device(cfg.classifier.device).type == "cpu"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {dest[len(_DEST) :]: value for dest, value in vars(args).items() if dest.startswith(_DEST) and value is not None}
    sources = getattr(args, "source", None)
    if sources:
        named = [_named_source(text, n) for n, text in enumerate(sources, 1)]
        if len(named) == 1 and named[0][0] is None:
            out["source.input"] = named[0][1]
        elif len(named) == 1:
            out["source.id"], out["source.input"] = named[0]
        else:
            ids = [sid or default_id(n) for n, (sid, _) in enumerate(named, 1)]
            check_unique_ids(ids, "--source")
            out["sources"] = [(sid, spec) for sid, (_, spec) in zip(ids, named)]
    return out


def _named_source(text: str, n: int) -> tuple[str | None, str]:
    """``door=rtsp://...`` -> ("door", "rtsp://..."); a plain source has no name."""
    from fer_stream.config import valid_id

    name, sep, rest = text.partition("=")
    if sep and valid_id(name) and not Path(text).exists():
        return name, rest
    return None, text


class _OneLineFormatter(logging.Formatter):
    """Log messages with control characters escaped: a file or URL named in one cannot forge lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("fer-stream: %(levelname)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.DEBUG if debug else logging.WARNING)
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")
    logging.addLevelName(logging.INFO, "info")
    logging.addLevelName(logging.DEBUG, "debug")
    if not debug:
        for noisy in ("libav", "transformers", "httpx", "huggingface_hub"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def _run(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.run import run_stream

    return run_stream(cfg)


def _batch(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.batch import run_batch

    return run_batch(
        cfg, args.inputs, args.out, jobs=args.jobs, force=args.force, retry_failed=args.retry_failed, video=args.video, ray=args.ray
    )


def _fleet(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.cluster import run_fleet

    return run_fleet(args.groups, args.ray)


def _image(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.image import classify_images

    return classify_images(cfg, args.images, args.dir, detect=args.detect, as_json=args.json)


def _bench(cfg: Config, args: argparse.Namespace) -> int:
    if args.detection:
        from fer_stream.commands.detection_bench import run_detection_bench

        return run_detection_bench(cfg, args.video, kinds=args.detectors, canvases=args.canvases, as_json=args.json)
    from fer_stream.commands.bench import run_bench

    if len(args.video) > 1:
        raise ConfigError("bench takes one --video (several only with --detection)")
    if cfg.classifier.backend == "onnxruntime":
        precisions = ["fp32"]  # the exported model
    else:
        precisions = args.precisions or (["fp32", "int8"] if _cpu_only(cfg) else ["fp32", "fp16", "bf16"])
    return run_bench(
        cfg,
        args.video[0],
        as_json=args.json,
        precisions=precisions,
        devices=args.devices,
        batches=args.batches,
        frames=args.frames,
        naive_frames=args.naive_frames,
        live_seconds=args.live_seconds,
        images=args.images,
        min_time=args.min_time,
    )


def _parity(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.parity import run_parity

    if args.count < 1:
        raise ConfigError("--count must be at least 1")
    return run_parity(
        cfg,
        device=cfg.classifier.device,
        precision=cfg.classifier.precision,
        images=args.images,
        count=args.count,
        min_cosine=args.min_cosine,
        min_top1=args.min_top1,
        as_json=args.json,
    )


def _eval(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.evaluate import run_eval

    return run_eval(cfg, args.data, out=args.out, as_json=args.json, only=args.only)


def _export(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.export import run_export

    return run_export(cfg, args.out, opset=args.opset, tolerance=args.tolerance, as_json=args.json)


def _train(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.train import Recipe, run_train

    names = (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "label_smoothing",
        "accumulate",
        "val_fraction",
        "clip",
        "restart_epochs",
        "seed",
        "augment",
        "class_weights",
    )
    recipe = Recipe(**{name: getattr(args, name) for name in names})
    return run_train(
        cfg, args.data, base=cfg.classifier.model, out=args.out, recipe=recipe, resume=args.resume, as_json=args.json, workers=args.workers
    )


def _models(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.commands.pull import pull_models

    return pull_models(cfg, force=args.force)


def _config(cfg: Config, args: argparse.Namespace) -> int:
    from fer_stream.config import render

    sys.stdout.write(render(cfg))
    return 0


# command -> (its parser, what it runs)
_COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[Config, argparse.Namespace], int]]] = {
    "run": (_run_parser, _run),
    "batch": (_batch_parser, _batch),
    "fleet": (_fleet_parser, _fleet),
    "image": (_image_parser, _image),
    "bench": (_bench_parser, _bench),
    "parity": (_parity_parser, _parity),
    "eval": (_eval_parser, _eval),
    "export": (_export_parser, _export),
    "train": (_train_parser, _train),
    "models": (_models_parser, _models),
    "config": (_config_parser, _config),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fer-stream`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in _COMMANDS else "run"
    if argv and argv[0] in _COMMANDS:
        argv = argv[1:]
    make_parser, handler = _COMMANDS[command]
    args = make_parser().parse_args(argv)
    debug = bool(args.debug or os.environ.get("FER_STREAM_DEBUG"))
    _setup_logging(debug)
    try:
        return handler(load_config(getattr(args, "config", None), _overrides(args)), args)
    except FerStreamError as e:
        if debug:
            logging.getLogger("fer_stream").exception("traceback")
        print(f"fer-stream: error: {printable(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fer-stream: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not a user error: still one line unless debugging
        if debug:
            raise
        what = printable(f"{type(e).__name__}: {e}")
        print(f"fer-stream: internal error: {what} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
