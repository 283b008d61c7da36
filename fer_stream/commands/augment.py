"""Training augmentations of a batch of 0-255 float images (N, 3, H, W), seeded by a ``torch.Generator``.

Three levels (``fer-stream train --augment``):

- ``basic``: flips, +-20 % brightness/contrast/saturation, rotations up to 10 degrees, 5 % shifts and zooms.
- ``video`` (the default): what makes a 48x48 grey web crop look like a face cut from a video frame,
  on top of stronger geometry (rotations up to 15 degrees, 10 % shifts, zooms of 0.85-1.15): a colour
  cast and gamma on the grey-to-RGB copy, a lighting gradient across the face, blur, down- and
  up-scaling, JPEG compression, sensor noise. Each is applied to a random part of the batch.
- ``none``.

Random erasing (small occlusions: a hand, glasses' glare, a microphone) and mixup/cutmix are separate
switches (``--erase``, ``--mixup``, ``--cutmix``) because they change what a label means for the loss.

Written with torch tensor operations (``affine_grid``/``grid_sample``, ``conv2d``) because
torchvision's transforms need a torchvision built for the installed torch, which the CPU wheel does
not have; JPEG goes through OpenCV's encoder (already a dependency for webcams), one image at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LEVELS = ("none", "basic", "video")


def _u(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _pick(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen) < p


def geometry(x: torch.Tensor, gen: torch.Generator, *, degrees: float, shift: float, zoom: float) -> torch.Tensor:
    """Random flips and one affine change per image: rotation up to ``degrees``, shifts up to ``shift``
    of the size, zooms within ``1 +- zoom``; edges filled by reflection."""
    n = x.shape[0]
    x = torch.where(_pick(n, 0.5, gen)[:, None, None, None], x.flip(-1), x)
    angle = _u(n, -1, 1, gen) * math.radians(degrees)
    scale = 1 + _u(n, -1, 1, gen) * zoom
    move = _u(2 * n, -1, 1, gen).view(n, 2) * shift * 2  # affine_grid's units: the image spans [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, move[:, 0]], 1), torch.stack([sin, cos, move[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def jitter(x: torch.Tensor, gen: torch.Generator, amount: float = 0.2) -> torch.Tensor:
    """Brightness, contrast and saturation, each within ``1 +- amount``."""
    n = x.shape[0]
    b, c, s = (1 + _u(n, -amount, amount, gen).view(n, 1, 1, 1) for _ in range(3))
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    grey = x.mean(dim=1, keepdim=True)
    return (x - grey) * s + grey


def colour_cast(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """A white-balance error (each channel's gain within 0.8-1.2) and a gamma of 0.7-1.4."""
    n = x.shape[0]
    on = _pick(n, p, gen).view(n, 1, 1, 1)
    gain = _u(3 * n, 0.8, 1.2, gen).view(n, 3, 1, 1)
    gamma = torch.exp(_u(n, math.log(0.7), math.log(1.4), gen)).view(n, 1, 1, 1)
    cast = (x.clamp(0, 255) / 255).pow(gamma) * 255 * gain
    return torch.where(on, cast, x)


def lighting(x: torch.Tensor, gen: torch.Generator, p: float = 0.4) -> torch.Tensor:
    """Side light: the image multiplied by a linear ramp (0.45-1.0 to 1.0-1.55) in a random direction."""
    n, _, h, w = x.shape
    on = _pick(n, p, gen).view(n, 1, 1, 1)
    angle = _u(n, 0, 2 * math.pi, gen).view(n, 1, 1)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    ramp = (xs * torch.cos(angle) + ys * torch.sin(angle)) / math.sqrt(2)  # -1 .. 1 across the image
    strength = _u(n, 0.1, 0.55, gen).view(n, 1, 1)
    return torch.where(on, x * (1 + strength * ramp).unsqueeze(1), x)


def blur(x: torch.Tensor, gen: torch.Generator, p: float = 0.3, max_sigma: float = 1.6) -> torch.Tensor:
    """Gaussian blur (sigma 0.3-``max_sigma`` px at the model's input size) on part of the batch.

    One sigma for the whole batch keeps it one separable convolution; which images get it is random.
    """
    n, ch, _, _ = x.shape
    on = _pick(n, p, gen)
    if not on.any():
        return x
    sigma = float(_u(1, 0.3, max_sigma, gen))
    r = max(1, math.ceil(2.5 * sigma))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    y = x[on]
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(ch, 1, 1, 1), groups=ch)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(ch, 1, 1, 1), groups=ch)
    out = x.clone()
    out[on] = y
    return out


