"""The run: build the frames once, put every mode's detector through them, tally what each found.

Three sets of frames per resolution (720p, 1080p):

- ``scenes``: still canvases with faces of 16-300 px (:mod:`.scenes`), each an unrelated picture
  (a following detector forgets its faces before each);
- ``negatives``: hard-negative clips, no face in any frame (:mod:`.negatives`);
- ``sequences``: clips of moving faces (:mod:`.sequences`).

Clips are made one at a time and each mode's detector runs through a whole clip before the next
mode (its own loop, as in a video), forgetting what it followed first; the first frame a mode
sees at a resolution is a warm-up, not timed. Frames/s counts the time in ``detect`` only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np

from fer_stream.config import Config
from fer_stream.errors import SourceError, counted
from fer_stream.model.detector import Detector
from fer_stream.model.mesh import MeshDetector

from .footage import FaceFinder, sample_shots
from .modes import LandmarkClock, Mode, open_mode
from .motion import Clip, render
from .negatives import NEGATIVE_FRAMES, negative_clips
from .pieces import backgrounds, hard_negatives, heads
from .scenes import CANVASES, Scene, make_scenes
from .scoring import MATCH_IOU, NO_BOXES, SIZES, Tally, bucket_names, face_boxes
from .sequences import face_sequences

SECTIONS = ("scenes", "negatives", "sequences")
Opener = Callable[[Mode], tuple[Detector, LandmarkClock | None]]


def scene_clips(scenes: Sequence[Scene]) -> list[Clip]:
    """The scenes as one clip of unrelated pictures per resolution."""
    out = []
    for resolution in CANVASES:
        mine = [s for s in scenes if s.resolution == resolution]
        if mine:
            out.append(Clip(resolution, [s.image for s in mine], [s.boxes for s in mine], [NO_BOXES] * len(mine), moving=False))
    return out


def run_clip(detector: Detector, clip: Clip, tally: Tally) -> None:
    """Detect in every frame of ``clip`` in order and tally it (a still clip: each frame afresh)."""
    detector.reset()
    scans = detector.scans if isinstance(detector, MeshDetector) else 0
    for image, truth, ignore in zip(clip.frames, clip.truth, clip.ignore):
        if not clip.moving:
            detector.reset()
        started = time.perf_counter()
        faces = detector.detect(image)
        tally.add(truth, face_boxes(faces), time.perf_counter() - started, ignore)
        tally.rejected += len(detector.rejected)
    if isinstance(detector, MeshDetector):
        tally.scans = (tally.scans or 0) + detector.scans - scans


def evaluate_kind(detector: Detector, scenes: Sequence[Scene]) -> dict[str, Any]:
    """One detector's figures on still scenes, per resolution (recall by face height, false boxes, frames/s)."""
    out: dict[str, Any] = {}
    for clip in scene_clips(scenes):
        detector.detect(clip.frames[0])  # warm-up
        tally = Tally()
        run_clip(detector, clip, tally)
        out[clip.resolution] = tally.figures()
    return out


class Runner:
    """Every mode's detector, open, and its tallies per resolution and set of frames."""

    def __init__(self, detectors: dict[str, Detector]) -> None:
        self.detectors = detectors
        self.tallies = {name: {res: {s: Tally() for s in SECTIONS} for res in CANVASES} for name in detectors}
        self.data = {s: {res: {"clips": 0, "frames": 0, "faces": 0, "ignored": 0} for res in CANVASES} for s in SECTIONS}
        self._warm: set[tuple[str, tuple[int, ...]]] = set()

    def run(self, section: str, clips: Iterable[Clip]) -> None:
        for clip in clips:
            d = self.data[section][clip.resolution]
            d["clips"] += 1
            d["frames"] += len(clip.frames)
            d["faces"] += sum(len(t) for t in clip.truth)
            d["ignored"] += sum(len(t) for t in clip.ignore)
            for name, detector in self.detectors.items():
                shape = tuple(np.shape(clip.frames[0]))
                if (name, shape) not in self._warm:
                    detector.reset()
                    detector.detect(clip.frames[0])
                    self._warm.add((name, shape))
                run_clip(detector, clip, self.tallies[name][clip.resolution][section])


