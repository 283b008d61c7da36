"""What a model says about itself, checked before its weights load.

A model folder's ``config.json`` (labels), ``preprocessor_config.json`` (input size and
normalization) and ``model.safetensors.index.json`` (where the weight shards are), and the same
settings in an exported ONNX file's metadata, are text someone else wrote. Each is checked here
so that a broken or hostile one ends in one line naming the file and the fix, instead of an
``IndexError``, a 43 GB allocation, a file read from outside the folder, or, worst, a model that
runs with the wrong labels.

>>> check_labels({"0": "happy", "1": "sad"}, 2, "model 'm'")
('happy', 'sad')
>>> check_processor({"size": {"height": 60000, "width": 60000}}, "m")
Traceback (most recent call last):
...
fer_stream.errors.ModelError: m: size {'height': 60000, 'width': 60000} is not an input size: each side must be ... from 1 to 2048
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from fer_stream.errors import ModelError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

MAX_LABELS = 1000  # an expression model has a handful; ImageNet's 1000 is the most accepted
MAX_LABEL_CHARS = 100
MAX_SIDE = 2048  # pixels a side of the model's input: ViTs take 224 to 518
MAX_JSON_BYTES = 16 << 20  # a config is a few kB; a 200,000-label one is 6 MB
SIZE_KEYS = ("height", "width", "shortest_edge", "longest_edge", "max_height", "max_width")
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors")
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_labels(id2label: object, num_labels: object, where: str) -> tuple[str, ...]:
    """The labels in output order; a ModelError unless ``id2label`` names outputs 0 to N-1 once each
    with short, distinct names, and ``num_labels`` (when given) is that N."""
    if not isinstance(id2label, dict) or not id2label:
        raise ModelError(f"{where} has no id2label (the name of each output); fer-stream needs the model's own labels")
    n = len(id2label)
    if n > MAX_LABELS:
        raise ModelError(f"{where} lists {n:,} labels; an expression model has a handful (at most {MAX_LABELS} accepted)")
    try:
        numbered = {int(k): v for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise ModelError(f"{where}: the keys of id2label must be output numbers 0, 1, 2, ...") from None
    if sorted(numbered) != list(range(n)):
        raise ModelError(f"{where}: id2label must number its outputs 0 to {n - 1}, once each")
    labels = tuple(numbered[i] for i in range(n))
    for label in labels:
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS or _CONTROL.search(label):
            raise ModelError(f"{where}: label {str(label)[:40]!r} must be a name of 1 to {MAX_LABEL_CHARS} printable characters")
    if len(set(labels)) != n:
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise ModelError(f"{where}: id2label names {', '.join(twice)} more than once; each output needs its own label")
    if num_labels is not None and num_labels != n:
        raise ModelError(f"{where} says num_labels {num_labels!r} but id2label names {n} outputs; make them agree")
    return labels


def _check_size(value: object, key: str, where: str) -> None:
    if isinstance(value, dict):
        sides = [value[k] for k in SIZE_KEYS if value.get(k) is not None]
        ok = bool(sides)
    elif isinstance(value, (list, tuple)):
        sides, ok = list(value), len(value) == 2
    else:
        sides, ok = [value], True
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_SIDE for s in sides):
        raise ModelError(f"{where}: {key} {value!r} is not an input size: each side must be a whole number of pixels from 1 to {MAX_SIDE}")


def _check_numbers(value: object, key: str, where: str, *, positive: bool) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    ok = 1 <= len(values) <= 4 and all(_is_number(v) and (v > 0 if positive else True) for v in values)
    if not ok:
        what = "positive numbers" if positive else "numbers"
        raise ModelError(f"{where}: {key} {str(value)[:60]} must be {what}, one per colour channel")


def check_processor(settings: object, where: str) -> None:
    """A ModelError unless the image processor's settings are sizes, means and scales fer-stream can use."""
    if not isinstance(settings, dict):
        raise ModelError(f"{where}: the image processor's settings are not a JSON object")
    for key in ("size", "crop_size"):
        if settings.get(key) is not None:
            _check_size(settings[key], key, where)
    for key, positive in (("image_mean", False), ("image_std", True)):
        if settings.get(key) is not None:
            _check_numbers(settings[key], key, where, positive=positive)
    factor = settings.get("rescale_factor")
    if factor is not None and not (_is_number(factor) and factor > 0):
        raise ModelError(f"{where}: rescale_factor {str(factor)[:40]} must be a positive number (1/255 for 8-bit images)")
    resample = settings.get("resample")
    if resample is not None and not (isinstance(resample, int) and not isinstance(resample, bool) and 0 <= resample <= 5):
        raise ModelError(f"{where}: resample {str(resample)[:40]} must be a PIL resampling code from 0 to 5")


