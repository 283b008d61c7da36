"""Where model files come from: the detector's cache and download, and ``models pull``.

The detector model is looked for, in order: an explicit path (``--detector-model`` or the config),
``$FER_STREAM_DETECTOR_MODEL``, the user cache; failing all three, MediaPipe's published
``blaze_face_short_range.tflite`` is downloaded once into the cache. The classifier is loaded by
transformers from a local folder or the Hugging Face cache.
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ModelError

DETECTOR_FILE = "blaze_face_short_range.tflite"
DETECTOR_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_detector/"
    "blaze_face_short_range/float16/latest/blaze_face_short_range.tflite"
)
ENV_DETECTOR = "FER_STREAM_DETECTOR_MODEL"
ENV_DETECTOR_URL = "FER_STREAM_DETECTOR_URL"  # a mirror, for sites that cannot reach Google's storage
ENV_CACHE = "FER_STREAM_CACHE"


def cache_dir() -> Path:
    """``$FER_STREAM_CACHE``, else ``$XDG_CACHE_HOME/fer-stream``, else ``~/.cache/fer-stream``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer-stream"


def cached_detector_path() -> Path:
    return cache_dir() / DETECTOR_FILE


def resolve_detector_model(explicit: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """The detector model file to use, downloading it into the cache if nothing else is found."""
    for origin, value in (("--detector-model", explicit), (f"${ENV_DETECTOR}", os.environ.get(ENV_DETECTOR))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelError(f"detector model '{path}' (from {origin}) does not exist; point it at {DETECTOR_FILE}")
            return path
    cached = cached_detector_path()
    if cached.is_file():
        return cached
    if not download:
        raise ModelError(f"no detector model cached at {cached}; run `fer-stream models pull`")
    return download_detector(cached)


def download_detector(dest: Path | None = None, url: str | None = None) -> Path:
    """Download the BlazeFace model to ``dest`` atomically, checking that MediaPipe loads it."""
    dest = dest or cached_detector_path()
    url = url or os.environ.get(ENV_DETECTOR_URL) or DETECTOR_URL
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".tflite", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ModelError(
                f"no face-detector model: cannot download {DETECTOR_FILE} ({reason}); run "
                f"`fer-stream models pull` while online, or set {ENV_DETECTOR} to a local copy"
            ) from None
        _check_detector_loads(tmp)
        os.replace(tmp, dest)  # atomic: a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_detector_loads(path: Path) -> None:
    from .detect import FaceDetector

    try:
        FaceDetector(path).close()
    except Exception as e:
        raise ModelError(f"the downloaded detector model does not load ({e}); try `fer-stream models pull` again") from None


def pull_classifier(model: str) -> Path:
    """Download a hub classifier's config, processor and safetensors weights into the HF cache."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]
        )
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot download classifier '{model}' from the Hugging Face Hub: {first}") from None
    if not any(Path(folder).glob("*.safetensors")):
        raise ModelError(f"classifier '{model}' publishes no safetensors weights; fer-stream loads safetensors only")
    return Path(folder)
