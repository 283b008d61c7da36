"""Alert rules (config ``[[alerts]]``): an ``alert`` record when an episode's label has held long
enough, confidently enough, on enough faces.

A rule fires for an episode whose current label is ``label`` (or any label with ``"*"``) once it has
held ``min_seconds`` of the stream with at least ``min_faces`` classifications whose mean
confidence is at least ``min_confidence``, on one of ``sources`` (empty: every source). It fires at
most once per stretch of that label, and then not again on the same source for ``cooldown_s``
seconds of the stream.

>>> rule = AlertRule("angry", min_seconds=2)
>>> matches(rule, {"label": "angry", "held_s": 2.5, "faces": 5, "mean_confidence": 0.8}, "door")
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fer_stream.config import AlertRule
from fer_stream.stream.episodes import EpisodeBook


def matches(rule: AlertRule, episode: dict[str, Any], source: str) -> bool:
    """Whether ``rule`` fires for the open ``episode`` (:meth:`EpisodeBook.current`) of ``source``."""
    return (
        (rule.label == "*" or episode["label"] == rule.label)
        and (not rule.sources or source in rule.sources)
        and episode["held_s"] >= rule.min_seconds
        and episode["faces"] >= rule.min_faces
        and episode["mean_confidence"] >= rule.min_confidence
    )


@dataclass
class Alerts:
    """The rules applied to one source's episodes; :meth:`check` after each classification of a track."""

    rules: tuple[AlertRule, ...]
    source: str
    _fired: dict[tuple[int, str], float] = field(default_factory=dict)  # (rule, open episode's id) -> the stretch it fired on
    _last: dict[int, float] = field(default_factory=dict)  # rule -> stream time it last fired here
    count: int = 0

    def forget(self, episode: str) -> None:
        """Episode ``episode`` ended: what fired on it is no longer needed (memory stays bounded)."""
        for key in [k for k in self._fired if k[1] == episode]:
            del self._fired[key]

    def check(self, book: EpisodeBook, track: int, t: float) -> list[dict[str, Any]]:
        ep = book.current(track)
        if ep is None or not self.rules:
            return []
        out = []
        for i, rule in enumerate(self.rules):
            key = (i, ep["id"])
            if self._fired.get(key) == ep["since"] or not matches(rule, ep, self.source):
                continue
            if i in self._last and t - self._last[i] < rule.cooldown_s:
                continue
            self._fired[key] = ep["since"]
            self._last[i] = t
            self.count += 1
            out.append(
                {
                    "type": "alert",
                    "id": ep["id"],
                    "alert": f"{ep['id']}-{self.count}",
                    "rule": rule.title,
                    "source": self.source,
                    "track": track,
                    "label": ep["label"],
                    "since": round(ep["since"], 3),
                    "time": round(t, 3),
                    "held_s": round(ep["held_s"], 3),
                    "faces": ep["faces"],
                    "mean_confidence": ep["mean_confidence"],
                    "top_confidence": ep["top_confidence"],
                }
            )
        return out
