"""Loading classifiers: a Hugging Face hub id or a local ``save_pretrained`` folder, safetensors
only and never remote code; ``pull_classifier`` fetches one into the cache for offline use."""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fer_stream.config import DEFAULT_MODEL
from fer_stream.errors import ModelError, first_line
from fer_stream.model.metadata import WEIGHTS, WEIGHTS_INDEX, check_folder, check_weights_fit


def _quiet_transformers() -> None:
    import huggingface_hub.utils
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()


# A hub id: ``name`` or ``owner/name`` of letters, digits, ``-``, ``_`` and ``.``.
_HUB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?")
SHIPPED_MODEL = Path("samples") / "models" / "fer2013-video"  # in the repository, trained with `fer-stream train`


def _looks_like_path(model: str) -> bool:
    """Anything on disk, ending in a slash, or not shaped like a hub id is a path; the rest are hub ids."""
    if Path(model).expanduser().exists() or model.endswith(("/", "\\")):
        return True
    return not (_HUB_ID.fullmatch(model) and ".." not in model and len(model) <= 96)


def shipped_model() -> str:
    """How to name the model shipped in ``samples/models/fer2013-video`` from here (works offline)."""
    folder = Path(__file__).resolve().parents[2] / SHIPPED_MODEL
    if not folder.is_dir():
        return f"{SHIPPED_MODEL.as_posix()} (in the fer-stream repository)"
    try:
        return folder.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(folder)


def _check_local_folder(folder: Path, model: str) -> None:
    if not folder.exists():
        raise ModelError(
            f"no such model folder '{model}'; pass a folder written by save_pretrained, a hub id like {DEFAULT_MODEL}, "
            f"or the model shipped with fer-stream: --model {shipped_model()}"
        )
    if not folder.is_dir():
        raise ModelError(f"model '{folder}' is a file; pass the folder that holds config.json and model.safetensors")
    if not (folder / "config.json").is_file():
        raise ModelError(f"'{folder}' is not a model folder (no config.json); pass a folder written by save_pretrained, or a hub id")
    if not any(folder.glob("*.safetensors")):
        raise ModelError(
            f"model folder '{folder}' has no .safetensors weights; fer-stream loads safetensors only "
            "(re-save the model with save_pretrained(..., safe_serialization=True))"
        )
    if not (folder / "preprocessor_config.json").is_file():
        raise ModelError(f"model folder '{folder}' has no preprocessor_config.json; save the image processor with save_pretrained too")


def _hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face Hub answers at all (proxies honoured), without the library's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint + "/api/models?limit=1", method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False


def _complete(folder: Path) -> bool:
    names = ("config.json", "preprocessor_config.json")
    return all((folder / n).is_file() for n in names) and any((folder / n).is_file() for n in (WEIGHTS, WEIGHTS_INDEX))


def _hub_folder(model: str) -> Path:
    """The Hugging Face cache's folder of hub id ``model``, fetched (settings checked first) when
    it is not there and the Hub answers."""
    from huggingface_hub import snapshot_download

    try:
        cached = Path(snapshot_download(model, local_files_only=True))
        if _complete(cached):
            return cached
    except Exception:  # not cached (the library's several error types for it)
        pass
    if not _hub_reachable():
        raise ModelError(
            f"classifier '{model}' is not in the local Hugging Face cache and the Hub cannot be reached; "
            f"run `fer-stream models pull --model {model}` while online, or use the model shipped with fer-stream: "
            f"--model {shipped_model()}"
        )
    return pull_classifier(model)


def model_folder(model: str) -> Path:
    """The folder ``model`` loads from: a local folder, or a hub id's folder in the Hugging Face cache."""
    if _looks_like_path(model):
        folder = Path(model).expanduser()
        _check_local_folder(folder, model)
        return folder
    return _hub_folder(model)


def load_model(model: str) -> tuple[Any, Any]:  # transformers' Auto* classes: which model and processor depends on the files
    """The image processor and classification model for a hub id or local folder.

    Hub ids load from the local Hugging Face cache when they are there, so a model fetched once
    (or with ``fer-stream models pull``) works offline. Labels, processor settings, the shard
    index and the weights' shapes are checked before any weights are read (:mod:`.metadata`).
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    _quiet_transformers()
    where = f"model folder '{model}'" if _looks_like_path(model) else f"model '{model}'"
    folder = model_folder(model)
    files = check_folder(folder, where)
    source = str(folder)
    try:
        processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False, local_files_only=True)
        config = AutoConfig.from_pretrained(source, trust_remote_code=False, local_files_only=True)
        check_weights_fit(config, files, where)
        net = AutoModelForImageClassification.from_pretrained(
            source, config=config, use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
    except ValueError as e:
        raise ModelError(f"'{model}' is not an image-classification model transformers can load ({first_line(e)})") from None
    except (OSError, RuntimeError) as e:  # files that are there but broken
        raise ModelError(f"cannot load {where}: {first_line(e, limit=160)}") from None
    return processor, net


def pull_classifier(model: str) -> Path:
    """Download a hub classifier's settings (checked first), then its safetensors weights, into the HF cache."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    from huggingface_hub import snapshot_download

    where = f"classifier '{model}'"
    try:
        settings = snapshot_download(model, allow_patterns=["*.json"])
        check_folder(Path(settings), where, weights=False)  # labels, sizes and shard names before the weights come
        folder = snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except ModelError:
        raise
    except Exception as e:
        first = first_line(e)
        raise ModelError(
            f"cannot download {where} from the Hugging Face Hub: {first}; to work offline, use the model shipped with "
            f"fer-stream: --model {shipped_model()}"
        ) from None
    if not any(Path(folder).glob("*.safetensors")):
        raise ModelError(f"{where} publishes no safetensors weights; fer-stream loads safetensors only")
    return Path(folder)
