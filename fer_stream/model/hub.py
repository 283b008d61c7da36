"""Loading classifiers: a Hugging Face hub id or a local ``save_pretrained`` folder, safetensors
only and never remote code; ``pull_classifier`` fetches one into the cache for offline use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fer_stream.config import DEFAULT_MODEL
from fer_stream.errors import ModelError, first_line


def _quiet_transformers() -> None:
    import huggingface_hub.utils
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else, or anything on disk, is a path."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _check_local_folder(folder: Path) -> None:
    if not folder.exists():
        raise ModelError(
            f"model folder '{folder}' does not exist; pass a hub id like {DEFAULT_MODEL} or a folder written by save_pretrained"
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
    import urllib.error
    import urllib.request

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


def _from_pretrained(source: str, **kwargs: Any) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False, **kwargs)
    net = AutoModelForImageClassification.from_pretrained(source, use_safetensors=True, trust_remote_code=False, **kwargs)
    return processor, net


def load_model(model: str) -> tuple[Any, Any]:
    """The image processor and classification model for a hub id or local folder.

    Hub ids load from the local Hugging Face cache when they are there, so a model fetched once
    (or with ``fer-stream models pull``) works offline.
    """
    _quiet_transformers()
    local = _looks_like_path(model)
    source = str(Path(model).expanduser()) if local else model
    if local:
        _check_local_folder(Path(source))
    try:
        try:
            return _from_pretrained(source, local_files_only=True)
        except OSError:
            if local:
                raise
        if not _hub_reachable():
            raise ModelError(
                f"classifier '{model}' is not in the local Hugging Face cache and the Hub cannot be reached; "
                f"run `fer-stream models pull --model {model}` while online, or pass a local model folder"
            )
        return _from_pretrained(source)
    except ValueError as e:
        first = first_line(e)
        raise ModelError(f"'{model}' is not an image-classification model transformers can load ({first})") from None
    except OSError as e:
        if local:  # a local folder whose files are broken
            raise ModelError(f"cannot load model folder '{model}': {first_line(e)}") from None
        raise ModelError(
            f"cannot load '{model}' from the Hugging Face Hub: no such model, no access, or no safetensors weights "
            f"({first_line(e, limit=160)})"
        ) from None


def pull_classifier(model: str) -> Path:
    """Download a hub classifier's config, processor and safetensors weights into the HF cache."""
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"])
    except Exception as e:
        first = first_line(e)
        raise ModelError(f"cannot download classifier '{model}' from the Hugging Face Hub: {first}") from None
    if not any(Path(folder).glob("*.safetensors")):
        raise ModelError(f"classifier '{model}' publishes no safetensors weights; fer-stream loads safetensors only")
    return Path(folder)
