"""The buffers between the pipeline's stages: the end marker, the live frame slot, a frame buffer's shape.

Files read into a bounded ``queue.Queue`` that blocks when full (no frame is lost); live sources
into a :class:`LatestSlot`, where the newest frame replaces an unread one. Which one a pipeline
has is its mode's choice (:mod:`fer_stream.stream.modes`).
"""

from __future__ import annotations

import enum
import queue
import threading
from typing import Final, Generic, Protocol, TypeVar

from fer_stream.frames import Frame

T = TypeVar("T")


class End(enum.Enum):
    """The type of :data:`END`, for annotations (``Frame | End``)."""

    END = "end"


END: Final = End.END  # end-of-stream marker that flows down the pipeline's queues


class Buffer(Protocol[T]):
    """A queue between two stages: ``put`` raises ``queue.Full``, ``get`` ``queue.Empty`` when ``timeout`` passes."""

    def put(self, item: T, *, timeout: float | None = None) -> None: ...

    def get(self, *, timeout: float | None = None) -> T: ...


class FrameBuffer(Buffer[Frame | End], Protocol):
    """Where the read stage leaves frames for detection: a ``queue.Queue`` or a :class:`LatestSlot`."""

    maxsize: int

    def qsize(self) -> int: ...


class LatestSlot(Generic[T]):
    """A one-item buffer for live sources: ``put`` never blocks and replaces an unread item."""

    maxsize = 1

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False
        self.dropped = 0  # items replaced before anyone read them

    def put(self, item: T, timeout: float | None = None) -> None:
        with self._cond:
            if self._full:
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float | None = None) -> T:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item  # type: ignore[return-value]  # full: the item put

    def qsize(self) -> int:
        """1 while an item waits, else 0."""
        return int(self._full)
