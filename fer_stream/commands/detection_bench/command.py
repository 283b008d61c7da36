"""``fer-stream bench --detection``: build the frames, run every mode, print the table (or JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from fer_stream.config import Config
from fer_stream.io.sources import AVSource

from .benchmark import detection_benchmark
from .footage import image_files
from .modes import VARIANTS, modes
from .report import format_report


def run_detection_bench(
    cfg: Config,
    videos: Sequence[str],
    *,
    kinds: Sequence[str],
    variants: Sequence[str] = VARIANTS,
    canvases: int = 3,
    sequences: int = 3,
    sequence_frames: int = 30,
    negatives: int = 8,
    images: Sequence[str] = (),
    as_json: bool = False,
) -> int:
    """The ``bench --detection`` command."""
    for v in videos:
        AVSource(v).close()  # a missing or broken video is one clear error before any work
    image_files(images)  # so is a missing image folder
    report = detection_benchmark(
        cfg,
        videos,
        modes=modes(kinds, variants),
        images=images,
        canvases_per_size=canvases,
        sequences=sequences,
        sequence_frames=sequence_frames,
        negatives=negatives,
        log=lambda m: print(f"bench: {m} ...", file=sys.stderr, flush=True),
    )
    print(json.dumps(report, indent=2) if as_json else format_report(report), flush=True)
    return 0
