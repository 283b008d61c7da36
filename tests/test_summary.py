"""The summary's JSON is a format others parse (the summary file, batch's manifest, Ray, the printed
lines): the typed summaries give the same keys, in the same order, with the same values and rounding,
as the string-keyed dicts they replaced (kept below, verbatim, as the reference)."""

from __future__ import annotations

import dataclasses
import json
import signal
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from fer_stream.analysis.run import _source_summary
from fer_stream.analysis.streams import Stream
from fer_stream.analysis.summary import CombinedSummary, SourceSummary
from fer_stream.config import load_config
from fer_stream.health import SourceHealth
from fer_stream.io.sinks import EventSink, SegmentedVideoSink, Tally, VideoSink
from fer_stream.stream.stats import PipelineStats, TrackInfo

LABELS = ("angry", "happy", "neutral")


# -- the reference: fer-stream 0.2's commands/run.py, verbatim ----------------------------------


def _old_summary(cfg: Any, st: Any, clf: Any, signum: int | None) -> dict[str, Any]:
    source, tally, stats = st.source, st.tally, st.pipeline.stats
    elapsed = max(stats.elapsed_s, 1e-9)
    out = {
        "source": source.name,
        "source_id": st.sid,
        "live": source.live,
        "model": cfg.classifier.model,
        "device": str(clf.device),
        "precision": clf.precision,
        "frames_in": stats.frames_in,
        "frames_out": tally.frames_out,
        "faces": tally.faces,
        "flagged": tally.flagged,
        "unusable": tally.unusable,
        "rejected": stats.rejected,
        "detector": st.pipeline.detector.kind,
        "labels": {label: tally.labels.get(label, 0) for label in clf.labels},
        "fps": round(tally.frames_out / elapsed, 3),
        "faces_per_s": round(tally.faces / elapsed, 3),
        "dropped": stats.dropped,
        "elapsed_s": round(stats.elapsed_s, 3),
        "classified": stats.classified,
        "batches": stats.batches,
        "mean_batch": round(stats.mean_batch, 3),
        "latency_s": stats.latency_s,
        "tracks": [t.as_dict() for t in sorted(stats.tracks, key=lambda t: t.id)],
        "tracks_omitted": st.pipeline.track_log.omitted,
        "threshold": cfg.classifier.threshold,
        "stopped_by": signal.Signals(signum).name if signum else None,
        "outputs": {
            k: v
            for k, v in (
                ("video", str(st.video.path) if isinstance(st.video, VideoSink) else ""),
                ("events", str(st.events.path) if st.events is not None else ""),
                ("summary", cfg.output.summary),
            )
            if v
        },
    }
    h = source.health()
    if h is not None and h.network:
        out["reconnects"], out["outages"], out["down_s"] = h.reconnects, h.outages, h.down_s
    if st.error is not None:
        out["error"] = str(st.error)
    return out


def _old_combined(summaries: dict[str, dict[str, Any]], signum: int | None) -> dict[str, Any]:
    total = {
        k: sum(s[k] for s in summaries.values())
        for k in ("frames_in", "frames_out", "faces", "flagged", "unusable", "rejected", "dropped", "classified")
    }
    first = next(iter(summaries.values()))
    return {
        **total,
        "sources": summaries,
        "model": first["model"],
        "device": first["device"],
        "precision": first["precision"],
        "elapsed_s": max(s["elapsed_s"] for s in summaries.values()),
        "stopped_by": signal.Signals(signum).name if signum else None,
    }


# -- streams as a run leaves them -------------------------------------------------------------


class _Source:
    def __init__(self, name: str, live: bool, health: SourceHealth | None) -> None:
        self.name, self.live, self._health = name, live, health

    def health(self) -> SourceHealth | None:
        return self._health


def _sink(cls: type, path: str) -> Any:
    sink = object.__new__(cls)  # as the run holds it, without opening a file
    sink.path = path
    return sink


def _stream(sid: str, *, seed: int, network: bool = False, error: BaseException | None = None, video: Any = None) -> Any:
    tally = Tally()
    tally.frames_out, tally.faces, tally.flagged, tally.unusable = 90 + seed, 41 + seed, 3, 2
    tally.labels = Counter({"happy": 30 + seed, "angry": 6})  # neutral never seen: still listed, 0
    stats = PipelineStats(
        frames_in=92 + seed,
        dropped=seed,
        faces=41 + seed,
        classified=39,
        batches=7,
        batch_sizes={8: 4, 3: 2, 1: 1},
        elapsed_s=3.14159 + seed,
        source_ended=True,
        latency_s={"p50": 0.0123, "p95": 0.0456, "p99": None},
        tracks=[TrackInfo(3, 1.0, 2.5, 10, 4), TrackInfo(1, 0.0, 3.33333, 90, 20)],
    )
    pipeline = SimpleNamespace(stats=stats, detector=SimpleNamespace(kind="short"), track_log=SimpleNamespace(omitted=seed))
    health = SourceHealth("rtsp://cam/1", "streaming", network=True, reconnects=2, outages=1, down_s=4.5) if network else None
    st = Stream(sid, _Source(f"{sid}.mp4" if not network else "rtsp://cam/1", network, health))  # type: ignore[arg-type]
    st.tally, st.pipeline, st.error = tally, pipeline, error  # type: ignore[assignment]
    st.video = video
    st.events = _sink(EventSink, f"out/{sid}.jsonl")
    return st


