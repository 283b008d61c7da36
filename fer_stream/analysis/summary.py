"""What a run found: one source's :class:`SourceSummary`, several sources' :class:`CombinedSummary`.

``as_dict()`` is the summary file (``--summary``, each batch video's ``summary.json``), what the
manifest and Ray read, and what the run command prints: its keys, their order and rounding are a
format others parse, so they change only on purpose.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fer_stream.build import threshold_of
from fer_stream.config import Config
from fer_stream.io.sinks import Tally
from fer_stream.model.contract import Classifier
from fer_stream.stream.stats import PipelineStats, TrackInfo

JsonDict = dict[str, Any]  # a JSON object (values: str, numbers, lists, objects)


@dataclass(frozen=True)
class NetworkSummary:
    """A network source's outages."""

    reconnects: int
    outages: int
    down_s: float


@dataclass(frozen=True)
class SourceSummary:
    """One source's counts, speed, tracks and outputs."""

    source: str
    source_id: str
    live: bool
    model: str
    device: str
    precision: str
    frames_in: int
    frames_out: int
    faces: int
    flagged: int
    unusable: int  # too small, blurry or unsure to classify; in no label count
    rejected: int  # detector boxes the face landmark model found to hold no face (not in faces)
    detector: str
    labels: Mapping[str, int]  # every label of the model, in its order
    fps: float
    faces_per_s: float
    dropped: int
    elapsed_s: float
    classified: int
    batches: int
    mean_batch: float
    latency_s: Mapping[str, float | None]
    tracks: tuple[TrackInfo, ...]  # by id
    tracks_omitted: int  # the oldest, beyond the 10 000 kept
    threshold: float
    stopped_by: str | None
    outputs: Mapping[str, str]  # kind -> path, of the files written
    network: NetworkSummary | None = None
    error: str | None = None  # why the source stopped
    segments: tuple[str, ...] | None = None  # the MP4 segments closed (segmented output only)
    late_error: str | None = None  # a report or timeline that could not be written
    review: Mapping[str, Any] | None = None  # the review store's dir and the faces kept, dropped, rate-limited
    episodes: Mapping[str, Any] | None = None  # episode records by type (start, update, end, alert) and what publishers dropped

    def with_output(self, kind: str, path: str) -> SourceSummary:
        return dataclasses.replace(self, outputs={**self.outputs, kind: path})

    def as_dict(self) -> JsonDict:
        """The summary as written to its file; optional keys only when they apply."""
        out: JsonDict = {
            "source": self.source,
            "source_id": self.source_id,
            "live": self.live,
            "model": self.model,
            "device": self.device,
            "precision": self.precision,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "faces": self.faces,
            "flagged": self.flagged,
            "unusable": self.unusable,
            "rejected": self.rejected,
            "detector": self.detector,
            "labels": dict(self.labels),
            "fps": self.fps,
            "faces_per_s": self.faces_per_s,
            "dropped": self.dropped,
            "elapsed_s": self.elapsed_s,
            "classified": self.classified,
            "batches": self.batches,
            "mean_batch": self.mean_batch,
            "latency_s": dict(self.latency_s),
            "tracks": [t.as_dict() for t in self.tracks],
            "tracks_omitted": self.tracks_omitted,
            "threshold": self.threshold,
            "stopped_by": self.stopped_by,
            "outputs": dict(self.outputs),
        }
        if self.network is not None:
            out.update(dataclasses.asdict(self.network))
        if self.error is not None:
            out["error"] = self.error
        if self.segments is not None:
            out["segments"] = list(self.segments)
        if self.review is not None:
            out["review"] = dict(self.review)
        if self.episodes is not None:
            out["episodes"] = dict(self.episodes)
        if self.late_error is not None and self.error is None:  # the first error is the one said
            out["error"] = self.late_error
        return out


_TOTALS = ("frames_in", "frames_out", "faces", "flagged", "unusable", "rejected", "dropped", "classified")