def detection_benchmark(
    cfg: Config,
    videos: Sequence[str],
    *,
    modes: Sequence[Mode],
    images: Sequence[str] = (),
    per_video: int = 12,
    canvases_per_size: int = 3,
    sequences: int = 3,
    sequence_frames: int = 30,
    negatives: int = 8,
    seed: int = 0,
    opener: Opener | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Build the frames from ``videos`` (and face-free ``images``) and measure each mode on them."""
    started = time.perf_counter()
    log("finding every face in the videos' frames")
    with FaceFinder(cfg) as finder:
        shots = sample_shots(videos, (), finder, per_video)
        image_shots = sample_shots((), images, finder, per_video)
    rng = random.Random(seed)
    head_patches, background_pieces = heads(shots), backgrounds(shots, rng)
    if not head_patches or not background_pieces:
        raise SourceError("the detection benchmark needs videos in which the short-range model finds one clear face")
    hard = hard_negatives([*shots, *image_shots], rng)
    if negatives and not hard.pieces:
        raise SourceError("no hard negatives: every picture is a close-up; add videos with more than a face in them")
    scenes = make_scenes(head_patches, background_pieces, canvases_per_size=canvases_per_size, seed=seed) if canvases_per_size else []
    log(
        f"{counted(len(head_patches), 'reference face')}, {counted(len(hard.pieces), 'hard-negative piece')} "
        f"from {counted(len(hard.pictures), 'picture')} with faces covered; built in {time.perf_counter() - started:.0f} s"
    )
    open_one = opener or (lambda mode: open_mode(cfg, mode))
    with ExitStack() as stack:
        detectors: dict[str, Detector] = {}
        clocks: dict[str, LandmarkClock | None] = {}
        for mode in modes:
            detector, clocks[mode.name] = open_one(mode)
            detectors[mode.name] = stack.enter_context(detector)
        runner = Runner(detectors)
        log(f"{len(modes)} modes on {counted(len(scenes), 'still frame')}")
        runner.run("scenes", scene_clips(scenes))
        for resolution in CANVASES:
            log(f"{resolution}: {counted(negatives, 'hard-negative clip')} of {NEGATIVE_FRAMES} frames")
            runner.run("negatives", map(render, negative_clips(hard, background_pieces, resolution=resolution, count=negatives, rng=rng)))
            log(f"{resolution}: {counted(sequences, 'sequence')} of {sequence_frames} frames")
            takes = face_sequences(head_patches, background_pieces, resolution=resolution, count=sequences, frames=sequence_frames, rng=rng)
            runner.run("sequences", map(render, takes))
    data = {"reference_faces": len(head_patches), "covered_pictures": len(hard.pictures), "hard_negative_pieces": len(hard.pieces)}
    return _report(cfg, videos, images, modes, runner, clocks, data)


def _report(
    cfg: Config,
    videos: Sequence[str],
    images: Sequence[str],
    modes: Sequence[Mode],
    runner: Runner,
    clocks: dict[str, LandmarkClock | None],
    data: dict[str, int],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in modes:
        entry: dict[str, Any] = {"kind": mode.kind, "verify": mode.verify, "follow": mode.follow}
        for res in CANVASES:
            entry[res] = {s: t.figures() for s, t in runner.tallies[mode.name][res].items() if t.frames}
        clock = clocks[mode.name]
        if clock is not None:
            entry["landmarks"] = clock.figures()
        out[mode.name] = entry
    timed = [c for c in clocks.values() if c is not None]
    crops, seconds = sum(c.crops for c in timed), sum(c.seconds for c in timed)
    d = cfg.detector
    return {
        "videos": list(videos),
        "negative_images": list(images),
        "match_iou": MATCH_IOU,
        "sizes": list(SIZES),
        "buckets": bucket_names(),
        "data": {**data, **runner.data},
        "modes": out,
        "landmarks": {
            "threads": d.threads,
            "runs_on": f"LiteRT, CPU, {counted(d.threads, 'thread')} (detector.threads)",
            "crops": crops,
            "ms_per_face": round(1e3 * seconds / crops, 3) if crops else None,
        },
        "settings": {
            "min_confidence": d.min_confidence,
            "full_min_confidence": d.full_min_confidence,
            "tile_size": d.tile_size,
            "tile_overlap": d.tile_overlap,
            "min_presence": d.min_presence,
            "rescan_every": d.rescan_every,
            "threads": d.threads,
        },
    }
