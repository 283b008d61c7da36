"""What the pipeline tells the run's metrics: :class:`Watch`, and :class:`NullWatch` where nobody watches.

:class:`fer_stream.serve.metrics.Metrics` (a higher layer) implements it; a pipeline without a
server gets :data:`NULL_WATCH`, so the stages call it without asking whether it is there (the
null object of roboflow/inference's ``NullPipelineWatchdog``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fer_stream.frames import Face


class Watch(Protocol):
    """Told of each frame leaving the pipeline, of each classifier batch and of boxes rejected as no face."""

    def frame_out(self, source_id: str, faces: Sequence[Face], latency: float) -> None: ...

    def rejected(self, source_id: str, boxes: int) -> None: ...

    def batch(self, size: int, seconds: float) -> None: ...


class NullWatch:
    """A :class:`Watch` that records nothing."""

    def frame_out(self, source_id: str, faces: Sequence[Face], latency: float) -> None:
        pass

    def rejected(self, source_id: str, boxes: int) -> None:
        pass

    def batch(self, size: int, seconds: float) -> None:
        pass


NULL_WATCH = NullWatch()
