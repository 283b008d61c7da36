"""What a pipeline, a batcher and the classifier service need of a classifier: :class:`Classifier`.

Three classes implement it: :class:`~fer_stream.model.classifier.EmotionClassifier` (the model
itself), :class:`~fer_stream.model.service.ServiceClient` (``fer-stream batch``: the forward pass
shared with other videos' pipelines) and ``RemoteClassifier`` (a Ray task: the forward pass on a
node's classifier actor). The two stand-ins pre- and postprocess with the model's
:class:`~fer_stream.model.head.ClassifierHead`, so every one gives the same rows and predictions.

Split as transformers pipelines are: ``preprocess`` (images -> ``pixel_values`` on the host),
``forward`` (``pixel_values`` -> ``(N, len(labels))`` float32 probabilities on the host) and
``postprocess`` (probabilities -> one :class:`~fer_stream.frames.Prediction` per row).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:  # only for the annotations: importing torch takes a second
    import numpy as np
    import torch

    from fer_stream.frames import Prediction
    from fer_stream.io.images import ImageLike
    from fer_stream.model.devices import HostDevice

    # A batch as the classifier's preprocessing gives it: torch tensors, or numpy arrays on the
    # ONNX Runtime path (which runs without torch).
    PixelValues: TypeAlias = torch.Tensor | np.ndarray


class Classifier(Protocol):
    """A face-expression classifier as the pipeline uses it; see the module docstring."""

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels, in the order of ``forward``'s columns."""
        ...

    @property
    def max_batch(self) -> int:
        """The most rows one ``forward`` call takes."""
        ...

    @property
    def device(self) -> torch.device | HostDevice | str:
        """Where the forward pass runs (for logs and summaries)."""
        ...

    @property
    def precision(self) -> str:
        """``fp32``, ``fp16``, ``bf16`` or ``int8`` (for summaries)."""
        ...

    def preprocess(self, images: Sequence[ImageLike]) -> PixelValues: ...

    def forward(self, pixel_values: PixelValues) -> np.ndarray: ...

    def postprocess(self, probs: np.ndarray) -> list[Prediction]: ...

    def warmup(self) -> None:
        """Make the first real batch as fast as the others (a no-op where the model lives elsewhere)."""
        ...
