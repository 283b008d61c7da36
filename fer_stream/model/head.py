"""The host-side ends of a classifier: images -> ``pixel_values``, probabilities -> predictions.

:class:`ClassifierHead` is what :class:`~fer_stream.model.classifier.EmotionClassifier` does
around its network, as an object of its own: a Ray task receives the model's head from the
classifier actor and pre- and postprocesses exactly as the model would, with the forward pass
on the actor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_stream.frames import Prediction
from fer_stream.io.images import ImageLike, as_rgb

if TYPE_CHECKING:  # torch only where a torch model runs: the ONNX Runtime path starts without it
    import torch


class ClassifierHead:
    """Pre- and postprocessing of one model: its image ``processor``, ``labels`` and ``threshold``.

    With ``fast`` (and a processor that only resizes and normalizes), preprocessing runs as
    batched tensor operations (:class:`~fer_stream.model.preprocess.TensorPreprocessor`);
    otherwise through the transformers processor. Predictions under ``threshold`` are flagged.
    """

    def __init__(
        self,
        processor: Any,
        labels: tuple[str, ...],
        threshold: float,
        *,
        fast: bool = True,
        arrays: Callable[[Sequence[np.ndarray]], np.ndarray] | None = None,
    ) -> None:
        self.processor = processor  # a transformers image processor (None with ``arrays``)
        self.labels = labels
        self.threshold = threshold
        # ``arrays``: a numpy preprocessor (ONNX Runtime's path, no torch); else torch tensors.
        self.array_preprocessor = arrays if fast else None
        self.tensor_preprocessor = None
        if fast and arrays is None:
            from fer_stream.model.preprocess import TensorPreprocessor

            self.tensor_preprocessor = TensorPreprocessor.from_processor(processor)

    @property
    def fast(self) -> bool:
        """Whether preprocessing runs as tensor or array operations (not the transformers processor)."""
        return self.tensor_preprocessor is not None or self.array_preprocessor is not None

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor | np.ndarray:
        """RGB arrays or paths -> the model's ``pixel_values`` batch (float32, on the host)."""
        arrays = [as_rgb(im) for im in images]
        if self.array_preprocessor is not None:
            return self.array_preprocessor(arrays)
        if self.tensor_preprocessor is not None:
            return self.tensor_preprocessor(arrays)
        pixels: torch.Tensor = self.processor(images=arrays, return_tensors="pt")["pixel_values"]
        return pixels

    def postprocess(self, probs: np.ndarray) -> list[Prediction]:
        """Probabilities -> predictions, labels in descending probability."""
        order = np.argsort(-probs, axis=1, kind="stable")
        ranked = np.take_along_axis(probs, order, axis=1).tolist()
        labels = self.labels
        return [
            Prediction(
                probs=tuple((labels[i], p) for i, p in zip(idx, row)),
                flagged=row[0] < self.threshold,
            )
            for idx, row in zip(order.tolist(), ranked)
        ]
