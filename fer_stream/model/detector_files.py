"""Where model files come from: the detectors' and the landmark model's cache and download, and ``models pull``.

Each MediaPipe model (short-range and full-range BlazeFace, the face landmark model) is looked
for, in order: an explicit path (``--detector-model`` / ``--full-range-model`` or the config),
its environment variable (``$FER_STREAM_DETECTOR_MODEL`` / ``$FER_STREAM_FULL_RANGE_MODEL`` /
``$FER_STREAM_LANDMARK_MODEL``), the user cache; failing all three, MediaPipe's published file is
downloaded once into the cache. The classifier is loaded by transformers from a local folder or
the Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fer_stream.errors import ModelError


@dataclass(frozen=True)
class ModelFile:
    """A published MediaPipe model: its file name, where MediaPipe publishes it, the variables that override it."""

    file: str
    url: str
    env_path: str
    env_url: str  # a mirror, for sites that cannot reach Google's storage
    flag: str
    sha256: str  # of the published file: a download that differs is refused
    max_bytes: int = 0  # a download larger than this is refused (0: MAX_DOWNLOAD_BYTES)
    what: str = "detector"  # in messages: "no face-detector model", "detector model '...' does not exist"
    label: str = ""  # what `models pull` calls it ("" = "detector (<kind>-range)")


DETECTOR_MODELS = {
    "short": ModelFile(
        "blaze_face_short_range.tflite",
        "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/latest/blaze_face_short_range.tflite",
        "FER_STREAM_DETECTOR_MODEL",
        "FER_STREAM_DETECTOR_URL",
        "--detector-model",
        "2099d256f1290a0727ef5f3c561e3e23f3595aef8764b9edb4ab221d12c7bd5e",
    ),
    # MediaPipe's full-range model, as its face_detection module uses it (published with MediaPipe's assets).
    "full": ModelFile(
        "face_detection_full_range_sparse.tflite",
        "https://storage.googleapis.com/mediapipe-assets/face_detection_full_range_sparse.tflite",
        "FER_STREAM_FULL_RANGE_MODEL",
        "FER_STREAM_FULL_RANGE_URL",
        "--full-range-model",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    # MediaPipe's face landmark model (FaceMesh v1, 468 points), as its face_landmark module uses it.
    "landmark": ModelFile(
        "face_landmark.tflite",
        "https://storage.googleapis.com/mediapipe-assets/face_landmark.tflite",
        "FER_STREAM_LANDMARK_MODEL",
        "FER_STREAM_LANDMARK_URL",
        "--landmark-model",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        max_bytes=1242398,  # the published file's size
        what="landmark",
        label="landmark model",
    ),
}
DETECTOR_FILE = DETECTOR_MODELS["short"].file
DETECTOR_URL = DETECTOR_MODELS["short"].url
ENV_DETECTOR = DETECTOR_MODELS["short"].env_path
ENV_DETECTOR_URL = DETECTOR_MODELS["short"].env_url
ENV_CACHE = "FER_STREAM_CACHE"
ENV_TRUST_MIRROR = "FER_STREAM_TRUST_MIRROR"  # "1": a mirror may use plain http (a local one, say)
MAX_DOWNLOAD_BYTES = 16 << 20  # the models are under 1 MB; more is not a model


def cache_dir() -> Path:
    """``$FER_STREAM_CACHE``, else ``$XDG_CACHE_HOME/fer-stream``, else ``~/.cache/fer-stream``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fer-stream"


def cached_detector_path(kind: str = "short") -> Path:
    return cache_dir() / DETECTOR_MODELS[kind].file


def _nouns(kinds: list[str]) -> str:
    """``face-detector``, ``face-landmark`` or ``face-detector or face-landmark``, for ``kinds``' models."""
    return " or ".join(f"face-{w}" for w in dict.fromkeys(DETECTOR_MODELS[k].what for k in kinds))


class _Unavailable(ModelError):
    """A detector model neither given, cached nor downloadable (the network: offline, refused)."""

    def __init__(self, message: str, kind: str, reason: str) -> None:
        super().__init__(message)
        self.kind, self.reason = kind, reason


def _offline_fix(kinds: list[str], pulling: bool) -> str:
    """What to do when ``kinds`` cannot be downloaded; never "run the command that just failed"."""
    paths = " and ".join(DETECTOR_MODELS[k].env_path for k in kinds)
    copies = "local copies" if len(kinds) > 1 else "a local copy"
    if pulling:
        mirrors = " or ".join(DETECTOR_MODELS[k].env_url for k in kinds)
        return f"check the network (a proxy?), set {mirrors} to a mirror, or set {paths} to {copies}"
    skip = " (or run with --no-verify, without the face landmark model)" if "landmark" in kinds else ""
    return f"run `fer-stream models pull` while online, or set {paths} to {copies}{skip}"