@dataclass(frozen=True)
class CombinedSummary:
    """Several sources of one run: their totals, each source's summary, and the shared classifier's mixing."""

    sources: Mapping[str, SourceSummary]  # by source id, in the configured order
    stopped_by: str | None
    mixed_batches: int  # classifier batches holding faces of several cameras

    def total(self, key: str) -> int:
        return sum(getattr(s, key) for s in self.sources.values())

    @property
    def frames_out(self) -> int:
        return self.total("frames_out")

    @property
    def faces(self) -> int:
        return self.total("faces")

    @property
    def flagged(self) -> int:
        return self.total("flagged")

    def as_dict(self) -> JsonDict:
        first = next(iter(self.sources.values()))
        return {
            **{k: self.total(k) for k in _TOTALS},
            "sources": {sid: s.as_dict() for sid, s in self.sources.items()},
            "model": first.model,
            "device": first.device,
            "precision": first.precision,
            "elapsed_s": max(s.elapsed_s for s in self.sources.values()),
            "stopped_by": self.stopped_by,
            "mixed_batches": self.mixed_batches,
        }


Summary = SourceSummary | CombinedSummary  # what a run returns: one source's, or several sources'


def stopped_by(signum: int | None) -> str | None:
    """The name of the signal that stopped a run (``SIGINT``), or None."""
    return signal.Signals(signum).name if signum else None


def summarize_source(
    cfg: Config,
    *,
    source: str,
    source_id: str,
    live: bool,
    clf: Classifier,
    tally: Tally,
    stats: PipelineStats,
    detector: str,
    tracks_omitted: int,
    outputs: Mapping[str, str],
    network: NetworkSummary | None,
    error: BaseException | None,
    signum: int | None,
    review: Mapping[str, Any] | None = None,
    episodes: Mapping[str, Any] | None = None,
) -> SourceSummary:
    """A source's summary from its pipeline's stats and its sinks' counts."""
    elapsed = max(stats.elapsed_s, 1e-9)
    return SourceSummary(
        source=source,
        source_id=source_id,
        live=live,
        model=cfg.classifier.model,
        device=str(clf.device),
        precision=clf.precision,
        frames_in=stats.frames_in,
        frames_out=tally.frames_out,
        faces=tally.faces,
        flagged=tally.flagged,
        unusable=tally.unusable,
        rejected=stats.rejected,
        detector=detector,
        labels={label: tally.labels.get(label, 0) for label in clf.labels},
        fps=round(tally.frames_out / elapsed, 3),
        faces_per_s=round(tally.faces / elapsed, 3),
        dropped=stats.dropped,
        elapsed_s=round(stats.elapsed_s, 3),
        classified=stats.classified,
        batches=stats.batches,
        mean_batch=round(stats.mean_batch, 3),
        latency_s=stats.latency_s,
        tracks=tuple(sorted(stats.tracks, key=lambda t: t.id)),
        tracks_omitted=tracks_omitted,
        threshold=threshold_of(cfg),
        stopped_by=stopped_by(signum),
        outputs={k: v for k, v in outputs.items() if v},
        network=network,
        error=None if error is None else str(error),
        review=review,
        episodes=episodes,
    )


def report_settings(cfg: Config) -> dict[str, object]:
    """The settings a reader of a report needs to judge it."""
    c, d, q = cfg.classifier, cfg.detector, cfg.quality
    return {
        "model": c.model,
        "device": c.device,
        "precision": c.precision,
        "threshold": threshold_of(cfg),
        "classify every": c.classify_every,
        "smoothing": cfg.tracking.smoothing,
        "detector": d.kind,
        "detector confidence (short / full)": f"{d.min_confidence} / {d.full_min_confidence}",
        "quality minimums (px / sharpness / score)": f"{q.min_face_px} / {q.min_sharpness} / {q.min_score}",
        "timeline bucket": f"{cfg.output.timeline_seconds:g} s",
    }
