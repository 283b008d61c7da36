"""What a run saw, for people: a per-second timeline (CSV) and a self-contained HTML report.

:class:`TimelineSink` is a sink like the others: it keeps, per second (``bucket_s``) and per
track, the number of faces and the sum of their probabilities, one thumbnail per track and the
flagged moments (confidence under the threshold) with a crop each, all bounded in memory (on
very long runs bins are merged and the shortest tracks pooled: see :class:`TimelineSink`).
:func:`write_timeline` writes the CSV spreadsheet users want; :func:`write_report` writes one HTML
file with the plots inline (matplotlib SVG) and the thumbnails as data URIs: it opens anywhere,
offline, and can be mailed.

>>> with TimelineSink(clf.labels) as tl:                    # doctest: +SKIP
...     for result in results: tl.write(result)
>>> write_timeline("talk.timeline.csv", tl); write_report("talk.html", tl, summary)   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

import cv2
import numpy as np

from fer_stream import palette
from fer_stream.frames import FrameResult
from fer_stream.io.sinks import Sink, spreadsheet_safe, write_atomic
from fer_stream.palette import label_colors

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_TRACKS_PLOTTED = 12
# Bounds on what a timeline keeps, whatever the length of the run (a camera watched for weeks):
MAX_BINS = 10_000  # time bins; past it, neighbouring bins are merged (the bin length doubles)
MAX_CELLS = 50_000  # (bin, track) cells; past it, bins are merged the same way
MAX_TRACKS = 1_000  # tracks with their own rows, plot and thumbnail; past it, the shortest ended ones are pooled
DROPPED = -2  # the track id under which the faces of pooled tracks are counted
_ENDED_S = 10.0  # a track not seen for this long has ended: it may be pooled


def _thumb(crop: np.ndarray, size: int = 64) -> str:
    """A crop as a small JPEG data URI."""
    h, w = crop.shape[:2]
    s = size / max(h, w)
    small = cv2.resize(crop, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


class TimelineSink(Sink):
    """Per-bin, per-track means of the probabilities, thumbnails and flagged moments, bounded in memory.

    Bins start ``bucket_s`` long. What is kept never grows past fixed bounds, however long the run:

    - at most :data:`MAX_BINS` time bins and :data:`MAX_CELLS` (bin, track) cells: past either,
      every two neighbouring bins are merged into one twice as long (``bucket_s`` doubles,
      ``merges`` counts it), so the whole run stays covered at a coarser step;
    - at most :data:`MAX_TRACKS` tracks of their own (frames, one thumbnail, their cells): past it,
      the shorter half of the tracks that have ended (unseen for 10 s) are pooled, their faces
      counted under track :data:`DROPPED` (``dropped_tracks``, ``dropped_faces``);
    - at most ``max_flagged`` flagged moments with a crop each.

    The timeline CSV gives each row's bin length (``span_s``); the report says what was merged and pooled.
    """

    def __init__(self, labels: Sequence[str], *, bucket_s: float = 1.0, threshold: float = 0.7, max_flagged: int = 60) -> None:
        self.labels = tuple(labels)
        self.asked_bucket_s = bucket_s
        self.bucket_s = bucket_s  # doubles with each merge
        self.merges = 0
        self.threshold = threshold
        self.max_flagged = max_flagged
        self.cells: dict[tuple[int, int], np.ndarray] = {}  # (bin, track) -> [faces, sum of probabilities...]
        self.faces: Counter[int] = Counter()  # bin -> faces
        self.flagged_per: Counter[int] = Counter()
        self.unusable_per: Counter[int] = Counter()
        self.thumbs: dict[int, str] = {}
        self.track_frames: Counter[int] = Counter()  # kept track -> classified faces
        self._last_seen: dict[int, float] = {}
        self.dropped_tracks = 0
        self.dropped_faces = 0
        self.flagged: list[dict[str, Any]] = []
        self._flag_seen: set[tuple[int, int]] = set()
        self.last_time = 0.0

    def write(self, result: FrameResult) -> None:
        t = result.frame.time
        self.last_time = max(self.last_time, t)
        for face in result.faces:
            b = int(t // self.bucket_s)  # again per face: a merge changes the bin length
            self.faces[b] += 1
            track = face.track if face.track is not None else -1
            if not face.usable:
                self.unusable_per[b] += 1
                continue
            p = face.prediction
            if p is None:
                continue
            if track not in self.track_frames and len(self.track_frames) >= MAX_TRACKS:
                self._pool_tracks(t)
            self.track_frames[track] += 1
            self._last_seen[track] = t
            if track not in self.thumbs and face.crop is not None:
                self.thumbs[track] = _thumb(face.crop)
            probs = p.as_dict()
            cell = self.cells.get((b, track))
            if cell is None:
                cell = self.cells[(b, track)] = np.zeros(len(self.labels) + 1)
            cell[0] += 1
            cell[1:] += [probs.get(label, 0.0) for label in self.labels]
            if p.flagged:
                self.flagged_per[b] += 1
                key = (b, track)
                if key not in self._flag_seen and len(self.flagged) < self.max_flagged:
                    self._flag_seen.add(key)
                    self.flagged.append(
                        {
                            "time": round(t, 2),
                            "track": track,
                            "label": p.label,
                            "confidence": round(p.confidence, 3),
                            "thumb": _thumb(face.crop, 96) if face.crop is not None else "",
                        }
                    )
        while len(self.cells) > MAX_CELLS or len(self.faces) > MAX_BINS:
            self._merge_bins()

    def _pool_tracks(self, now: float) -> None:
        """Make room for new tracks: the shorter half of the ended ones (of all, if none has ended) are pooled."""
        candidates = [tr for tr in self.track_frames if tr >= 0 and self._last_seen.get(tr, now) < now - _ENDED_S]
        if not candidates:
            candidates = [tr for tr in self.track_frames if tr >= 0]
        candidates.sort(key=lambda tr: (self.track_frames[tr], self._last_seen.get(tr, 0.0)))
        pooled = set(candidates[: max(1, len(candidates) // 2)])
        for tr in pooled:
            self.dropped_faces += self.track_frames.pop(tr)
            self.thumbs.pop(tr, None)
            self._last_seen.pop(tr, None)
        self.dropped_tracks += len(pooled)
        for b, tr in [key for key in self.cells if key[1] in pooled]:
            cell = self.cells.pop((b, tr))
            into = self.cells.get((b, DROPPED))
            if into is None:
                self.cells[(b, DROPPED)] = cell
            else:
                into += cell

    def _merge_bins(self) -> None:
        """Every two neighbouring bins become one, twice as long."""
        self.bucket_s *= 2
        self.merges += 1
        cells: dict[tuple[int, int], np.ndarray] = {}
        for (b, tr), cell in self.cells.items():
            into = cells.get((b // 2, tr))
            if into is None:
                cells[(b // 2, tr)] = cell
            else:
                into += cell
        self.cells = cells
        for name in ("faces", "flagged_per", "unusable_per"):
            merged: Counter[int] = Counter()
            for b, n in getattr(self, name).items():
                merged[b // 2] += n
            setattr(self, name, merged)
        self._flag_seen = {(b // 2, tr) for b, tr in self._flag_seen}

    def rows(self) -> list[dict[str, Any]]:
        """One row per (bin, track): start time, bin length, faces, mean probabilities, dominant label."""
        out = []
        for (b, track), cell in sorted(self.cells.items()):
            n, mean = cell[0], cell[1:] / cell[0]
            out.append(
                {
                    "time_s": round(b * self.bucket_s, 3),
                    "track": track,
                    "faces": int(n),
                    "dominant": self.labels[int(mean.argmax())],
                    **{label: round(float(v), 6) for label, v in zip(self.labels, mean)},
                    "span_s": round(self.bucket_s, 3),
                }
            )
        return out


def write_timeline(path: str | os.PathLike[str], timeline: TimelineSink) -> Path:
    """The timeline as CSV (a row per bin and track, ``span_s`` its length), written atomically.

    Text cells (labels, in the header too) that a spreadsheet would run as a formula start with ``'``.
    """
    fields = ["time_s", "track", "faces", "dominant", *timeline.labels, "span_s"]

    def write(f: TextIO) -> None:
        w = csv.writer(f)
        w.writerow([spreadsheet_safe(name) for name in fields])
        for row in timeline.rows():
            w.writerow([spreadsheet_safe(row[name]) for name in fields])

    return write_atomic(path, write, "timeline")


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib  # heavy: only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Figure) -> str:
    plt = _pyplot()

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: inline SVG


# The palette's label colours under their old names here (issue 16's report had its own).
COLORS = palette.LABEL_COLORS
PALETTE = palette.FALLBACK


def _track_plot(timeline: TimelineSink, track: int) -> str:
    plt = _pyplot()

    cells = sorted((b, v) for (b, t), v in timeline.cells.items() if t == track)
    x = np.array([b * timeline.bucket_s for b, _ in cells])
    means = np.array([cell[1:] / cell[0] for _, cell in cells])
    colors = label_colors(timeline.labels)
    fig, ax = plt.subplots(figsize=(9, 2.2))
    # Steps drawn to the end of each bucket: the last point repeated one bucket later.
    ax.stackplot(
        np.append(x, x[-1] + timeline.bucket_s),
        np.vstack([means, means[-1:]]).T,
        labels=timeline.labels,
        step="post",
        colors=[colors[label] for label in timeline.labels],
    )
    low = means.max(axis=1) < timeline.threshold
    for xi, is_low in zip(x, low):  # an amber strip above the seconds to review, as the overlay flags them
        if is_low:
            ax.fill_between([xi, xi + timeline.bucket_s], 1.02, 1.08, color=palette.FLAGGED, lw=0)
    ax.set_xlim(0, max(timeline.last_time, x.max() + timeline.bucket_s if len(x) else 1))
    ax.set_ylim(0, 1.09)
    ax.set_yticks([0, 0.5, 1])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    return _svg(fig)


def timeline_bounds(timeline: TimelineSink) -> list[str]:
    """What a timeline merged or pooled to stay bounded, in words (nothing for a usual run)."""
    lines = []
    if timeline.merges:
        lines.append(
            f"To bound memory on this long run, the {timeline.asked_bucket_s:g} s bins were merged into "
            f"{timeline.bucket_s:g} s bins ({timeline.merges} merge{'s' if timeline.merges != 1 else ''})."
        )
    if timeline.dropped_tracks:
        lines.append(
            f"{timeline.dropped_tracks} shorter track{'s' if timeline.dropped_tracks != 1 else ''} "
            f"({timeline.dropped_faces} faces) were pooled to bound memory: no plot or thumbnail of their own, "
            f"their faces counted under track {DROPPED} in the timeline."
        )
    return lines


def _overview_plots(timeline: TimelineSink, summary: dict[str, Any]) -> tuple[str, str]:
    plt = _pyplot()

    labels = list(summary.get("labels", {}))
    counts = [summary["labels"][label] for label in labels]
    colors = label_colors([*timeline.labels, *labels])
    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    ax.bar(labels, counts, color=[colors[label] for label in labels])
    ax.set_ylabel("faces")
    ax.set_title("label distribution")
    ax.tick_params(axis="x", labelrotation=30)
    bars = _svg(fig)
    buckets = sorted(timeline.faces)
    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    xs = [b * timeline.bucket_s for b in buckets]
    ax.plot(xs, [timeline.faces[b] for b in buckets], label="faces", color="#333333")
    ax.plot(xs, [timeline.flagged_per[b] for b in buckets], label="flagged", color=palette.FLAGGED)
    ax.plot(xs, [timeline.unusable_per[b] for b in buckets], label="unusable", color=palette.UNUSABLE, linestyle="--")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"per {timeline.bucket_s:g} s")
    ax.set_title("faces over time")
    ax.legend(fontsize=7, frameon=False)
    return bars, _svg(fig)


def write_report(
    path: str | os.PathLike[str], timeline: TimelineSink, summary: dict[str, Any], settings: dict[str, Any] | None = None
) -> Path:
    """One self-contained HTML file: overview plots, a timeline per track, flagged moments, settings."""
    p = Path(path)
    esc = html.escape
    bars, over_time = _overview_plots(timeline, summary)
    faces = max(1, summary.get("faces", 0))
    figures = [
        ("frames", summary.get("frames_out")),
        ("faces", summary.get("faces")),
        ("tracks", len(summary.get("tracks", []))),
        ("flagged", f"{summary.get('flagged', 0)} ({summary.get('flagged', 0) / faces:.0%})"),
        ("unusable", summary.get("unusable")),
        ("rejected as no face", summary.get("rejected", 0)),
        ("fps", summary.get("fps")),
        ("model", summary.get("model")),
        ("device", summary.get("device")),
        ("precision", summary.get("precision")),
        ("detector", summary.get("detector")),
        ("threshold", summary.get("threshold")),
    ]
    tracks = [t for t, _ in timeline.track_frames.most_common(MAX_TRACKS_PLOTTED)]
    track_html = []
    for t in sorted(tracks):
        cells = [v for (b, tr), v in timeline.cells.items() if tr == t]
        total = sum((v[1:] for v in cells), np.zeros(len(timeline.labels)))
        share = total / max(total.sum(), 1e-9)
        top = sorted(zip(timeline.labels, share), key=lambda kv: -kv[1])[:3]
        shares = ", ".join(f"{esc(label)} {v:.0%}" for label, v in top)
        thumb = timeline.thumbs.get(t, "")
        img = f'<img alt="track {t}" src="{thumb}">' if thumb else ""  # none with --no-face-images
        track_html.append(
            f'<section class="track"><div class="who">{img}<b>#{t}</b><br>'
            f"<small>{timeline.track_frames[t]} face{'s' if timeline.track_frames[t] != 1 else ''}<br>{shares}</small></div>"
            f'<div class="plot">{_track_plot(timeline, t)}</div></section>'
        )
    shown = " shown" if len(timeline.flagged) >= timeline.max_flagged else ""
    legend = (
        f"Each band is a label's mean probability per {timeline.bucket_s:g} s; an amber strip above marks "
        f"seconds whose best label is under {timeline.threshold:.0%}."
    )
    bounded = "".join(
        f"<p><b>{esc(line)}</b></p>" for line in timeline_bounds(timeline)
    )  # what was merged or pooled to keep a long run's memory bounded
    flagged_rows = "".join(
        f"<tr><td>{f['time']:.2f} s</td><td>#{f['track']}</td><td>{esc(f['label'])}</td><td>{f['confidence']:.0%}</td>"
        + (f'<td><img alt="face" src="{f["thumb"]}"></td></tr>' if f["thumb"] else "<td>(no face pictures)</td></tr>")
        for f in timeline.flagged
    )
    settings_rows = "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in (settings or {}).items())
    episodes = _episodes_html(summary.get("episodes"))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fer-stream report: {esc(str(summary.get("source", "")))}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1200px; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin-top: 28px; border-bottom: 1px solid #ddd; }}
.figures {{ display: flex; flex-wrap: wrap; gap: 8px; }} .figures div {{ background: #f4f4f4; padding: 6px 10px; border-radius: 4px; }}
.overview {{ display: flex; flex-wrap: wrap; gap: 16px; }} .overview svg, .plot svg {{ max-width: 100%; height: auto; }}
.track {{ display: flex; align-items: center; gap: 12px; margin: 8px 0; }} .who {{ width: 110px; text-align: center; }}
.who img {{ display: block; margin: 0 auto 4px; width: 64px; }} .plot {{ flex: 1; }}
table {{ border-collapse: collapse; }} td, th {{ border-bottom: 1px solid #eee; padding: 4px 8px; text-align: left; }}
</style></head><body>
<h1>fer-stream report: {esc(str(summary.get("source", "")))}</h1>
<div class="figures">{"".join(f"<div><b>{esc(k)}</b> {esc(str(v))}</div>" for k, v in figures)}</div>
<h2>Whole video</h2><div class="overview"><div>{bars}</div><div>{over_time}</div></div>
<h2>Tracks ({len(tracks)} of {len(timeline.track_frames)} shown: the longest)</h2>
<p>{legend}</p>{bounded}
{"".join(track_html) or "<p>No classified faces.</p>"}
<h2>Flagged moments ({len(timeline.flagged)}{shown}): for a person to review</h2>
<table><tr><th>time</th><th>track</th><th>label</th><th>confidence</th><th>face</th></tr>{flagged_rows}</table>
{episodes}<h2>Settings</h2><table>{settings_rows}</table>
</body></html>
"""
    return write_atomic(p, lambda f: f.write(doc), "report")