def resolve_detector_models(
    wanted: Mapping[str, str | os.PathLike[str] | None], *, download: bool = True, pulling: bool = False, force: bool = False
) -> dict[str, Path]:
    """The model file of each detector kind in ``wanted`` (kind -> explicit path or None), all of
    them at once: every file that is missing is named in one error. ``pulling``: called by
    ``fer-stream models pull`` (its errors then say what else to do); ``force``: download again
    what is cached (a path given explicitly or by the environment still wins)."""
    found: dict[str, Path] = {}
    offline: list[_Unavailable] = []
    other: list[str] = []
    for kind, explicit in wanted.items():
        try:
            found[kind] = _resolve_one(explicit, kind, download=download, pulling=pulling, force=force)
        except _Unavailable as e:
            offline.append(e)
        except ModelError as e:
            other.append(str(e))
    if offline:
        kinds = [e.kind for e in offline]
        files = " and ".join(DETECTOR_MODELS[k].file for k in kinds)
        reasons = "; ".join(dict.fromkeys(e.reason for e in offline))
        other.insert(0, f"no {_nouns(kinds)} model: cannot download {files} ({reasons}); {_offline_fix(kinds, pulling)}")
    if other:
        raise ModelError("; also ".join(other))
    return found


def resolve_detector_model(explicit: str | os.PathLike[str] | None = None, *, kind: str = "short", download: bool = True) -> Path:
    """The ``kind`` (short or full) detector model file to use, downloading it into the cache if nothing else is found."""
    return resolve_detector_models({kind: explicit}, download=download)[kind]


def resolve_landmark_model(explicit: str | os.PathLike[str] | None = None, *, download: bool = True) -> Path:
    """The face landmark model file to use (explicit path, ``$FER_STREAM_LANDMARK_MODEL``, the cache, a download)."""
    return resolve_detector_models({"landmark": explicit}, download=download)["landmark"]


def _resolve_one(explicit: str | os.PathLike[str] | None, kind: str, *, download: bool, pulling: bool, force: bool) -> Path:
    m = DETECTOR_MODELS[kind]
    for origin, value in ((m.flag, explicit), (f"${m.env_path}", os.environ.get(m.env_path))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelError(f"{m.what} model '{path}' (from {origin}) does not exist; point it at {m.file}")
            return path
    cached = cached_detector_path(kind)
    if cached.is_file() and not force:
        return cached
    if not download:
        raise ModelError(f"no {m.what} model cached at {cached}; run `fer-stream models pull`")
    return download_detector(cached, kind=kind, pulling=pulling)


def download_detector(dest: Path | None = None, url: str | None = None, *, kind: str = "short", pulling: bool = False) -> Path:
    """Download a MediaPipe model (BlazeFace, face landmarks) to ``dest`` atomically, checking that it loads."""
    m = DETECTOR_MODELS[kind]
    dest = dest or cached_detector_path(kind)
    url = url or os.environ.get(m.env_url) or m.url
    if not url.lower().startswith("https://") and os.environ.get(ENV_TRUST_MIRROR) != "1":
        raise ModelError(
            f"refusing to download {m.file} from '{url}': not https; set {ENV_TRUST_MIRROR}=1 to trust "
            f"this mirror, or point {m.env_path} at a local copy"
        )
    cap = m.max_bytes or MAX_DOWNLOAD_BYTES
    # A file with a known size: anything longer is not it.
    limit = f"the published file is {cap} bytes" if m.max_bytes else "no model is that big"
    most = f"{cap} bytes" if m.max_bytes else f"{cap >> 20} MB"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".download-", suffix=".tflite", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
                declared = resp.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > cap:
                    big = f"{declared} bytes" if m.max_bytes else f"{int(declared) / 1e6:.0f} MB"
                    raise ModelError(f"refusing {m.file} from '{url}': it is {big}, {limit}")
                while chunk := resp.read(1 << 16):
                    size += len(chunk)
                    if size > cap:
                        raise ModelError(f"refusing {m.file} from '{url}': more than {most}, {limit}")
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            reason = str(getattr(e, "reason", e))
            raise _Unavailable(
                f"no {_nouns([kind])} model: cannot download {m.file} ({reason}); {_offline_fix([kind], pulling)}", kind, reason
            ) from None
        if digest.hexdigest() != m.sha256:
            raise ModelError(
                f"the downloaded {m.file} is not MediaPipe's published file (SHA-256 {digest.hexdigest()[:16]}..., "
                f"expected {m.sha256[:16]}...); not kept. Check the mirror, or point {m.env_path} at a copy you trust"
            )
        _check_detector_loads(tmp, kind, pulling)
        os.replace(tmp, dest)  # atomic: a reader never sees half a file
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_detector_loads(path: Path, kind: str, pulling: bool = False) -> None:
    """The file loads as the model it claims to be: LiteRT for the full-range and landmark ones,
    MediaPipe Tasks (what runs it) for the short-range one."""
    # Here, not at the top: blazeface imports OpenCV, and finding or pulling files needs none of it.
    from fer_stream.model.blazeface import FULL_RANGE, BlazeFace, native_stderr_silenced
    from fer_stream.model.landmarks import FaceLandmarker

    try:
        if kind == "landmark":
            FaceLandmarker(path).close()
        elif kind == "full":
            BlazeFace(path, FULL_RANGE).close()
        else:
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceDetectorOptions(base_options=BaseOptions(model_asset_path=str(path)))
            with native_stderr_silenced():
                vision.FaceDetector.create_from_options(options).close()
    except Exception as e:
        again = "try again" if pulling else "try `fer-stream models pull`"
        raise ModelError(f"the downloaded {DETECTOR_MODELS[kind].what} model does not load ({e}); {again}") from None
