"""Expression episodes: a track's moments, not its frames ("track 7 looked angry for 12 s").

Per track, the recent classifications (the faces classified on their frame, ``fresh``) vote for a
label, each weighted by how fit the face was to classify (its size and sharpness, as Frigate's
classification weights its attempts) and by the model's confidence. A label is *agreed* once at least ``min_faces``
classifications are in and it holds ``agreement`` (default 60 %) of the weight. Then:

* ``start``: the track's first agreed label;
* ``update``: an agreed label other than the current one that has stayed agreed for ``min_s``
  seconds of the stream (hysteresis: a flicker of another expression changes nothing);
* ``end``: the track is gone (not in view, classified or not, for ``gone_s`` seconds) or the stream ended.

Each record (a plain dict, the ``--episodes`` JSON line) has ``type``, the episode's stable ``id``
(the same in its start, updates, end and alerts), ``seq`` (its records numbered from 0: with
``id``, a key no two records share), ``source``, ``track``, ``label``, ``start``/``end`` (seconds of
the stream), ``duration``, and for the current label's stretch ``faces``, ``mean_confidence``,
``top_confidence``, ``flagged_share`` and ``consensus`` (the label's share of the vote). ``update``
adds ``previous``; ``end`` adds ``labels``, every stretch of the track.

>>> book = EpisodeBook("cam")
>>> [r["type"] for t in (0.0, 0.1, 0.2) for r in book.add(t, 1, "happy", 0.9, False, 1.0)]
['start']
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fer_stream.config import EpisodesConfig
from fer_stream.frames import Face, FrameResult

# How labels are agreed and changed: config ``[episodes]`` (min_faces, agreement, min_s, gone_s, window).
EpisodeSettings = EpisodesConfig


def weight(face: Face) -> float:
    """A classification's vote: faces of 112 px and more, and sharpness of 100 and more, count fully."""
    q = face.quality
    if q is None:
        return 1.0
    return max(0.05, min(1.0, q.size_px / 112)) * max(0.05, min(1.0, q.sharpness / 100))


@dataclass
class _Stretch:
    """One label's stretch of an episode: when it began and what its faces said."""

    label: str
    start: float
    end: float
    faces: int = 0
    conf_sum: float = 0.0
    top: float = 0.0
    flagged: int = 0

    def add(self, t: float, label: str, confidence: float, flagged: bool) -> None:
        self.end = t
        if label == self.label:
            self.faces += 1
            self.conf_sum += confidence
            self.top = max(self.top, confidence)
            self.flagged += flagged

    def figures(self) -> dict[str, Any]:
        n = max(1, self.faces)
        return {
            "faces": self.faces,
            "mean_confidence": round(self.conf_sum / n, 4),
            "top_confidence": round(self.top, 4),
            "flagged_share": round(self.flagged / n, 4),
        }


@dataclass
class _Track:
    votes: deque[tuple[float, str, float, float, bool]]  # (time, label, confidence, weight, flagged)
    seen: float
    id: str = ""
    seq: int = 0
    first: float = 0.0
    stretches: list[_Stretch] = field(default_factory=list)
    pending: tuple[str, float] | None = None  # (label, since) of a challenger to the current label

    @property
    def current(self) -> _Stretch | None:
        return self.stretches[-1] if self.stretches else None


