"""What a running source reports: :class:`SourceHealth` for ``/healthz`` and summaries,
:class:`SourceState` for the Prometheus metrics read at each scrape.

>>> SourceHealth("talk.mp4", "streaming", frames=12).as_dict()
{'url': 'talk.mp4', 'state': 'streaming', 'frames': 12}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["connecting", "streaming", "reconnecting", "failed", "stopped", "ended"]


@dataclass(frozen=True)
class SourceHealth:
    """A source's state (connecting, streaming, reconnecting, failed, stopped, ended), frames read and, for network
    sources (``network``), the age of the last frame, reconnects, outages and downtime."""

    url: str
    state: State
    frames: int = 0
    network: bool = False
    last_frame_age_s: float | None = None
    reconnects: int = 0
    outages: int = 0
    down_s: float = 0.0
    outage_since: float | None = None
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``/healthz`` JSON of the source: the network fields only for network sources."""
        out: dict[str, Any] = {"url": self.url, "state": self.state, "frames": self.frames}
        if self.network:
            out.update(
                last_frame_age_s=self.last_frame_age_s,
                reconnects=self.reconnects,
                outages=self.outages,
                down_s=self.down_s,
                outage_since=self.outage_since,
                last_error=self.last_error,
            )
        elif self.last_error is not None:
            out["last_error"] = self.last_error
        return out


@dataclass(frozen=True)
class SourceState:
    """A source's counters for the metrics: frames dropped, reconnects, failed connections, up, queue depths."""

    dropped: int = 0
    reconnects: int = 0
    failures: int = 0
    up: bool = False
    queues: dict[str, int] = field(default_factory=dict)
