"""One classifier serving many exact-mode pipelines: their batches are merged into the model's.

``fer-stream batch`` analyses several videos at once; each video's pipeline batches its own
crops (up to ``max_batch``, waiting ``batch_wait``) and hands them to ``forward``. Instead of
each pipeline owning a model, every pipeline gets a :class:`ServiceClient` whose ``forward``
queues the rows here; one thread runs the model on up to ``max_batch`` queued rows at a time,
taken across pipelines in arrival order (a request may be split over two model batches), so the
model's batches stay full while any video has faces waiting, and the model loads once.

It is the exact-mode sibling of :class:`fer_stream.stream.live.LiveClassifier`, which mixes cameras'
newest crops; written here because the requests are blocking calls from pipeline threads (a
few lines of queue and condition), not a job for a serving framework. Queueing rows, taking them
and the forward pass are those of exact mode's batcher (:mod:`fer_stream.model.batching`).

>>> service = ClassifierService(clf)                                  # doctest: +SKIP
>>> with service:                                     # the model thread runs  # doctest: +SKIP
...     probs = service.client().forward(clf.preprocess(crops))
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fer_stream.frames import Prediction
from fer_stream.io.images import ImageLike
from fer_stream.model.batching import BatchLog, RowQueue, forward_rows
from fer_stream.model.contract import Classifier

if TYPE_CHECKING:  # torch is imported where a torch model runs
    import torch

    from fer_stream.model.contract import PixelValues
    from fer_stream.model.devices import HostDevice


@dataclass(eq=False)
class _Request:
    """Rows one pipeline asked for; filled in place as model batches finish."""

    pixels: PixelValues
    owner: int
    out: np.ndarray | None = None
    missing: int = field(init=False)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.missing = int(self.pixels.shape[0])


class ClassifierService:
    """Runs ``classifier`` on a thread for every :class:`ServiceClient`, merging their rows into batches."""

    def __init__(self, classifier: Classifier, *, max_batch: int | None = None) -> None:
        self.classifier = classifier
        self.max_batch = max_batch or classifier.max_batch
        self._queue: RowQueue[_Request] = RowQueue()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.log = BatchLog()
        self._clients = 0

    @property
    def batch_sizes(self) -> Counter[int]:
        return self.log.sizes

    @property
    def mixed_batches(self) -> int:
        """Batches holding rows of more than one pipeline."""
        return self.log.mixed

    @property
    def busy_s(self) -> float:
        """Time spent in the model."""
        return self.log.busy_s

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

    def submit(self, pixels: PixelValues, owner: int = 0) -> np.ndarray:
        """Probabilities for ``pixels`` (blocks until every row has been through the model)."""
        if pixels.shape[0] == 0:
            return np.zeros((0, len(self.classifier.labels)), np.float32)
        request = _Request(pixels, owner)
        with self._cond:
            if self._closed:
                raise RuntimeError("the classifier service is closed")
            self._queue.push(request, int(pixels.shape[0]))
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.out is not None
        return request.out

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue and self._closed:
                    return
                parts = self._queue.take(self.max_batch)
            try:
                probs = forward_rows(self.classifier.forward, parts, lambda r: r.pixels, self.log, owner=lambda r: r.owner)
            except BaseException as e:  # every request in the batch gets the error
                for part in parts:
                    part.request.error = e
                    part.request.done.set()
                continue
            row = 0
            for part in parts:
                req, a, b = part.request, part.start, part.stop
                if req.out is None:
                    req.out = np.empty((int(req.pixels.shape[0]), probs.shape[1]), np.float32)
                req.out[a:b] = probs[row : row + b - a]
                row += b - a
                req.missing -= b - a
                if req.missing == 0:
                    req.done.set()


class ServiceClient:
    """The classifier as a :class:`~fer_stream.stream.pipeline.Pipeline` sees it, with ``forward``
    going through the service; everything else is the service's classifier's."""

    def __init__(self, service: ClassifierService, owner: int) -> None:
        self._service = service
        self._owner = owner
        self._classifier = service.classifier

    @property
    def labels(self) -> tuple[str, ...]:
        return self._classifier.labels

    @property
    def max_batch(self) -> int:
        return self._classifier.max_batch

    @property
    def device(self) -> torch.device | HostDevice | str:
        return self._classifier.device

    @property
    def precision(self) -> str:
        return self._classifier.precision

    def preprocess(self, images: Sequence[ImageLike]) -> PixelValues:
        return self._classifier.preprocess(images)

    def forward(self, pixel_values: PixelValues) -> np.ndarray:
        return self._service.submit(pixel_values, self._owner)

    def postprocess(self, probs: np.ndarray) -> list[Prediction]:
        return self._classifier.postprocess(probs)

    def warmup(self) -> None:  # the service's model was warmed up once, when it loaded
        pass


_implements: type[Classifier] = ServiceClient  # checked by mypy: the client is a whole classifier
