"""One classifier serving many exact-mode pipelines: their batches are merged into the model's.

``fer-stream batch`` analyses several videos at once; each video's pipeline batches its own
crops (up to ``max_batch``, waiting ``batch_wait``) and hands them to ``forward``. Instead of
each pipeline owning a model, every pipeline gets a :class:`ServiceClient` whose ``forward``
queues the rows here; one thread runs the model on up to ``max_batch`` queued rows at a time,
taken across pipelines in arrival order (a request may be split over two model batches), so the
model's batches stay full while any video has faces waiting, and the model loads once.

It is the exact-mode sibling of :class:`fer_stream.stream.live.LiveClassifier`, which mixes cameras'
newest crops; written here because the requests are blocking calls from pipeline threads (a
few lines of queue and condition), not a job for a serving framework.

>>> service = ClassifierService(clf)                                  # doctest: +SKIP
>>> with service:                                     # the model thread runs  # doctest: +SKIP
...     probs = service.client().forward(clf.preprocess(crops))
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass(eq=False)
class _Request:
    """Rows one pipeline asked for; filled in place as model batches finish."""

    pixels: torch.Tensor
    owner: int
    out: np.ndarray | None = None
    taken: int = 0  # rows handed to a model batch so far
    missing: int = field(init=False)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.missing = int(self.pixels.shape[0])


class ClassifierService:
    """Runs ``classifier`` on a thread for every :class:`ServiceClient`, merging their rows into batches."""

    def __init__(self, classifier: Any, *, max_batch: int | None = None) -> None:
        self.classifier = classifier
        self.max_batch = max_batch or classifier.max_batch
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.batch_sizes: Counter[int] = Counter()
        self.mixed_batches = 0  # batches holding rows of more than one pipeline
        self.busy_s = 0.0  # time spent in the model
        self._clients = 0

    def client(self) -> ServiceClient:
        """A stand-in for the classifier whose ``forward`` goes through this service."""
        self._clients += 1
        return ServiceClient(self, self._clients)

    def __enter__(self) -> ClassifierService:
        self._thread = threading.Thread(target=self._run, name="fer-classify-service", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10.0)

    def submit(self, pixels: torch.Tensor, owner: int = 0) -> np.ndarray:
        """Probabilities for ``pixels`` (blocks until every row has been through the model)."""
        if pixels.shape[0] == 0:
            return np.zeros((0, len(self.classifier.labels)), np.float32)
        request = _Request(pixels, owner)
        with self._cond:
            if self._closed:
                raise RuntimeError("the classifier service is closed")
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.out is not None
        return request.out

    def _take(self) -> list[tuple[_Request, int, int]]:
        """Up to ``max_batch`` rows from the queue's head: (request, start, stop) slices."""
        parts: list[tuple[_Request, int, int]] = []
        room = self.max_batch
        while self._queue and room:
            req = self._queue[0]
            n = min(room, int(req.pixels.shape[0]) - req.taken)
            parts.append((req, req.taken, req.taken + n))
            req.taken += n
            room -= n
            if req.taken == req.pixels.shape[0]:
                self._queue.popleft()
        return parts

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue and self._closed:
                    return
                parts = self._take()
            pixels = torch.cat([req.pixels[a:b] for req, a, b in parts])
            started = time.monotonic()
            try:
                probs = self.classifier.forward(pixels)
            except BaseException as e:  # every request in the batch gets the error
                for req, _, _ in parts:
                    req.error = e
                    req.done.set()
                continue
            self.busy_s += time.monotonic() - started
            self.batch_sizes[len(probs)] += 1
            if len({req.owner for req, _, _ in parts}) > 1:
                self.mixed_batches += 1
            row = 0
            for req, a, b in parts:
                if req.out is None:
                    req.out = np.empty((int(req.pixels.shape[0]), probs.shape[1]), np.float32)
                req.out[a:b] = probs[row : row + b - a]
                row += b - a
                req.missing -= b - a
                if req.missing == 0:
                    req.done.set()


class ServiceClient:
    """Looks like the classifier to a :class:`~fer_stream.stream.pipeline.Pipeline`; ``forward`` is the service's."""

    def __init__(self, service: ClassifierService, owner: int) -> None:
        self._service = service
        self._owner = owner

    def forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        return self._service.submit(pixel_values, self._owner)

    def warmup(self) -> None:  # the service's model was warmed up once, when it loaded
        pass

    def __getattr__(self, name: str) -> Any:  # preprocess, postprocess, labels, device, max_batch ...
        return getattr(self._service.classifier, name)
