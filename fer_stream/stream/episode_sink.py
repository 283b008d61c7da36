"""The sink that turns one source's faces into episodes and alerts and hands them to outlets.

Outlets are where the records go: the ``--episodes`` file (:class:`EpisodeLog`), an MQTT broker,
a webhook (:mod:`fer_stream.serve.publish`). One outlet may serve every source of a run; each
``send`` must return at once (publishers queue, never stall the pipeline).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Any, Protocol

from fer_stream.config import AlertRule
from fer_stream.errors import SinkError
from fer_stream.frames import FrameResult
from fer_stream.io.jsonlines import JsonLines
from fer_stream.io.sinks import Sink, writable_path
from fer_stream.stream.alerts import Alerts
from fer_stream.stream.episodes import EpisodeBook, EpisodeSettings, classifications

MAX_LISTED = 1000  # ended episodes and alerts the summary lists (the latest); the counts count them all
SHORT = ("id", "track", "label", "start", "end", "duration", "mean_confidence", "flagged_share", "labels")


class Outlet(Protocol):
    """Takes episode and alert records; ``close`` once at the end of the run."""

    def send(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class Publisher(Outlet, Protocol):
    """An outlet that sends over the network and counts what it sent, retried and dropped."""

    def counts(self) -> dict[str, int]: ...


def record_key(record: dict[str, Any]) -> str:
    """A key no two records share: ``ID:SEQ`` for episode records, the alert's id for alerts."""
    return str(record["alert"]) if record["type"] == "alert" else f"{record['id']}:{record['seq']}"


class EpisodeLog:
    """``--episodes OUT.jsonl``: one JSON line per record, on disk (synced) as it happens."""

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        p = writable_path(path)
        try:
            p.open("w" if overwrite else "x", encoding="utf-8").close()  # an existing file only when the user said --overwrite
        except OSError as e:
            raise SinkError(f"cannot write episode log '{p}': {e.strerror}") from None
        self.path = p
        self._log = JsonLines(p)
        self.records = 0

    def send(self, record: dict[str, Any]) -> None:
        if record["type"] == "state":
            return  # what a camera sees now: for publishers, not the log
        try:
            self._log.append(record)
        except OSError as e:
            raise SinkError(f"writing episode log '{self.path}' failed: {e.strerror or e}") from None
        self.records += 1

    def close(self) -> None:
        return None


class EpisodeSink(Sink):
    """Episodes and alerts of one source (see :mod:`fer_stream.stream.episodes` and ``alerts``)."""

    def __init__(
        self, source: str, outlets: list[Outlet], settings: EpisodeSettings | None = None, rules: tuple[AlertRule, ...] = ()
    ) -> None:
        self.book = EpisodeBook(source, settings or EpisodeSettings())
        self.alerts = Alerts(rules, source)
        self.outlets = outlets
        self._lock = threading.Lock()
        self.counts = {"start": 0, "update": 0, "end": 0, "alert": 0}
        self.open: dict[int, dict[str, Any]] = {}  # track -> its latest record, while its episode is open
        self.ended: deque[dict[str, Any]] = deque(maxlen=MAX_LISTED)  # the latest ended episodes, for the summary
        self.fired: deque[dict[str, Any]] = deque(maxlen=MAX_LISTED)  # the latest alerts
        self._state: dict[str, Any] = {}  # the last state sent
        self._state_t = float("-inf")

    def write(self, result: FrameResult) -> None:
        t = result.frame.time
        records: list[dict[str, Any]] = []
        for face in result.faces:
            if face.track is not None:
                self.book.touch(face.track, t)
        for track, label, confidence, flagged, w in classifications(result):
            records += self.book.add(t, track, label, confidence, flagged, w)
            records += self.alerts.check(self.book, track, t)
        records += self.book.tick(t)
        self._send(records)
        self._send_state(len(result.faces), t)

    def _send_state(self, faces: int, t: float) -> None:
        """A ``state`` record when what the camera sees changed (at most one a second, unless the label changed)."""
        with self._lock:
            labels = [r["label"] for r in self.open.values()]
        label = max(set(labels), key=labels.count) if labels else "none"
        state = {"label": label, "faces": faces, "episodes": len(labels)}
        if state == self._state or (state["label"] == self._state.get("label") and t - self._state_t < 1.0):
            return
        self._state, self._state_t = state, t
        for outlet in self.outlets:
            outlet.send({"type": "state", "source": self.book.source, "time": round(t, 3), **state})

    def close(self) -> None:
        """End every open episode (once: later calls send nothing)."""
        self._send(self.book.close())

    def summary(self) -> dict[str, Any]:
        """The summary's ``episodes``: records by type, and the latest :data:`MAX_LISTED` ended episodes and alerts."""
        with self._lock:
            return {**self.counts, "episodes": list(self.ended), "alerts": list(self.fired)}

    def state(self) -> dict[str, Any]:
        """What is going on now: the open episodes (track, label, since) and the counts so far."""
        with self._lock:
            episodes = [{k: r[k] for k in ("id", "track", "label", "since", "consensus")} for r in self.open.values()]
            return {"episodes": episodes, "counts": dict(self.counts)}

    def _send(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            with self._lock:
                self.counts[r["type"]] += 1
                if r["type"] == "end":
                    self.open.pop(r["track"], None)
                    self.alerts.forget(r["id"])
                    self.ended.append({k: r[k] for k in SHORT if k in r})
                elif r["type"] == "alert":
                    self.fired.append({k: r[k] for k in ("id", "alert", "rule", "track", "label", "time", "held_s") if k in r})
                else:  # start, update: the track's open episode
                    self.open[r["track"]] = r
            for outlet in self.outlets:
                outlet.send(r)