def read_json(path: Path, where: str) -> Any:
    """A model's JSON file, bounded in size; a ModelError if it is not JSON."""
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ModelError(f"{where}: {path.name} is {size / 1e6:.0f} MB; a model's settings file is a few kB")
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{where} has no {path.name}; save the model and its image processor with save_pretrained") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelError(f"{where}: {path.name} is not a JSON file that can be read ({type(e).__name__})") from None


def weight_files(folder: Path, where: str, *, present: bool = True) -> list[Path]:
    """The safetensors files transformers will read for ``folder``: ``model.safetensors``, else the
    shards its index names. Shards are plain file names in the folder, never a path out of it.
    With ``present`` false (settings fetched, weights not yet), only the index's names are checked."""
    index = folder / WEIGHTS_INDEX
    shards: list[Path] = []
    if index.is_file():
        data = read_json(index, where)
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
            raise ModelError(f"{where}: {WEIGHTS_INDEX} has no weight_map of tensor names to shard files")
        for name in sorted(set(weight_map.values())):
            if not SHARD_NAME.fullmatch(name):
                raise ModelError(
                    f"{where}: {WEIGHTS_INDEX} names the shard {name[:80]!r}; shards must be .safetensors files in the model folder itself"
                )
            if present and not (folder / name).is_file():
                raise ModelError(f"{where}: the shard {name} that {WEIGHTS_INDEX} names is missing")
            shards.append(folder / name)
    if not present:
        return shards
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]  # what transformers loads when both are there
    if shards:
        return shards
    raise ModelError(
        f"{where} has no {WEIGHTS}; fer-stream loads safetensors only "
        "(re-save the model with save_pretrained(..., safe_serialization=True))"
    )


def check_folder(folder: Path, where: str, *, weights: bool = True) -> list[Path]:
    """Labels, processor settings and shard index of a model folder; returns its weight files
    (``weights`` false: the settings only, before the weights are fetched)."""
    config = read_json(folder / "config.json", where)
    if not isinstance(config, dict):
        raise ModelError(f"{where}: config.json is not a JSON object")
    check_labels(config.get("id2label"), config.get("num_labels"), f"{where} (config.json)")
    check_processor(read_json(folder / "preprocessor_config.json", where), f"{where} (preprocessor_config.json)")
    return weight_files(folder, where, present=weights)


def check_weights_fit(config: PretrainedConfig, files: Iterable[Path], where: str) -> None:
    """The shapes in the safetensors headers against the network ``config`` describes (built on
    the meta device: no memory), before anything is read: labels that do not match the weights'
    outputs are refused, not run under the wrong names."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForImageClassification

    try:
        with torch.device("meta"):
            net = AutoModelForImageClassification.from_config(config)
    except Exception:
        return  # an architecture transformers cannot build: from_pretrained says why
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    n = int(config.num_labels)  # type: ignore[arg-type]  # typed int | None; an image classifier always has it
    for path in files:
        try:
            with safe_open(str(path), "pt") as f:
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k in expected}
        except Exception as e:
            raise ModelError(f"{where}: {path.name} is not a safetensors file that can be read ({type(e).__name__})") from None
        for key, shape in found.items():
            want = expected[key]
            if shape == want:
                continue
            if want and want[0] == n and shape and shape[1:] == want[1:]:
                raise ModelError(
                    f"{where}: config.json names {n} labels but the weights have {shape[0]} outputs ({key}); "
                    "the labels must be the model's own (fix id2label, or use the folder the model was saved to)"
                )
            raise ModelError(
                f"{where}: the weights do not fit config.json ({key} is {'x'.join(map(str, shape))} in {path.name}, "
                f"{'x'.join(map(str, want))} by the config)"
            )
