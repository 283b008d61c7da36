"""The host-side ends of a classifier: images -> ``pixel_values``, probabilities -> predictions.

:class:`ClassifierHead` is what :class:`~fer_stream.model.classifier.EmotionClassifier` does
around its network, as an object of its own: a Ray task receives the model's head from the
classifier actor and pre- and postprocesses exactly as the model would, with the forward pass
on the actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fer_stream.frames import Prediction
from fer_stream.io.images import ImageLike, as_rgb
from fer_stream.model.preprocess import TensorPreprocessor


class ClassifierHead:
    """Pre- and postprocessing of one model: its image ``processor``, ``labels`` and ``threshold``.

    With ``fast`` (and a processor that only resizes and normalizes), preprocessing runs as
    batched tensor operations (:class:`~fer_stream.model.preprocess.TensorPreprocessor`);
    otherwise through the transformers processor. Predictions under ``threshold`` are flagged.
    """

    def __init__(self, processor: Any, labels: tuple[str, ...], threshold: float, *, fast: bool = True) -> None:
        self.processor = processor  # a transformers image processor (no common base class to name)
        self.labels = labels
        self.threshold = threshold
        self.tensor_preprocessor = TensorPreprocessor.from_processor(processor) if fast else None

    @property
    def fast(self) -> bool:
        """Whether preprocessing runs as tensor operations."""
        return self.tensor_preprocessor is not None

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """RGB arrays or paths -> the model's ``pixel_values`` batch (float32, on the host)."""
        arrays = [as_rgb(im) for im in images]
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
