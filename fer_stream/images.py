"""Reading still images from disk as RGB arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import SourceError

ImageLike = Union[str, Path, np.ndarray]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def check_image_file(path: str | Path) -> Path:
    """``path`` as a Path, or a SourceError saying why it is not an image file."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"image '{p}' does not exist; check the path")
    if p.is_dir():
        raise SourceError(f"'{p}' is a folder; pass image files, or the folder with --dir")
    return p


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as ``H x W x 3`` uint8 RGB (EXIF orientation applied, grey made RGB)."""
    p = check_image_file(path)
    # cv2.imread cannot take non-ASCII paths on every platform; decoding the bytes always works.
    data = np.fromfile(str(p), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"'{p}' is not an image OpenCV can read (supported: {', '.join(IMAGE_SUFFIXES)})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def as_rgb(image: ImageLike) -> np.ndarray:
    """A path or array as a C-contiguous ``H x W x 3`` uint8 RGB array."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def list_images(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    d = Path(folder)
    if not d.is_dir():
        raise SourceError(f"folder '{d}' does not exist; check the --dir path")
    return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (subfolders too), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise SourceError(f"image folder '{folder}' does not exist; pass a folder of face images (subfolders are searched)")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise SourceError(f"folder '{folder}' holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files
