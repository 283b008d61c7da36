"""Pieces shared by ``fer-stream train`` and ``train --from-review``: batches decoded by workers, mixed
precision, the colour-blind first convolution, logits, calibration and saving."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from fer_stream.io.images import read_image
from fer_stream.model.calibration import KEY as CALIBRATION_KEY
from fer_stream.model.calibration import fit_temperature, flag_split, reliability, softmax, threshold_for

Batches = Callable[[list[list[int]]], Any]  # index batches -> (images 0-255, targets) batches


def amp_dtype(precision: str, dev: torch.device) -> torch.dtype | None:
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return None
    return {"cuda": torch.float16, "npu": torch.float16, "mps": torch.float16}.get(dev.type)


def tie_colour_channels(net: torch.nn.Module) -> None:
    """Keep a colour-blind first convolution colour-blind.

    A base whose first convolution has the same weights for R, G and B (``samples/models/make_base.py``)
    answers to R + G + B only, so a colour camera's face gets the answer of its grey version. Colour
    casts in the augmentation would untie the channels; averaging the gradient over them keeps the tie.
    """
    first = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if first is None or first.weight.shape[1] != 3:
        return
    w = first.weight.detach()
    if not torch.allclose(w, w.mean(dim=1, keepdim=True).expand_as(w)):
        return
    first.weight.register_hook(lambda g: g.mean(dim=1, keepdim=True).expand_as(g).contiguous())


class _Batch:
    """Decodes a batch of image files and resizes them with the model's resampling (picklable, for workers)."""

    def __init__(self, files: list[Path], targets: list[int], raw: Any) -> None:
        self.files, self.targets, self.raw = files, targets, raw

    def __call__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.raw([read_image(self.files[i]) for i in idx]), torch.tensor([self.targets[i] for i in idx])


class Loader:
    """Batches of ``(images 0-255, targets)`` in a given order, decoded ahead by worker processes.

    Only the file list is held: memory does not grow with the data set, and ``workers`` processes
    decode the next batches while the model trains on this one.
    """

    def __init__(self, files: list[Path], targets: list[int], raw: Any, workers: int) -> None:
        self.batch = _Batch(files, targets, raw)
        self.workers = workers

    def __call__(self, batches: list[list[int]]) -> Any:
        from torch.utils.data import DataLoader

        # Each "item" is a whole batch: one task per batch keeps worker round-trips few.
        return DataLoader(
            batches,  # type: ignore[arg-type]  # a list of index batches is a map-style data set
            batch_size=None,
            collate_fn=self.batch,
            num_workers=self.workers,
            prefetch_factor=4 if self.workers else None,
        )


class Cached:
    """Every image decoded once (by the workers of a :class:`Loader`) into one uint8 tensor at the
    model's input size: batches then cost a copy instead of a decode (FER2013 at 64 px: 350 MB)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images, self.targets = images, targets

    @classmethod
    def decode(cls, loader: Loader, n: int, progress: bool = False) -> Cached:
        chunks = [list(range(i, min(n, i + 256))) for i in range(0, n, 256)]
        images, targets = [], []
        for x, t in tqdm(loader(chunks), total=len(chunks), desc="decode", unit="batch", leave=False, disable=not progress):
            images.append(x.round().clamp(0, 255).to(torch.uint8))
            targets.append(t)
        return cls(torch.cat(images), torch.cat(targets))

    def __call__(self, batches: list[list[int]]) -> Any:
        for idx in batches:
            i = torch.tensor(idx)
            yield self.images[i].float(), self.targets[i]


@torch.inference_mode()
def logits_of(net: torch.nn.Module, loader: Batches, idx: list[int], norm: Any, dev: torch.device, amp: Any = None) -> torch.Tensor:
    net.eval()
    parts = []
    for x, _ in loader([idx[i : i + 128] for i in range(0, len(idx), 128)]):
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            parts.append(net(pixel_values=norm(x).to(dev)).logits.float().cpu())
    return torch.cat(parts)


def calibrate(out: Path, loader: Batches, idx: list[int], norm: Any, dev: torch.device, target: float) -> dict[str, Any]:
    """Fit the best model's temperature on the validation split and store it, with the threshold at
    which unflagged answers are ``target`` right, in ``out/config.json`` (``fer_stream``)."""
    from transformers import AutoModelForImageClassification

    net = AutoModelForImageClassification.from_pretrained(str(out), local_files_only=True, use_safetensors=True).to(dev)
    logits = logits_of(net, loader, idx, norm, dev).numpy()
    t = torch.cat([t for _, t in loader([idx])]).numpy()
    temperature = fit_temperature(logits, t)
    p = softmax(logits, temperature)
    conf, ok = p.max(axis=1), p.argmax(axis=1) == t
    threshold = threshold_for(conf, ok, target)
    before = reliability(softmax(logits).max(axis=1), ok)
    after = reliability(conf, ok)
    path = out / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[CALIBRATION_KEY] = {"temperature": temperature, "threshold": threshold, "target_accuracy": target, "fitted_on": len(idx)}
    tmp = path.with_name(".config.json.new")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "ece_before": before.ece,
        "ece_after": after.ece,
        "at_threshold": flag_split(conf, ok, threshold) if threshold is not None else None,
        "at_0.7": flag_split(conf, ok, 0.7),
    }


def save_model(net: Any, processor: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
