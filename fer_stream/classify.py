"""Facial-expression classification with any Hugging Face image-classification model.

Split the way transformers pipelines are: :meth:`EmotionClassifier.preprocess` (images -> tensor),
:meth:`~EmotionClassifier.forward` (tensor -> probabilities on the host) and
:meth:`~EmotionClassifier.postprocess` (probabilities -> :class:`~fer_stream.frames.Prediction`).
Labels always come from the loaded model's ``config.id2label``.

>>> from fer_stream import EmotionClassifier
>>> clf = EmotionClassifier("trpakov/vit-face-expression", device="auto")  # doctest: +SKIP
>>> clf.predict(["face.jpg"])[0].probs[:2]                                # doctest: +SKIP
(('happy', 0.93), ('neutral', 0.03))
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .config import DEFAULT_MODEL, PRECISIONS
from .devices import resolve_device
from .errors import DeviceError, ModelError
from .frames import Prediction
from .images import ImageLike, as_rgb

log = logging.getLogger(__name__)


def _quiet_transformers() -> None:
    import huggingface_hub.utils
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    huggingface_hub.utils.logging.set_verbosity_error()


def _looks_like_path(model: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else, or anything on disk, is a path."""
    return (
        Path(model).expanduser().exists()
        or model.startswith((".", "/", "~"))
        or model.count("/") > 1
        or "\\" in model
    )


def _check_local_folder(folder: Path) -> None:
    if not folder.exists():
        raise ModelError(f"model folder '{folder}' does not exist; pass a hub id like {DEFAULT_MODEL} or a folder written by save_pretrained")
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


def _from_pretrained(source: str, **kwargs: object) -> tuple[object, torch.nn.Module]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=False, **kwargs)
    net = AutoModelForImageClassification.from_pretrained(source, use_safetensors=True, trust_remote_code=False, **kwargs)
    return processor, net


def load_model(model: str) -> tuple[object, torch.nn.Module]:
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
        first = str(e).strip().splitlines()[0]
        raise ModelError(f"'{model}' is not an image-classification model transformers can load ({first})") from None
    except OSError as e:
        if local:  # a local folder whose files are broken
            raise ModelError(f"cannot load model folder '{model}': {str(e).strip().splitlines()[0]}") from None
        raise ModelError(
            f"cannot load '{model}' from the Hugging Face Hub: no such model, no access, or no safetensors weights "
            f"({str(e).strip().splitlines()[0][:160]})"
        ) from None


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
        get = lambda name, default=None: getattr(processor, name, default)  # noqa: E731
        size = get("size") or {}
        dim = lambda key: size.get(key) if isinstance(size, dict) else getattr(size, key, None)  # noqa: E731
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
                    x.float(), size=(h, w), mode=self.mode, antialias=self.mode != "nearest",
                    **({} if self.mode == "nearest" else {"align_corners": False}),
                )
                x = x.round_().clamp_(0, 255)  # PIL resizes to uint8
            out[i] = x[0]
        return out.mul_(self._mul).sub_(self._sub)


