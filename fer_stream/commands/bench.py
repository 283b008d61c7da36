"""``fer-stream bench``: how fast each part runs on this machine, and the whole against a naive loop.

One run measures, on the user's own video and model:

* the decoder's and the detector's frames/s;
* the classifier's faces/s for each precision and batch size (preprocess + forward + postprocess
  on the video's real face crops);
* each precision's agreement with fp32 (top-1 agreement, mean cosine similarity, mean absolute
  error of the probabilities) on a folder of face images (``--images``) or the video's crops;
* the pipeline in exact mode (every face of every frame, MP4 written) and in live mode (the
  video played at its own frame rate as a camera): frames/s, faces/s, capture-to-output latency
  p50/p95/p99, and, live, each track's re-classification rate;
* the naive loop a user would write first (decode -> detect -> classify each crop alone -> draw ->
  write, one thread) as the reference.

>>> from fer_stream.commands.bench import run_bench                                    # doctest: +SKIP
>>> report = run_bench(load_config(None, {"classifier.model": "vit-b"}), "talk.mp4")  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fer_stream.build import auto_threads, make_classifier, make_detector, make_pipeline
from fer_stream.commands.detection_bench import VARIANTS, run_detection_bench
from fer_stream.commands.options import csv_list, model_flags, setting_flags
from fer_stream.commands.parity import agreement
from fer_stream.config import PRECISIONS, Config
from fer_stream.errors import ConfigError, SourceError, counted, printable
from fer_stream.frames import FrameResult
from fer_stream.io.images import find_images, read_image
from fer_stream.io.sinks import VideoSink
from fer_stream.io.sources import AVSource
from fer_stream.stream.overlay import Overlay
from fer_stream.stream.stats import LatencyStats


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream bench",
        description="Measure decoder, detector, classifier (per precision and batch size) and the whole pipeline "
        "(exact and live) on a video, against the naive single-thread loop. With --detection: recall and "
        "false boxes of each face detector mode by face size, on 720p and 1080p still frames, hard negatives and moving "
        "sequences built from the videos, and each mode's frames/s.",
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
        type=csv_list(str, ("short", "full", "tiled")),
        default=["short", "full", "tiled"],
        metavar="LIST",
        help="--detection: the kinds to compare (default short,full,tiled)",
    )
    p.add_argument(
        "--canvases", type=int, default=3, metavar="N", help="--detection: still frames per face size and resolution (default 3)"
    )
    p.add_argument(
        "--modes",
        type=csv_list(str, VARIANTS),
        default=list(VARIANTS),
        metavar="LIST",
        help="--detection: how each kind runs: follow (the default detector: the face landmark model verifies every box "
        "and follows faces; shown as the kind's name), verify-only, plain (--no-verify) (default all three)",
    )
    p.add_argument("--sequences", type=int, default=3, metavar="N", help="--detection: clips of moving faces per resolution (default 3)")
    p.add_argument("--sequence-frames", type=int, default=30, metavar="N", help="--detection: frames per moving-face clip (default 30)")
    p.add_argument(
        "--negatives", type=int, default=8, metavar="N", help="--detection: face-free clips (10 frames each) per resolution (default 8)"
    )
    p.add_argument(
        "--negative-images",
        action="append",
        default=[],
        metavar="PATH",
        help="--detection: more pictures for the hard negatives (files or folders; any face in them is covered)",
    )
    p.add_argument(
        "--images",
        metavar="DIR",
        help="face images (subfolders searched) for each precision's agreement with fp32 (default: the video's face crops)",
    )
    p.add_argument(
        "--precisions",
        type=csv_list(str, PRECISIONS),
        metavar="LIST",
        help="classifier precisions to measure (default fp32,int8 on the CPU; fp32,fp16,bf16 elsewhere)",
    )
    p.add_argument(
        "--devices",
        type=csv_list(str),
        metavar="LIST",
        help="devices for the classifier table, e.g. cpu,cuda (default: --device); int8 runs on the CPU only",
    )
    p.add_argument("--batches", type=csv_list(int), default=[1, 8], metavar="LIST", help="classifier batch sizes (default 1,8)")
    p.add_argument("--frames", type=int, default=96, metavar="N", help="frames for decoder, detector and exact pipeline (default 96)")
    p.add_argument("--naive-frames", type=int, default=24, metavar="N", help="frames for the naive loop (default 24)")
    p.add_argument("--live-seconds", type=float, default=20.0, metavar="S", help="longest live run (default 20)")
    p.add_argument("--min-time", type=float, default=3.0, metavar="S", help="least time per classifier measurement (default 3)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    setting_flags(p, ("classifier.live_max_hz", "classifier.classify_every"))
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    if args.detection:
        return run_detection_bench(
            cfg,
            args.video,
            kinds=args.detectors,
            variants=args.modes,
            canvases=args.canvases,
            sequences=args.sequences,
            sequence_frames=args.sequence_frames,
            negatives=args.negatives,
            images=args.negative_images,
            as_json=args.json,
        )
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


def _cpu_only(cfg: Config) -> bool:
    from fer_stream.model.devices import resolve_device  # torch at its top

    return resolve_device(cfg.classifier.device).type == "cpu"


def _timed(fn: Callable[[], int], min_time: float, min_rounds: int = 2) -> float:
    """Items per second of ``fn`` (which returns how many items it handled), over at least ``min_time`` s."""
    items, rounds = 0, 0
    start = time.perf_counter()
    while rounds < min_rounds or time.perf_counter() - start < min_time:
        items += fn()
        rounds += 1
    return items / (time.perf_counter() - start)


class Bench:
    """The measurements of one ``fer-stream bench`` run; :meth:`run` fills :attr:`report`."""

    def __init__(
        self,
        cfg: Config,
        video: str,
        *,
        precisions: Sequence[str] = ("fp32", "int8"),
        devices: Sequence[str] | None = None,
        batches: Sequence[int] = (1, 8),
        frames: int = 96,
        naive_frames: int = 24,
        live_seconds: float = 20.0,
        images: str | None = None,
        min_time: float = 3.0,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.cfg = cfg
        self.video = video
        self.precisions = list(dict.fromkeys(precisions))
        self.devices = list(dict.fromkeys(devices or [cfg.classifier.device]))
        self.batches = sorted(set(batches))
        self.frames = frames
        self.naive_frames = naive_frames
        self.live_seconds = live_seconds
        self.images = images
        self.min_time = min_time
        self.log = log
        self.report: dict[str, Any] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="fer-stream-bench-")

    # -- building blocks ---------------------------------------------------------------------

    def _classifier(self, precision: str, threads: int | None, device: str | None = None) -> Any:
        return make_classifier(self.cfg, device=device, precision=precision, threads=threads or self._all_threads)

    def _detector(self) -> Any:
        return make_detector(self.cfg)

    def _video_sink(self, source: Any, name: str) -> Any:
        return VideoSink(
            Path(self._tmp.name) / name,
            width=source.width,
            height=source.height,
            fps=source.fps,
            time_base=None if source.live else source.time_base,
            crf=self.cfg.output.crf,
            preset=self.cfg.output.preset,
        )

    # -- sections ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        import torch  # seconds to import: only once a benchmark runs, not for ``fer-stream bench --help``

        self._all_threads = self.cfg.classifier.threads or torch.get_num_threads()
        with AVSource(self.video) as probe:
            info = {
                "path": self.video,
                "width": probe.width,
                "height": probe.height,
                "fps": round(probe.fps, 3),
                "frames": probe.frame_count,
            }
        self.report = {
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "torch_threads": self._all_threads,
            },
            "model": self.cfg.classifier.model,
            "video": info,
        }
        frames, crops = self._decode_and_detect()
        self._classifier_table(crops)
        self._agreement(crops)
        self._pipeline_exact()
        self._pipeline_live()
        self._naive()
        self._ratios()
        self._tmp.cleanup()
        return self.report

    def _decode_and_detect(self) -> tuple[list[Any], list[np.ndarray]]:
        self.log("decoder and detector")
        with AVSource(self.video) as src:
            start = time.perf_counter()
            frames = [f for _, f in zip(range(self.frames), src.frames())]
            decode_fps = len(frames) / (time.perf_counter() - start)
        if not frames:
            raise SourceError(f"'{self.video}' gave no frames")
        with self._detector() as det:
            start = time.perf_counter()
            found = [det.detect(f.image) for f in frames]
            detect_fps = len(frames) / (time.perf_counter() - start)
        crops = [face.crop for faces in found for face in faces]
        self.report["decoder"] = {"frames": len(frames), "fps": round(decode_fps, 2)}
        self.report["detector"] = {
            "frames": len(frames),
            "fps": round(detect_fps, 2),
            "faces_per_frame": round(len(crops) / len(frames), 3),
        }
        if not crops:
            first = counted(len(frames), "frame")
            raise SourceError(f"no face found in the first {first} of '{self.video}'; bench needs a video with faces")
        return frames, crops

    def _classifier_table(self, crops: list[np.ndarray]) -> None:
        from fer_stream.model.devices import resolve_device  # torch at its top

        rows = []
        combos = [
            (d, p) for d in self.devices for p in self.precisions if not (p == "int8" and resolve_device(d).type != "cpu")
        ]  # int8 is a CPU precision
        for device, precision in combos:
            clf = self._classifier(precision, None, device)
            clf.warmup()
            for batch in self.batches:
                self.log(f"classifier {precision} on {clf.device}, batch {batch}")
                chunk = [crops[i % len(crops)] for i in range(batch)]
                clf.max_batch = max(clf.max_batch, batch)

                def step() -> int:
                    clf.postprocess(clf.forward(clf.preprocess(chunk)))
                    return batch

                step()  # warm this shape
                rows.append(
                    {
                        "precision": precision,
                        "device": str(clf.device),
                        "batch": batch,
                        "faces_per_s": round(_timed(step, self.min_time), 3),
                    }
                )
        self.report["classifier"] = rows

    def _agreement(self, crops: list[np.ndarray]) -> None:
        from fer_stream.model.devices import resolve_device  # torch at its top

        on_cpu = resolve_device(self.cfg.classifier.device).type == "cpu"
        others = [p for p in self.precisions if p != "fp32" and (on_cpu or p != "int8")]
        if not others:
            return
        if self.images:
            files = find_images(self.images)
            inputs: list[Any] = [read_image(f) for f in files]
            where = self.images
        else:
            inputs, where = crops, f"{len(crops)} face crops of the video"
        self.log(f"agreement with fp32 on {counted(len(inputs), 'image')}")
        reference = self._probs("fp32", inputs)
        out = []
        for precision in others:
            figures = agreement(reference, self._probs(precision, inputs))
            out.append(
                {
                    "precision": precision,
                    "against": "fp32",
                    "images": len(inputs),
                    "on": where,
                    **{k: figures[k] for k in ("top1_agreement", "mean_cosine", "mae")},
                }
            )
        self.report["agreement"] = out

    def _probs(self, precision: str, images: list[Any]) -> np.ndarray:
        clf = self._classifier(precision, None)
        n = clf.max_batch
        return np.concatenate([clf.forward(clf.preprocess(images[i : i + n])) for i in range(0, len(images), n)])

    def _run_pipeline(self, live: bool) -> dict[str, Any]:
        c = self.cfg.classifier
        threads = c.threads or auto_threads(live)
        clf = self._classifier(c.precision, threads)
        src = AVSource(self.video, live=True if live else None)
        max_frames = round(src.fps * self.live_seconds) if live else self.frames
        with src, self._detector() as det, self._video_sink(src, f"{'live' if live else 'exact'}.mp4") as sink:
            pipeline = make_pipeline(self.cfg, src, clf, det, max_frames=max_frames, warmup=True)
            n = 0
            with pipeline as results:
                for result in results:
                    sink.write(result)
                    n += 1
            s = pipeline.stats
        elapsed = max(s.elapsed_s, 1e-9)
        out: dict[str, Any] = {
            "precision": c.precision,
            "threads": threads or self._all_threads,
            "frames_in": s.frames_in,
            "frames_out": n,
            "dropped": s.dropped,
            "fps": round(n / elapsed, 3),
            "faces_per_s": round(s.faces / elapsed, 3),
            "classified_per_s": round(s.classified / elapsed, 3),
            "mean_batch": round(s.mean_batch, 3),
            "latency_s": s.latency_s,
        }
        if live:
            out["source_fps"] = round(src.fps, 3)
            out["fps_ratio"] = round(out["fps"] / src.fps, 3)
            long = [t for t in s.tracks if t.duration_s >= 1.0]
            rates = [round(t.classified / t.duration_s, 3) for t in long]
            out["tracks"] = [dict(t.as_dict(), rate_hz=r) for t, r in zip(long, rates)]
            out["short_tracks"] = len(s.tracks) - len(long)
            out["min_track_rate_hz"] = min(rates) if rates else None
        return out

    def _pipeline_exact(self) -> None:
        self.log(f"pipeline, exact mode, {counted(self.frames, 'frame')}")
        self.report["pipeline"] = self._run_pipeline(live=False)

    def _pipeline_live(self) -> None:
        self.log(f"pipeline, live mode, up to {self.live_seconds:g} s at the video's own rate")
        self.report["live"] = self._run_pipeline(live=True)

    def _naive(self) -> None:
        self.log(f"naive single-thread loop, {counted(self.naive_frames, 'frame')}")
        clf = self._classifier(self.cfg.classifier.precision, None)
        clf.warmup()
        overlay = Overlay()
        latency = LatencyStats()
        n = faces_total = 0
        with AVSource(self.video) as src, self._detector() as det, self._video_sink(src, "naive.mp4") as sink:
            start = time.perf_counter()
            for frame in src.frames():
                faces = det.detect(frame.image)
                faces = [f.with_prediction(clf.predict([f.crop])[0]) for f in faces]
                sink.write(FrameResult(frame, tuple(faces), overlay.draw(frame.image, faces)))
                latency.add(time.monotonic() - frame.captured)
                n += 1
                faces_total += len(faces)
                if n >= self.naive_frames:
                    break
            elapsed = time.perf_counter() - start
        self.report["naive"] = {
            "precision": clf.precision,
            "frames": n,
            "fps": round(n / elapsed, 3),
            "faces_per_s": round(faces_total / elapsed, 3),
            "latency_s": latency.percentiles(),
        }

    def _ratios(self) -> None:
        r = self.report
        naive = r["naive"]["fps"] or 1e-9
        ratios = {
            "pipeline_vs_naive_fps": round(r["pipeline"]["fps"] / naive, 3),
            "live_vs_naive_fps": round(r["live"]["fps"] / naive, 3),
        }
        best: dict[tuple[str, str], float] = {}
        for row in r["classifier"]:
            key = (row["device"], row["precision"])
            best[key] = max(best.get(key, 0.0), row["faces_per_s"])
        devices = list(dict.fromkeys(d for d, _ in best))
        for (device, p), v in best.items():
            if p != "fp32" and best.get((device, "fp32")):
                suffix = "" if device == devices[0] else f"_{device}"
                ratios[f"{p}_vs_fp32_classifier{suffix}"] = round(v / best[(device, "fp32")], 3)
        r["ratios"] = ratios


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.0f} ms"


def format_report(r: dict[str, Any]) -> str:
    """The report as text for people."""
    v = r["video"]
    lines = [
        f"fer-stream bench: {r['model']} on {v['path']} ({v['width']}x{v['height']}, {v['fps']:g} fps)",
        f"machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, torch {r['machine']['torch']}",
        "",
        f"decoder   {r['decoder']['fps']:8.1f} frames/s",
        f"detector  {r['detector']['fps']:8.1f} frames/s ({r['detector']['faces_per_frame']:g} faces/frame)",
        "",
        "classifier (preprocess + forward + postprocess)",
    ]
    for row in r["classifier"]:
        lines.append(f"  {row['precision']:<5} {row['device']:<8} batch {row['batch']:>3}  {row['faces_per_s']:8.2f} faces/s")
    for a in r.get("agreement", []):
        lines.append(
            f"  {a['precision']} vs fp32 on {counted(a['images'], 'image')}: top-1 agreement {a['top1_agreement']:.1%}, "
            f"mean cosine {a['mean_cosine']:.6f}, MAE {a['mae']:.6f}"
        )
    lines.append("")
    for key, title in (("pipeline", "pipeline, exact"), ("live", "pipeline, live"), ("naive", "naive loop")):
        p = r[key]
        lat = p["latency_s"]
        line = (
            f"{title:<16} {p['fps']:7.2f} frames/s {p['faces_per_s']:7.2f} faces/s  latency p50 {_ms(lat['p50'])}, "
            f"p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}"
        )
        if key == "live":
            line += (
                f"\n{'':16} {p['fps_ratio']:.2f}x the camera's {p['source_fps']:g} fps, {p['dropped']} dropped; "
                f"slowest track re-classified {p['min_track_rate_hz'] if p['min_track_rate_hz'] is not None else '-'}/s"
            )
        lines.append(line)
    lines.append("")
    lines.append("ratios: " + ", ".join(f"{k} {v:g}" for k, v in r["ratios"].items()))
    return "\n".join(printable(line) for line in lines)


def run_bench(cfg: Config, video: str, *, as_json: bool = False, **kwargs: Any) -> int:
    """Run the benchmark and print its report (text, or JSON with ``as_json``)."""
    AVSource(video).close()  # fail on a bad video before loading models
    bench = Bench(cfg, video, log=lambda msg: print(f"bench: {msg} ...", file=sys.stderr, flush=True), **kwargs)
    report = bench.run()
    print(json.dumps(report, indent=2) if as_json else format_report(report), flush=True)
    return 0
