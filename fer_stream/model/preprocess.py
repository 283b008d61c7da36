"""Crops -> ``pixel_values``: the image processor's resize and normalization as batched tensor operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class TensorPreprocessor:
    """A batch of RGB crops -> ``pixel_values``, as tensor operations.

    Does what a ViT-style image processor does (resize to a fixed size, rescale, normalize) with
    ``torch.nn.functional.interpolate(antialias=True)``, which follows PIL's resampling, and one
    vectorized normalization for the whole batch. transformers' own fast processors do the same
    but need a torchvision built for the installed torch, which the CPU wheel does not have;
    models whose processor crops or resizes by shortest edge keep the transformers processor.
    """

    _MODES = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL resample codes

    def __init__(self, height: int, width: int, mode: str, scale: float, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.size = (height, width)
        self.mode = mode
        # x * scale, then (x - mean) / std, folded into one multiply and one subtract.
        self._mul = (scale / std).reshape(1, -1, 1, 1)
        self._sub = (mean / std).reshape(1, -1, 1, 1)

    @classmethod
    def from_processor(cls, processor: object) -> TensorPreprocessor | None:
        """The equivalent of ``processor``, or ``None`` if it does more than resize and normalize."""

        def get(name: str, default: object = None) -> Any:  # a processor's settings: any type
            return getattr(processor, name, default)

        size = get("size") or {}

        def dim(key: str) -> Any:
            return size.get(key) if isinstance(size, dict) else getattr(size, key, None)

        resample = int(getattr(get("resample", 2), "value", get("resample", 2)))
        if get("do_center_crop") or get("do_pad") or not get("do_resize", False) or resample not in cls._MODES:
            return None
        if not (dim("height") and dim("width")) or dim("shortest_edge") or dim("longest_edge"):
            return None
        scale = float(get("rescale_factor", 1 / 255)) if get("do_rescale", True) else 1.0
        if get("do_normalize", True):
            mean = torch.tensor(get("image_mean"), dtype=torch.float32)
            std = torch.tensor(get("image_std"), dtype=torch.float32)
        else:
            mean, std = torch.zeros(3), torch.ones(3)
        return cls(int(dim("height")), int(dim("width")), cls._MODES[resample], scale, mean, std)

    def __call__(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        h, w = self.size
        out = torch.empty((len(images), 3, h, w), dtype=torch.float32)
        for i, image in enumerate(images):
            x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0)
            if x.shape[-2:] != (h, w):
                x = torch.nn.functional.interpolate(
                    x.float(),
                    size=(h, w),
                    mode=self.mode,
                    antialias=self.mode != "nearest",
                    **({} if self.mode == "nearest" else {"align_corners": False}),
                )
                x = x.round_().clamp_(0, 255)  # PIL resizes to uint8
            out[i] = x[0]
        return out.mul_(self._mul).sub_(self._sub)
