"""Crops -> ``pixel_values`` as a numpy array, without torch or transformers.

What a ViT-style image processor does (resize with PIL's resampling, rescale, normalize), from the
processor's settings as ``preprocessor_config.json`` (or an exported file's metadata) holds them.
It feeds ONNX Runtime on the start-fast path, where importing torch and transformers would cost
seconds before the first frame. The resize is PIL's own, as transformers' PIL processors do it, so
the answers match the transformers processor's; :class:`~fer_stream.model.preprocess.TensorPreprocessor`
(the torch path) follows the same resampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_PIL_MODES = {0: 0, 2: 2, 3: 3}  # nearest, bilinear, bicubic (PIL's Resampling codes)


class ArrayPreprocessor:
    """Resize to ``height`` x ``width`` with PIL (``resample``), then ``x * scale``, then ``(x - mean) / std``."""

    def __init__(self, height: int, width: int, resample: int, scale: float, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = (height, width)
        self.resample = resample
        std_a = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._mul = (scale / std_a).astype(np.float32)
        self._sub = (np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1) / std_a).astype(np.float32)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> ArrayPreprocessor | None:
        """The equivalent of a processor with these settings, or ``None`` if it does more than resize and normalize."""
        size = settings.get("size") or {}
        resample = int(settings.get("resample", 2))
        if settings.get("do_center_crop") or settings.get("do_pad") or not settings.get("do_resize", False) or resample not in _PIL_MODES:
            return None
        if not isinstance(size, Mapping) or not (size.get("height") and size.get("width")):
            return None
        if size.get("shortest_edge") or size.get("longest_edge"):
            return None
        scale = float(settings.get("rescale_factor", 1 / 255)) if settings.get("do_rescale", True) else 1.0
        if settings.get("do_normalize", True):
            mean, std = settings.get("image_mean"), settings.get("image_std")
            if not (isinstance(mean, Sequence) and isinstance(std, Sequence) and len(mean) == len(std) == 3):
                return None
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return cls(int(size["height"]), int(size["width"]), resample, scale, [float(m) for m in mean], [float(s) for s in std])

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from PIL import Image

        h, w = self.size
        out = np.empty((len(images), h, w, 3), dtype=np.uint8)
        for i, image in enumerate(images):
            rgb = np.ascontiguousarray(image)
            out[i] = rgb if rgb.shape[:2] == (h, w) else np.asarray(Image.fromarray(rgb).resize((w, h), self.resample))
        x = out.transpose(0, 3, 1, 2).astype(np.float32)
        return np.ascontiguousarray(x * self._mul - self._sub)
