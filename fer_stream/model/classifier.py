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

import importlib.util
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fer_stream.config import DEFAULT_MODEL, PRECISIONS
from fer_stream.errors import DeviceError, ModelError
from fer_stream.frames import Prediction
from fer_stream.io.images import ImageLike
from fer_stream.model.calibration import FALLBACK_THRESHOLD, Calibration, calibration_of
from fer_stream.model.devices import HostDevice, accelerator_present, resolve_device
from fer_stream.model.head import ClassifierHead

if TYPE_CHECKING:  # torch is imported where a torch model runs: the ONNX Runtime path starts without it
    import torch

    from fer_stream.model.contract import Classifier, PixelValues

ONNX_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}  # what a model folder may ship beside its weights

log = logging.getLogger(__name__)


def _quantize_int8(net: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the linear layers (weights int8 per output channel, activations
    quantized per batch). Per-channel weights agree with fp32 better than per-tensor ones at the same speed."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(net, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


class ClassifierBackend(Protocol):
    """What runs the network for :class:`EmotionClassifier`: its labels (from the model's own
    ``id2label``), its image processor, and ``pixel_values`` -> probabilities on the host."""

    labels: tuple[str, ...]
    calibration: Calibration  # the model's own temperature (applied in probs) and threshold

    @property
    def processor(self) -> Any:
        """The transformers image processor (for models whose preprocessing is not resize-and-normalize)."""
        ...

    def probs(self, pixel_values: Any) -> np.ndarray: ...


class TorchBackend:
    """A transformers model in PyTorch: fp32, fp16, bf16 or dynamic int8, on any torch device."""

    def __init__(self, model: str, device: Any, precision: str, max_batch: int, threads: int | None = None) -> None:
        import torch

        from fer_stream.model.hub import load_model

        if threads:
            torch.set_num_threads(threads)
        if precision == "int8" and device.type != "cpu":
            raise DeviceError(
                f"precision int8 (dynamic quantization) runs on the CPU only, not {device.type}; "
                "use --precision fp16 or bf16 there, or --device cpu"
            )
        self.processor, net = load_model(model)
        net = net.eval()
        if precision == "int8":
            net = _quantize_int8(net)
        elif precision in ("fp16", "bf16"):
            net = net.to({"fp16": torch.float16, "bf16": torch.bfloat16}[precision])
        self.net = net.to(device)
        self.device, self.max_batch = device, max_batch
        id2label = {int(k): str(v) for k, v in self.net.config.id2label.items()}
        n = int(self.net.config.num_labels)
        if sorted(id2label) != list(range(n)):
            raise ModelError(f"model '{model}' has an id2label that does not cover its {n} outputs")
        self.labels: tuple[str, ...] = tuple(id2label[i] for i in range(n))
        self.calibration = calibration_of(self.net.config)
        # Ascend compiles kernels per input shape: keep one shape by padding partial batches.
        self.static_batch = device.type == "npu"
        if self.static_batch and max_batch > 8:
            log.warning("max_batch %d on an Ascend NPU risks running out of device memory; 8 is the tested size", max_batch)
        self._dtype = next(self.net.parameters()).dtype

    def probs(self, pixel_values: torch.Tensor) -> np.ndarray:
        import torch

        with torch.inference_mode():
            n = pixel_values.shape[0]
            if self.static_batch and n < self.max_batch:
                pad = pixel_values[-1:].expand(self.max_batch - n, *pixel_values.shape[1:])
                pixel_values = torch.cat([pixel_values, pad])
            x = pixel_values.to(self.device, self._dtype, non_blocking=True)
            logits = self.net(pixel_values=x).logits.float()
            return (logits / self.calibration.temperature).softmax(dim=-1)[:n].cpu().numpy()


def onnx_file(model: str, precision: str) -> Path | None:
    """The ONNX file that runs ``model`` at ``precision``: the model itself when it is an .onnx
    file, or the one its folder ships (``model.onnx``, ``model_int8.onnx`` for int8); else None."""
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".onnx":
        return path
    name = ONNX_FILES.get(precision)
    return path / name if name and path.is_dir() and (path / name).is_file() else None


def onnx_backend(model: str, device: Any, precision: str, max_batch: int, threads: int | None = None) -> ClassifierBackend:
    """A model written by ``fer-stream export`` (an .onnx file, or a folder that ships one), run by
    ONNX Runtime on the CPU or CUDA."""
    from fer_stream.model.onnx_runtime import OnnxModel

    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"the onnxruntime backend runs on cpu or cuda, not {device.type}")
    path = onnx_file(model, precision)
    if path is None:
        if precision not in ONNX_FILES:
            raise DeviceError(f"the onnxruntime backend runs fp32 or int8 ONNX files, not {precision}; use --backend torch for it")
        raise ModelError(
            f"--backend onnxruntime needs an exported model: run `fer-stream export --format onnx "
            f"model.onnx --model {model}`, then pass --model model.onnx (or put it in the model folder as {ONNX_FILES[precision]})"
        )
    return OnnxModel(path, str(device), threads=threads)


# Backend name (``--backend``, ``classifier.backend``) -> its factory; a new runtime goes here.
BACKENDS: dict[str, Callable[[str, Any, str, int, int | None], ClassifierBackend]] = {
    "torch": TorchBackend,
    "onnxruntime": onnx_backend,
}


