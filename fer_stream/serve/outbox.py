"""A bounded queue with its own thread: how a publisher takes records without ever stalling the pipeline.

``send`` puts a record in the queue and returns at once; when the queue is full the record is
dropped and counted (the newest, so that what does arrive keeps its order: a ``start`` before its
``end``). The thread hands each record to ``deliver``, which returns True once it is delivered and
False to try again later (the receiver is down): the record stays first in line and the thread
waits with a growing delay (``backoff``: 0.5 s doubling to 30 s; a publisher that learns the
receiver is back calls ``wake``) until it goes through or the outbox closes. ``close`` gives the queue up to ``drain_s`` seconds to empty.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fer_stream")


class Outbox:
    """Records waiting for ``deliver`` (see the module's text); :attr:`counts`: queued, sent, dropped, retries."""

    def __init__(
        self,
        name: str,
        deliver: Callable[[dict[str, Any]], bool],
        *,
        size: int = 1000,
        backoff: tuple[float, float] = (0.5, 30.0),
        drain_s: float = 10.0,
    ) -> None:
        self.name = name
        self._deliver = deliver
        self.size = size
        self.backoff = backoff
        self.drain_s = drain_s
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._woken = False
        self._deadline = float("inf")
        self.counts = {"queued": 0, "sent": 0, "dropped": 0, "retries": 0}
        self._thread = threading.Thread(target=self._run, name=f"fer-{name}", daemon=True)
        self._thread.start()

    def send(self, record: dict[str, Any]) -> None:
        with self._cond:
            if self._closing or len(self._queue) >= self.size:
                self.counts["dropped"] += 1
                return
            self._queue.append(record)
            self.counts["queued"] += 1
            self._cond.notify()

    def snapshot(self) -> dict[str, int]:
        """The counts and the records waiting now (``waiting``)."""
        with self._cond:
            return {**self.counts, "waiting": len(self._queue)}

    def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing and empty
                record = self._queue[0]
            try:
                ok = self._deliver(record)
            except Exception as e:  # a publisher's bug or a receiver's odd answer: logged (no URL: it may hold a password), retried
                log.debug("%s: delivery failed: %s", self.name, type(e).__name__)
                ok = False
            with self._cond:
                if ok:
                    if self._queue and self._queue[0] is record:  # close() may have given up on it meanwhile
                        self._queue.popleft()
                        self.counts["sent"] += 1
                    delay = self.backoff[0]
                    continue
                self.counts["retries"] += 1
                if self._closing and time.monotonic() >= self._deadline:
                    return
                if not self._woken:  # a wake() while delivering counts too
                    self._cond.wait(min(delay, max(0.0, self._deadline - time.monotonic())) if self._closing else delay)
                delay = self.backoff[0] if self._woken else min(delay * 2, self.backoff[1])
                self._woken = False

    def wake(self) -> None:
        """The receiver is back (a publisher knows): try the waiting record now, from the shortest delay."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        """Stop taking records; deliver what is queued within ``drain_s``; what is left counts as dropped.
        Later calls do nothing."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._deadline = time.monotonic() + self.drain_s
            self._cond.notify_all()
        self._thread.join(self.drain_s + 5.0)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self.counts["dropped"] += left
        if left:
            log.warning("%s: %d record(s) could not be delivered before the end and were dropped", self.name, left)