CLF = SimpleNamespace(labels=LABELS, device="cpu", precision="fp32")


def _cfg(summary: str = "out/summary.json") -> Any:
    return load_config(None, {"output.summary": summary, "classifier.threshold": 0.45})


@pytest.mark.parametrize(
    "kwargs, signum",
    [
        ({}, None),
        ({"network": True}, None),
        ({"error": RuntimeError("camera gone")}, signal.SIGINT),
        ({"video": _sink(VideoSink, "out/cam1.mp4")}, signal.SIGTERM),
        ({"video": _sink(SegmentedVideoSink, "out/{source}.mp4"), "network": True, "error": ValueError("x")}, None),
    ],
)
def test_one_source_summary_is_the_old_dict_key_for_key(kwargs, signum):
    cfg = _cfg()
    st = _stream("cam1", seed=1, **kwargs)
    new = _source_summary(cfg, st, CLF, signum)  # type: ignore[arg-type]
    assert json.dumps(new.as_dict()) == json.dumps(_old_summary(cfg, st, CLF, signum))


def test_the_keys_and_their_order():
    s = _source_summary(_cfg(), _stream("cam1", seed=0, network=True, error=OSError("x")), CLF, None).as_dict()  # type: ignore[arg-type]
    assert list(s) == [
        *("source", "source_id", "live", "model", "device", "precision", "frames_in", "frames_out", "faces", "flagged"),
        *("unusable", "rejected", "detector", "labels", "fps", "faces_per_s", "dropped", "elapsed_s", "classified", "batches"),
        *("mean_batch", "latency_s", "tracks", "tracks_omitted", "threshold", "stopped_by", "outputs"),
        *("reconnects", "outages", "down_s", "error"),
    ]
    assert s["labels"] == {"angry": 6, "happy": 30, "neutral": 0} and s["tracks"][0] == {
        "id": 1,
        "frames": 90,
        "classified": 20,
        "duration_s": 3.333,
    }
    assert (s["fps"], s["elapsed_s"], s["mean_batch"]) == (round(90 / 3.14159, 3), 3.142, round(39 / 7, 3))


@pytest.mark.parametrize("stream_error", [None, RuntimeError("camera gone")])
def test_segments_outputs_and_a_failed_report_land_where_they_did(stream_error):
    """The run added segments, then each written timeline/report to outputs, and a failed one's error
    (unless the source had one): after the other keys, in that order."""
    cfg = _cfg()
    st = _stream("cam1", seed=2, error=stream_error)
    old = _old_summary(cfg, st, CLF, None)
    old["segments"] = ["out/cam1-1.mp4", "out/cam1-2.mp4"]
    old["outputs"]["timeline"] = "out/t.csv"
    old.setdefault("error", "cannot write report 'out/r.html': ValueError: bad")
    new = _source_summary(cfg, st, CLF, None)  # type: ignore[arg-type]
    new = dataclasses.replace(
        new, segments=("out/cam1-1.mp4", "out/cam1-2.mp4"), late_error="cannot write report 'out/r.html': ValueError: bad"
    )
    new = new.with_output("timeline", "out/t.csv")
    assert json.dumps(new.as_dict()) == json.dumps(old)


def test_several_sources_combine_as_before():
    cfg = _cfg("")
    streams = [_stream("door", seed=1), _stream("yard", seed=5, network=True)]
    old = _old_combined({st.sid: _old_summary(cfg, st, CLF, signal.SIGHUP) for st in streams}, signal.SIGHUP)
    old["mixed_batches"] = 4
    sources = {st.sid: _source_summary(cfg, st, CLF, signal.SIGHUP) for st in streams}  # type: ignore[arg-type]
    new = CombinedSummary(sources=sources, stopped_by="SIGHUP", mixed_batches=4)
    assert json.dumps(new.as_dict()) == json.dumps(old)
    assert (new.frames_out, new.faces, new.flagged) == (old["frames_out"], old["faces"], old["flagged"])
    assert isinstance(new.sources["door"], SourceSummary)


def test_counts_agree_with_their_nouns(capsys):
    from fer_stream.commands.analyse import print_summary as _print_summary

    one = {
        "frames_out": 1,
        "frames_in": 1,
        "elapsed_s": 0.5,
        "fps": 2.0,
        "faces": 1,
        "tracks": [{"id": 1}],
        "classified": 1,
        "flagged": 0,
        "unusable": 0,
        "dropped": 0,
        "stopped_by": None,
        "latency_s": {},
        "labels": {"happy": 1},
        "outputs": {},
        "segments": ["a.mp4"],
    }
    _print_summary(one)
    out = capsys.readouterr().out
    assert "1 frame out of 1 read" in out and "1 face in 1 track," in out and "segments: 1 file," in out
    _print_summary({**one, "frames_out": 3, "frames_in": 3, "faces": 2, "tracks": [{"id": 1}, {"id": 2}], "segments": ["a", "b"]})
    out = capsys.readouterr().out
    assert "3 frames out of 3 read" in out and "2 faces in 2 tracks," in out and "segments: 2 files," in out
