"""Reading still images from disk as RGB arrays."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from PIL import Image

from fer_stream.errors import SourceError

ImageLike = Union[str, Path, np.ndarray]  # noqa: UP007  (a runtime alias: `|` needs 3.10 objects)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
MAX_IMAGE_PIXELS = 120_000_000  # a 12000 x 10000 photo; a bigger "image" is refused before it is decoded
CHUNK_IMAGES = 16  # most images read, detected and classified together
CHUNK_PIXELS = 48_000_000  # most pixels of the images of one chunk (144 MB as RGB); one larger image is a chunk alone


def check_image_file(path: str | Path) -> Path:
    """``path`` as a Path, or a SourceError saying why it is not an image file."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"image '{p}' does not exist; check the path")
    if p.is_dir():
        raise SourceError(f"'{p}' is a folder; pass image files, or the folder with --dir")
    if p.suffix.lower() not in IMAGE_SUFFIXES:  # an image by another name is read from its header
        try:
            image_size(p)
        except SourceError:
            video = p.suffix.lower() in _VIDEO_SUFFIXES
            hint = f"; for a video use `fer-stream --source {p}`" if video else ""
            raise SourceError(f"'{p}' is not an image (supported: {', '.join(IMAGE_SUFFIXES)}){hint}") from None
    return p


def image_size(path: Path) -> tuple[int, int]:
    """Width and height from the file's header, without decoding it (Pillow reads headers lazily)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: we check the size ourselves
            with Image.open(p := Path(path)) as im:
                return im.size
    except Image.DecompressionBombError:
        raise SourceError(f"'{path}' declares an image too large to decode (over {MAX_IMAGE_PIXELS // 1_000_000} MP)") from None
    except Exception:
        raise SourceError(f"'{p}' is not an image that can be read (supported: {', '.join(IMAGE_SUFFIXES)})") from None


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """The image at ``path`` as ``H x W x 3`` uint8 RGB (EXIF orientation applied, grey made RGB).

    The size is checked from the header first: an image over ``max_pixels`` is an error, not an
    attempt to allocate gigabytes; an empty or broken file is an error naming it.
    """
    p = check_image_file(path)
    if p.stat().st_size == 0:
        raise SourceError(f"'{p}' is empty (0 bytes); not an image")
    w, h = image_size(p)
    if w * h > max_pixels:
        raise SourceError(
            f"'{p}' is {w}x{h} ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP fer-stream reads; scale it down first"
        )
    # cv2.imread cannot take non-ASCII paths on every platform; decoding the bytes always works.
    data = np.fromfile(str(p), dtype=np.uint8)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise SourceError(f"'{p}' is not an image OpenCV can read (supported: {', '.join(IMAGE_SUFFIXES)})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def chunk_by_pixels(pixels: Sequence[int], *, budget: int = CHUNK_PIXELS, most: int = CHUNK_IMAGES) -> list[range]:
    """Consecutive index ranges over ``pixels`` (each item's size): at most ``most`` items whose
    sizes add up to at most ``budget``; an item over ``budget`` forms a chunk alone.

    >>> chunk_by_pixels([30, 30, 30, 200, 10, 10], budget=64, most=4)
    [range(0, 2), range(2, 3), range(3, 4), range(4, 6)]
    """
    chunks: list[range] = []
    start, total = 0, 0
    for i, n in enumerate(pixels):
        if i > start and (total + n > budget or i - start >= most):
            chunks.append(range(start, i))
            start, total = i, 0
        total += n
    if start < len(pixels):
        chunks.append(range(start, len(pixels)))
    return chunks


def image_chunks(files: Sequence[Path], *, budget: int = CHUNK_PIXELS, most: int = CHUNK_IMAGES) -> list[list[Path]]:
    """``files`` in chunks of at most ``most`` images and ``budget`` pixels, sized from their headers
    (a file whose header cannot be read counts as 0 pixels: reading it fails without holding anything)."""
    sizes = []
    for f in files:
        try:
            w, h = image_size(f)
        except (SourceError, OSError):
            w = h = 0
        sizes.append(w * h)
    return [[files[i] for i in chunk] for chunk in chunk_by_pixels(sizes, budget=budget, most=most)]


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


SYNTHETIC_SEED = 0


def synthetic_faces(n: int, seed: int = SYNTHETIC_SEED, size: int = 224) -> list[np.ndarray]:
    """``n`` fixed-seed RGB images: smooth random fields, so every run and machine sees the same set."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 14, 14, 3), dtype=np.uint8)
    return [cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in small]
