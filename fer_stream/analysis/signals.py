"""Ctrl-C, SIGTERM and SIGHUP end a run cleanly: pipelines stop, outputs are finalized."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None  # what signal.signal returns


class Stoppable(Protocol):
    """What a signal stops: a pipeline."""

    def stop(self) -> None: ...


class StopOnSignal:
    """SIGINT/SIGTERM/SIGHUP ask the pipelines to stop (outputs are finalized); a second one aborts.

    Install it on the main thread; runs on other threads register their pipelines with ``watching``.
    """

    def __init__(self, pipelines: Sequence[Stoppable] | None = None) -> None:
        self.pipelines: list[Stoppable] = list(pipelines or [])
        self.signum: int | None = None
        self._saved: dict[int, _Handler] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> StopOnSignal:
        # SIGHUP too: a closed terminal or SSH session finalizes the outputs instead of losing them.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._saved.items():
            signal.signal(s, handler)

    @contextmanager
    def watching(self, pipelines: Sequence[Stoppable]) -> Iterator[None]:
        """Stop ``pipelines`` on a signal while the block runs (at once if one came already)."""
        with self._lock:
            self.pipelines.extend(pipelines)
        if self.signum is not None:
            for p in pipelines:
                p.stop()
        try:
            yield
        finally:
            with self._lock:
                for p in pipelines:
                    self.pipelines.remove(p)

    def stop(self, signum: int = signal.SIGTERM.value) -> None:
        """As if signal ``signum`` came (where no handler is installed: a Ray actor); a second one aborts."""
        self._handle(signum, None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        with self._lock:
            pipelines = list(self.pipelines)
        for p in pipelines:
            p.stop()
