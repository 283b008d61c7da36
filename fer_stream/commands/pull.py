"""``fer-stream models pull``: both detector models, the face landmark model and the classifier, fetched for offline use."""

from __future__ import annotations

import argparse
import os
import time

from fer_stream.commands.options import setting_flags
from fer_stream.config import Config
from fer_stream.model.detector_files import DETECTOR_MODELS, cached_detector_path, resolve_detector_models
from fer_stream.model.hub import pull_classifier


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-stream models", description="Manage model files.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = sub.add_parser(
        "pull",
        help="download the detector and classifier ahead of time (for air-gapped use)",
        description="Download MediaPipe's face detectors and landmark model into the cache, the classifier into the Hugging Face cache.",
    )
    pull.add_argument("--force", action="store_true", help="download the detector again even if cached")
    pull.add_argument("--config", metavar="PATH", help="settings file naming the classifier")
    setting_flags(pull, ("classifier.model",))
    pull.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return pull_models(cfg, force=args.force)


def pull_models(cfg: Config, *, force: bool) -> int:
    """Both detector models and the landmark model into the cache (unless $FER_STREAM_DETECTOR_MODEL /
    $FER_STREAM_FULL_RANGE_MODEL / $FER_STREAM_LANDMARK_MODEL name local copies), then the classifier
    into the Hugging Face cache."""
    given = {kind: os.environ.get(m.env_path) for kind, m in DETECTOR_MODELS.items()}
    cached = {kind: cached_detector_path(kind).is_file() and not force for kind in DETECTOR_MODELS}
    t = time.monotonic()
    paths = resolve_detector_models(dict.fromkeys(DETECTOR_MODELS), pulling=True, force=force)  # every failure in one line
    took = time.monotonic() - t
    for kind, path in paths.items():
        label = DETECTOR_MODELS[kind].label or f"detector ({kind}-range)"
        if given[kind]:
            print(f"{label}: using {path} (from ${DETECTOR_MODELS[kind].env_path})")
        elif cached[kind]:
            print(f"{label}: already cached at {path}")
        else:
            print(f"{label}: downloaded to {path} ({path.stat().st_size / 1e6:.1f} MB, {took:.1f} s in all)")
    folder = pull_classifier(cfg.classifier.model)
    print(f"classifier: {cfg.classifier.model} ready at {folder}")
    return 0