def rescale(x: torch.Tensor, gen: torch.Generator, p: float = 0.3, smallest: float = 0.35) -> torch.Tensor:
    """A face seen at low resolution: part of the batch down-scaled (to ``smallest``-0.8 of its size) and back."""
    n, _, h, w = x.shape
    on = _pick(n, p, gen)
    if not on.any():
        return x
    f = float(_u(1, smallest, 0.8, gen))
    small = F.interpolate(x[on], size=(max(8, round(h * f)), max(8, round(w * f))), mode="area")
    out = x.clone()
    out[on] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def jpeg(x: torch.Tensor, gen: torch.Generator, p: float = 0.3, quality: tuple[int, int] = (15, 80)) -> torch.Tensor:
    """JPEG compression at a random quality on part of the batch (OpenCV's encoder)."""
    import cv2

    n = x.shape[0]
    on = _pick(n, p, gen).tolist()
    q = torch.randint(quality[0], quality[1] + 1, (n,), generator=gen).tolist()
    if not any(on):
        return x
    out = x.clone()
    arr = x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    for i in (i for i in range(n) if on[i]):
        ok, buf = cv2.imencode(".jpg", arr[i], [cv2.IMWRITE_JPEG_QUALITY, int(q[i])])
        back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else None
        if back is not None:
            out[i] = torch.from_numpy(np.ascontiguousarray(back.reshape(arr[i].shape))).permute(2, 0, 1)
    return out


def noise(x: torch.Tensor, gen: torch.Generator, p: float = 0.3, max_std: float = 8.0) -> torch.Tensor:
    """Sensor noise: Gaussian, up to ``max_std`` grey levels, on part of the batch."""
    n = x.shape[0]
    on = _pick(n, p, gen).view(n, 1, 1, 1)
    std = _u(n, 1.0, max_std, gen).view(n, 1, 1, 1)
    return torch.where(on, x + torch.randn(x.shape, generator=gen) * std, x)


def erase(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Random erasing: with probability ``p`` one rectangle (2-15 % of the face, aspect 0.3-3.3) is
    replaced by noise or a flat grey: a hand, a microphone, a reflection."""
    n, ch, h, w = x.shape
    if p <= 0:
        return x
    out = x.clone()
    on = _pick(n, p, gen).tolist()
    area = _u(n, 0.02, 0.15, gen).tolist()
    aspect = torch.exp(_u(n, math.log(0.3), math.log(3.3), gen)).tolist()
    pos = torch.rand(n, 2, generator=gen).tolist()
    flat = _pick(n, 0.5, gen).tolist()
    level = _u(n, 0, 255, gen).tolist()
    for i in (i for i in range(n) if on[i]):
        eh = min(h, max(1, round(math.sqrt(area[i] * h * w * aspect[i]))))
        ew = min(w, max(1, round(math.sqrt(area[i] * h * w / aspect[i]))))
        top, left = int(pos[i][0] * (h - eh + 1)), int(pos[i][1] * (w - ew + 1))
        fill = torch.full((ch, eh, ew), level[i]) if flat[i] else torch.rand(ch, eh, ew, generator=gen) * 255
        out[i, :, top : top + eh, left : left + ew] = fill
    return out


def augment(x: torch.Tensor, gen: torch.Generator, level: str = "basic", erase_p: float = 0.0) -> torch.Tensor:
    """The batch ``x`` (0-255) augmented at ``level`` (``none`` | ``basic`` | ``video``), then erased."""
    if level == "basic":
        x = jitter(geometry(x, gen, degrees=10, shift=0.05, zoom=0.05), gen)
    elif level == "video":
        x = geometry(x, gen, degrees=15, shift=0.1, zoom=0.15)
        x = colour_cast(jitter(x, gen, 0.25), gen)
        x = lighting(x, gen)
        x = rescale(blur(x, gen), gen)
        x = noise(jpeg(x.clamp(0, 255), gen), gen)
    elif level != "none":
        raise ValueError(f"unknown augmentation level {level!r}; one of {', '.join(LEVELS)}")
    return erase(x.clamp(0, 255), gen, erase_p)


@dataclass(frozen=True)
class Mixed:
    """A batch after mixup or cutmix: the loss is ``lam * loss(a) + (1 - lam) * loss(b)``."""

    x: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    lam: float


def mix(x: torch.Tensor, t: torch.Tensor, gen: torch.Generator, *, mixup: float, cutmix: float, p: float) -> Mixed:
    """With probability ``p``, mixup (images blended, weight ~ Beta(mixup, mixup)) or cutmix (a box of
    one image pasted into another, its area ~ Beta(cutmix, cutmix)), the two equally likely when both
    are on; otherwise the batch as it is (``lam`` = 1)."""
    kinds = [k for k, a in (("mixup", mixup), ("cutmix", cutmix)) if a > 0]
    if not kinds or float(torch.rand(1, generator=gen)) >= p:
        return Mixed(x, t, t, 1.0)
    kind = kinds[int(torch.randint(len(kinds), (1,), generator=gen))]
    alpha = mixup if kind == "mixup" else cutmix
    lam = _beta(alpha, gen)
    perm = torch.randperm(x.shape[0], generator=gen)
    if kind == "mixup":
        return Mixed(lam * x + (1 - lam) * x[perm], t, t[perm], lam)
    h, w = x.shape[-2:]
    ch, cw = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=gen)), int(torch.randint(w, (1,), generator=gen))
    top, bottom = max(0, cy - ch // 2), min(h, cy + ch - ch // 2)
    left, right = max(0, cx - cw // 2), min(w, cx + cw - cw // 2)
    out = x.clone()
    out[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (h * w)  # the pasted box's real area, after clipping at the edges
    return Mixed(out, t, t[perm], lam)


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from the seeded generator (torch's distributions ignore generators)."""
    g1 = torch._standard_gamma(torch.full((2,), alpha), generator=gen)
    return float(g1[0] / g1.sum())