class EpisodeBook:
    """The episodes of one source: :meth:`add` each classification, :meth:`tick` each frame's time."""

    def __init__(self, source: str, settings: EpisodeSettings | None = None) -> None:
        self.source = source
        self.s = settings or EpisodeSettings()
        self.tracks: dict[int, _Track] = {}
        self.counts = {"episodes": 0, "updates": 0}

    def add(self, t: float, track: int, label: str, confidence: float, flagged: bool, w: float) -> list[dict[str, Any]]:
        """One classification of ``track`` at stream time ``t``; the records it causes."""
        tr = self.tracks.get(track)
        if tr is None:
            tr = self.tracks[track] = _Track(deque(maxlen=self.s.window), t, first=t)
        tr.seen = t
        tr.votes.append((t, label, confidence, w, flagged))
        if tr.current is not None:
            tr.current.add(t, label, confidence, flagged)
        agreed, share = self._agreed(tr)
        if agreed is None:
            tr.pending = None  # a split vote: no challenger has held
            return []
        cur = tr.current
        if cur is None:
            start = min(v[0] for v in tr.votes if v[1] == agreed)
            stretch = _Stretch(agreed, start, t)
            for v in tr.votes:
                if v[1] == agreed:
                    stretch.add(v[0], v[1], v[2], v[4])
            tr.stretches.append(stretch)
            tr.id = uuid.uuid4().hex[:16]
            self.counts["episodes"] += 1
            return [self._record(tr, track, "start", share)]
        if agreed == cur.label:
            tr.pending = None
            return []
        if tr.pending is None or tr.pending[0] != agreed:
            tr.pending = (agreed, t)  # the challenger is agreed from now: it must stay so for min_s
        since = tr.pending[1]
        if t - since < self.s.min_s - 1e-9:  # frame times are sums of floats
            return []
        tr.pending = None
        cur.end = since
        stretch = _Stretch(agreed, since, t)
        for v in tr.votes:
            if v[1] == agreed and v[0] >= since:
                stretch.add(v[0], v[1], v[2], v[4])
        tr.stretches.append(stretch)
        self.counts["updates"] += 1
        return [self._record(tr, track, "update", share, previous=cur.label)]

    def touch(self, track: int, t: float) -> None:
        """``track`` is in view at ``t`` (classified or not: a face between classifications has not gone)."""
        tr = self.tracks.get(track)
        if tr is not None:
            tr.seen = max(tr.seen, t)

    def tick(self, t: float) -> list[dict[str, Any]]:
        """Stream time ``t`` reached: the ``end`` of every track not seen for ``gone_s``."""
        gone = [k for k, tr in self.tracks.items() if t - tr.seen > self.s.gone_s]
        return [r for k in gone for r in self._end(k)]

    def close(self) -> list[dict[str, Any]]:
        """The stream ended: the ``end`` of every open episode."""
        return [r for k in list(self.tracks) for r in self._end(k)]

    def current(self, track: int) -> dict[str, Any] | None:
        """The open episode of ``track`` (its id, label, since when, stretch figures), for alert rules."""
        tr = self.tracks.get(track)
        if tr is None or tr.current is None:
            return None
        c = tr.current
        return {"id": tr.id, "label": c.label, "since": c.start, "held_s": c.end - c.start, **c.figures()}

    def _end(self, track: int) -> list[dict[str, Any]]:
        tr = self.tracks.pop(track)
        if tr.current is None:
            return []  # never confidently labelled: no episode
        _, share = self._agreed(tr)
        return [self._record(tr, track, "end", share)]

    def _agreed(self, tr: _Track) -> tuple[str | None, float]:
        """The label the vote agrees on (or None) and its share of the weight."""
        total: dict[str, float] = {}
        for _, label, _, w, _ in tr.votes:
            total[label] = total.get(label, 0.0) + w
        if not total:
            return None, 0.0
        best = max(total, key=total.__getitem__)
        share = total[best] / sum(total.values())
        ok = len(tr.votes) >= self.s.min_faces and share >= self.s.agreement
        return (best if ok else None), round(share, 4)

    def _record(self, tr: _Track, track: int, kind: str, share: float, **extra: Any) -> dict[str, Any]:
        cur = tr.current
        assert cur is not None
        end = tr.seen if kind == "end" else cur.end
        rec: dict[str, Any] = {
            "type": kind,
            "id": tr.id,
            "seq": tr.seq,
            "source": self.source,
            "track": track,
            "label": cur.label,
            "start": round(tr.stretches[0].start, 3),
            "end": round(end, 3),
            "duration": round(end - tr.stretches[0].start, 3),
            "since": round(cur.start, 3),
            **cur.figures(),
            "consensus": share,
            **extra,
        }
        if kind == "end":
            rec["labels"] = [
                {"label": s.label, "start": round(s.start, 3), "end": round(end if s is cur else s.end, 3)} for s in tr.stretches
            ]
        tr.seq += 1
        return rec


def classifications(result: FrameResult) -> list[tuple[int, str, float, bool, float]]:
    """The faces of ``result`` classified on this frame and fit to count: (track, label, confidence, flagged,
    weight: the face's :func:`weight` times the confidence)."""
    return [
        (f.track, f.prediction.label, f.prediction.confidence, f.prediction.flagged, weight(f) * f.prediction.confidence)
        for f in result.faces
        if f.fresh and f.prediction is not None and f.track is not None and f.usable
    ]