def _episodes_html(ep: dict[str, Any] | None) -> str:
    """The report's episodes and alerts (with --episodes or a publisher), from the summary."""
    if not ep:
        return ""
    esc = html.escape
    rows = "".join(
        f"<tr><td>#{e['track']}</td><td>{esc(' > '.join(s['label'] for s in e.get('labels', [])) or e['label'])}</td>"
        f"<td>{e['start']:.1f}-{e['end']:.1f} s</td><td>{e['duration']:.1f} s</td><td>{e['mean_confidence']:.0%}</td>"
        f"<td>{e['flagged_share']:.0%}</td><td><code>{esc(e['id'])}</code></td></tr>"
        for e in ep.get("episodes", [])
    )
    alerts = "".join(
        f"<tr><td>{a['time']:.1f} s</td><td>{esc(a['rule'])}</td><td>#{a['track']}</td><td>{esc(a['label'])}</td>"
        f"<td>{a['held_s']:.1f} s</td><td><code>{esc(a['id'])}</code></td></tr>"
        for a in ep.get("alerts", [])
    )
    head = "<tr><th>track</th><th>labels</th><th>time</th><th>duration</th><th>mean confidence</th><th>flagged</th><th>id</th></tr>"
    out = f"<h2>Episodes ({ep.get('end', 0)})</h2><table>{head}{rows}</table>"
    if alerts:
        out += "<h2>Alerts</h2><table><tr><th>time</th><th>rule</th><th>track</th><th>label</th><th>held</th><th>episode</th></tr>"
        out += alerts + "</table>"
    return out + "\n"