def _quantize_int8(net: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the linear layers (weights int8 per output channel, activations
    quantized per batch). Per-channel weights agree with fp32 better than per-tensor ones at the same speed."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(net, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class EmotionClassifier:
    """Classifies face images into the model's expression labels.

    ``predict`` takes paths or RGB arrays and returns one :class:`Prediction` per image with all
    labels ordered from most to least likely. Predictions whose confidence is under ``threshold``
    are flagged. Batches never exceed ``max_batch``.

    ``precision`` is ``fp32``, ``fp16``, ``bf16`` (weights and activations in that type) or
    ``int8`` (CPU only: dynamic quantization of the linear layers, which hold nearly all of a
    ViT's work). ``threads`` sets torch's CPU threads (``None`` leaves torch's default).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        *,
        max_batch: int = 8,
        threshold: float = 0.7,
        precision: str = "fp32",
        threads: int | None = None,
        fast_preprocess: bool = True,
        backend: str = "torch",
        warmup: bool = False,
    ) -> None:
        if backend not in ("torch", "onnxruntime"):
            raise ValueError("backend must be 'torch' or 'onnxruntime'")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        self.model_name = model
        self.device = resolve_device(device)
        if precision == "int8" and self.device.type != "cpu":
            raise DeviceError(
                f"precision int8 (dynamic quantization) runs on the CPU only, not {self.device.type}; "
                "use --precision fp16 or bf16 there, or --device cpu"
            )
        if precision == "fp16" and self.device.type == "cpu":
            log.warning("fp16 on the CPU is usually slower than fp32; bf16 or int8 are the fast CPU precisions")
        if threads:
            torch.set_num_threads(threads)
        self.max_batch = max_batch
        self.threshold = threshold
        self.precision = precision
        self.backend = backend
        self.static_batch = False
        self._onnx = None
        if backend == "onnxruntime":
            self._init_onnx(model, precision, fast_preprocess)
            if warmup:
                self.warmup()
            return
        self.processor, net = load_model(model)
        self._fast = TensorPreprocessor.from_processor(self.processor) if fast_preprocess else None
        net = net.eval()
        if precision == "int8":
            net = _quantize_int8(net)
        elif precision in ("fp16", "bf16"):
            net = net.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
        self.net = net.to(self.device)
        id2label = {int(k): str(v) for k, v in self.net.config.id2label.items()}
        n = int(self.net.config.num_labels)
        if sorted(id2label) != list(range(n)):
            raise ModelError(f"model '{model}' has an id2label that does not cover its {n} outputs")
        self.labels: tuple[str, ...] = tuple(id2label[i] for i in range(n))
        # Ascend compiles kernels per input shape: keep one shape by padding partial batches.
        self.static_batch = self.device.type == "npu"
        if self.static_batch and max_batch > 8:
            log.warning("max_batch %d on an Ascend NPU risks running out of device memory; 8 is the tested size", max_batch)
        self._dtype = next(self.net.parameters()).dtype
        if warmup:
            self.warmup()

    def _init_onnx(self, model: str, precision: str, fast_preprocess: bool) -> None:
        from .onnx_backend import OnnxModel

        if precision != "fp32":
            raise DeviceError(f"the onnxruntime backend runs the exported fp32 model; drop --precision {precision}")
        if not model.lower().endswith(".onnx"):
            raise ModelError(f"--backend onnxruntime needs an exported model: run `fer-stream export --format onnx "
                             f"model.onnx --model {model}`, then pass --model model.onnx")
        if self.device.type not in ("cpu", "cuda"):
            raise DeviceError(f"the onnxruntime backend runs on cpu or cuda, not {self.device.type}")
        self._onnx = OnnxModel(model, str(self.device))
        self.processor, self.net, self.labels = self._onnx.processor, None, self._onnx.labels
        self._fast = TensorPreprocessor.from_processor(self.processor) if fast_preprocess else None

    def __repr__(self) -> str:
        return (f"EmotionClassifier(model={self.model_name!r}, device='{self.device}', backend={self.backend!r}, "
                f"precision={self.precision!r}, labels={self.labels})")

    def warmup(self) -> None:
        """Run one full batch so that kernels are compiled and memory is allocated up front."""
        blank = [np.full((64, 64, 3), 128, np.uint8)] * self.max_batch
        self.forward(self.preprocess(blank))

    def preprocess(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """RGB arrays or paths -> the model's ``pixel_values`` batch (float32, on the host)."""
        arrays = [as_rgb(im) for im in images]
        if self._fast is not None:
            return self._fast(arrays)
        return self.processor(images=arrays, return_tensors="pt")["pixel_values"]

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor) -> np.ndarray:
        """``pixel_values`` -> ``(N, num_labels)`` float32 probabilities on the host."""
        n = pixel_values.shape[0]
        if self._onnx is not None:
            return self._onnx.probs(pixel_values)
        if self.static_batch and n < self.max_batch:
            pad = pixel_values[-1:].expand(self.max_batch - n, *pixel_values.shape[1:])
            pixel_values = torch.cat([pixel_values, pad])
        x = pixel_values.to(self.device, self._dtype, non_blocking=True)
        logits = self.net(pixel_values=x).logits
        return logits.float().softmax(dim=-1)[:n].cpu().numpy()

    def postprocess(self, probs: np.ndarray) -> list[Prediction]:
        """Probabilities -> predictions, labels in descending probability."""
        order = np.argsort(-probs, axis=1, kind="stable")
        ranked = np.take_along_axis(probs, order, axis=1).tolist()
        labels = self.labels
        return [
            Prediction(
                probs=tuple((labels[i], p) for i, p in zip(idx, row)),
                flagged=row[0] < self.threshold,
            )
            for idx, row in zip(order.tolist(), ranked)
        ]

    def predict(self, images: Iterable[ImageLike]) -> list[Prediction]:
        """One prediction per image (paths or RGB arrays), run in batches of at most ``max_batch``."""
        items = list(images)
        out: list[Prediction] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            out += self.postprocess(self.forward(self.preprocess(chunk)))
        return out