def choose_backend(model: str, device: str, precision: str, backend: str) -> str:
    """``auto``: ONNX Runtime when the model is (or its folder ships) the ONNX file for this
    precision, onnxruntime is installed and the device is the CPU (``cpu``, or ``auto`` on a machine
    with no GPU or NPU device node): that path starts without importing torch or transformers.
    Otherwise PyTorch. Any other name is kept."""
    if backend != "auto":
        return backend
    if onnx_file(model, precision) is None or importlib.util.find_spec("onnxruntime") is None:
        return "torch"
    if device == "cpu" or (device == "auto" and not accelerator_present()):
        return "onnxruntime"
    return "onnxruntime" if Path(model).suffix.lower() == ".onnx" else "torch"


def _mirror(x: Any) -> Any:
    """The batch mirrored left-right (numpy arrays or torch tensors, N x C x H x W)."""
    return np.ascontiguousarray(x[..., ::-1]) if isinstance(x, np.ndarray) else x.flip(-1)


class EmotionClassifier:
    """Classifies face images into the model's expression labels.

    ``predict`` takes paths or RGB arrays and returns one :class:`Prediction` per image with all
    labels ordered from most to least likely. Predictions whose confidence is under ``threshold``
    are flagged. Batches never exceed ``max_batch``.

    ``precision`` is ``fp32``, ``fp16``, ``bf16`` (weights and activations in that type) or
    ``int8`` (CPU only: dynamic quantization of the linear layers, which hold nearly all of a
    ViT's work). ``threads`` sets torch's CPU threads (``None`` leaves torch's default).
    ``backend`` names what runs the network (:data:`BACKENDS`).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        *,
        max_batch: int = 8,
        threshold: float | None = None,
        precision: str = "fp32",
        threads: int | None = None,
        fast_preprocess: bool = True,
        backend: str = "auto",
        warmup: bool = False,
        tta: str = "none",
    ) -> None:
        if backend != "auto" and backend not in BACKENDS:
            raise ValueError(f"backend must be auto or one of {', '.join(BACKENDS)}")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if tta not in ("none", "flip"):
            raise ValueError("tta must be none or flip")
        self.tta = tta
        self.model_name = model
        self.backend = choose_backend(model, device, precision, backend)
        self.device = HostDevice() if self.backend == "onnxruntime" and device in ("auto", "cpu") else resolve_device(device)
        if precision == "fp16" and self.device.type == "cpu":
            log.warning("fp16 on the CPU is usually slower than fp32; bf16 or int8 are the fast CPU precisions")
        self.max_batch = max_batch
        self.precision = precision
        self.runtime: ClassifierBackend = BACKENDS[self.backend](model, self.device, precision, max_batch, threads)
        self.labels: tuple[str, ...] = self.runtime.labels
        arrays = getattr(self.runtime, "preprocessor", None) if getattr(self.runtime, "array_input", False) else None
        if threshold is None:  # the model's own, else the common fallback
            own = self.runtime.calibration.threshold
            threshold = FALLBACK_THRESHOLD if own is None else own
        # Pre- and postprocessing, an object of its own so that stand-ins (Ray tasks) share it.
        self.head = ClassifierHead(
            None if arrays is not None and fast_preprocess else self.runtime.processor,
            self.labels,
            threshold,
            fast=fast_preprocess,
            arrays=arrays,
        )
        self.processor: Any = self.head.processor  # None on the numpy path (no transformers loaded)
        if warmup:
            self.warmup()

    @property
    def threshold(self) -> float:
        """Predictions under this confidence are flagged."""
        return self.head.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.head.threshold = value

    @property
    def net(self) -> torch.nn.Module | None:
        """The PyTorch network (``None`` with another backend)."""
        return getattr(self.runtime, "net", None)

    @property
    def static_batch(self) -> bool:
        """Whether partial batches are padded to ``max_batch`` (one compiled shape, as Ascend NPUs want)."""
        return bool(getattr(self.runtime, "static_batch", False))

    @static_batch.setter
    def static_batch(self, value: bool) -> None:
        self.runtime.static_batch = value  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (
            f"EmotionClassifier(model={self.model_name!r}, device='{self.device}', backend={self.backend!r}, "
            f"precision={self.precision!r}, labels={self.labels})"
        )

    def warmup(self) -> None:
        """Run one full batch so that kernels are compiled and memory is allocated up front."""
        blank = [np.full((64, 64, 3), 128, np.uint8)] * self.max_batch
        self.forward(self.preprocess(blank))

    def preprocess(self, images: Sequence[ImageLike]) -> PixelValues:
        """RGB arrays or paths -> the model's ``pixel_values`` batch (float32, on the host)."""
        return self.head.preprocess(images)

    def forward(self, pixel_values: PixelValues) -> np.ndarray:
        """``pixel_values`` -> ``(N, num_labels)`` float32 probabilities on the host; with ``tta``
        ``flip``, the mean of the faces' and their mirror images' probabilities (two passes of the
        same batch size, so a device that compiles per shape compiles one)."""
        probs = self.runtime.probs(pixel_values)
        if self.tta == "flip":
            probs = (probs + self.runtime.probs(_mirror(pixel_values))) / 2
        return probs

    def postprocess(self, probs: np.ndarray) -> list[Prediction]:
        """Probabilities -> predictions, labels in descending probability."""
        return self.head.postprocess(probs)

    def predict(self, images: Iterable[ImageLike]) -> list[Prediction]:
        """One prediction per image (paths or RGB arrays), run in batches of at most ``max_batch``."""
        items = list(images)
        out: list[Prediction] = []
        for start in range(0, len(items), self.max_batch):
            chunk = items[start : start + self.max_batch]
            out += self.postprocess(self.forward(self.preprocess(chunk)))
        return out


if TYPE_CHECKING:  # the model implements the contract the pipeline is typed with
    _implements: type[Classifier] = EmotionClassifier
