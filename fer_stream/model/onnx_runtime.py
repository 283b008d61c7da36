"""ONNX Runtime as the classifier's backend, for models written by ``fer-stream export``.

``EmotionClassifier("model.onnx", backend="onnxruntime")`` (``--backend onnxruntime``) runs the
exported model with ONNX Runtime instead of PyTorch, on the CPU, or CUDA when ONNX Runtime has it.
The file carries what it needs in its metadata: labels and the image processor's settings.

>>> OnnxModel("fer.onnx").labels                                    # doctest: +SKIP
('angry', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise')
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_stream.errors import ModelError, first_line
from fer_stream.model.array_preprocess import ArrayPreprocessor
from fer_stream.model.calibration import KEY as CALIBRATION_KEY
from fer_stream.model.calibration import ONNX_KEY as META_CALIBRATION
from fer_stream.model.calibration import calibration_of
from fer_stream.model.metadata import check_labels, check_processor

if TYPE_CHECKING:
    import torch
    from onnxruntime import InferenceSession

META_LABELS = "fer_stream.id2label"
META_PROCESSOR = "fer_stream.preprocessor"
META_SOURCE = "fer_stream.source_model"


def need_onnx() -> ModuleType:
    """The onnx module; a ModelError naming the extra to install without it."""
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise ModelError("ONNX export and runtime need onnx and onnxruntime: pip install 'fer-stream[onnx]'")
    import onnx

    return onnx


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _session(path: str | Path | bytes, device: str, threads: int | None = None) -> InferenceSession:
    """An ONNX Runtime session on a file, or on a model's bytes (``export`` checks before it writes)."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=providers)


class OnnxModel:
    """An exported classifier: labels, image processor and an ONNX Runtime session."""

    array_input = True  # pixel_values as numpy arrays: no torch needed on this path

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        if importlib.util.find_spec("onnxruntime") is None:  # running needs the runtime only, not onnx
            raise ModelError("running an ONNX model needs onnxruntime: pip install onnxruntime (or 'fer-stream[onnx]')")
        p = Path(path)
        if not p.is_file():
            raise ModelError(f"ONNX model '{path}' does not exist; make one with `fer-stream export --format onnx {p.name}`")
        try:
            self.session = _session(p, device, threads)
        except Exception as e:  # onnxruntime raises its own types for broken files
            raise ModelError(f"'{path}' is not an ONNX model ONNX Runtime can load ({first_line(e, limit=120)})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_LABELS not in meta or META_PROCESSOR not in meta:
            raise ModelError(
                f"'{path}' was not exported by fer-stream (no labels in its metadata); export it with `fer-stream export --format onnx`"
            )
        bad = f"'{path}' has broken fer-stream metadata"
        try:
            id2label = json.loads(meta[META_LABELS])
            settings = json.loads(meta[META_PROCESSOR])
        except ValueError:
            raise ModelError(f"{bad} (labels or processor); export it again with `fer-stream export --format onnx`") from None
        if not id2label or not isinstance(settings, dict):
            raise ModelError(f"{bad} (no labels or no processor settings); export it again")
        where = f"the fer-stream metadata of '{path}'"
        self.labels = check_labels(id2label, None, where)
        check_processor(settings, where)
        self._check_shapes(settings, bad)
        kind = str(settings.get("image_processor_type", "ViTImageProcessor"))
        # The file names a class: only an image processor's, never anything else transformers exports.
        if not (kind.removesuffix("Fast").removesuffix("Pil").isidentifier() and "ImageProcessor" in kind):
            raise ModelError(f"{bad}: '{kind}' is not an image processor")
        self.settings = settings
        # Resize-and-normalize processors run in numpy (no transformers import); others load lazily.
        self.preprocessor = ArrayPreprocessor.from_settings(settings)
        self._bad = bad
        try:
            self.calibration = calibration_of({CALIBRATION_KEY: json.loads(meta.get(META_CALIBRATION, "{}"))})
        except ValueError:
            raise ModelError(f"{bad} (its calibration); export it again with `fer-stream export --format onnx`") from None
        self.providers = self.session.get_providers()
        self.source_model = meta.get(META_SOURCE, "")  # the hub id or folder it was exported from

    def _check_shapes(self, settings: dict[str, Any], bad: str) -> None:
        """The graph's output count is the number of labels, its input size the processor's."""
        n = len(self.labels)
        dims = self.session.get_inputs()[0].shape
        size = settings.get("size")
        if isinstance(size, dict) and len(dims) == 4 and all(isinstance(d, int) for d in dims[2:]):
            if (size.get("height"), size.get("width")) not in ((dims[2], dims[3]), (None, None)):
                raise ModelError(
                    f"{bad}: the processor resizes to {size.get('height')}x{size.get('width')}, the graph takes {dims[2]}x{dims[3]}"
                )
        outputs = self.session.get_outputs()[0].shape
        count = outputs[-1] if outputs else None
        if not isinstance(count, int) and len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]):
            count = self.session.run(None, {self.session.get_inputs()[0].name: np.zeros((1, *dims[1:]), np.float32)})[0].shape[-1]
        if isinstance(count, int) and count != n:
            raise ModelError(f"{bad}: it names {n} labels for the model's {count} outputs; export it again")

    @functools.cached_property
    def processor(self) -> Any:
        """The transformers image processor the file's settings describe (imported only when asked for)."""
        import transformers

        from fer_stream.model.hub import _quiet_transformers

        _quiet_transformers()
        kind = str(self.settings.get("image_processor_type", "ViTImageProcessor"))
        # Without torchvision, transformers 5 offers the PIL flavour of a processor ("...Pil").
        base = kind.removesuffix("Fast").removesuffix("Pil")
        cls = getattr(transformers, base + "Pil", None) or getattr(transformers, base, None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.image_processing_utils.BaseImageProcessor)):
            raise ModelError(f"{self._bad}: '{kind}' is not an image processor transformers knows")
        try:
            return cls.from_dict(self.settings)
        except Exception as e:
            raise ModelError(f"{self._bad}: its processor settings do not load ({type(e).__name__})") from None

    def logits(self, pixel_values: np.ndarray | torch.Tensor) -> np.ndarray:
        x = pixel_values if isinstance(pixel_values, np.ndarray) else pixel_values.float().numpy()
        return self.session.run(None, {"pixel_values": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def probs(self, pixel_values: np.ndarray | torch.Tensor) -> np.ndarray:
        return _softmax(self.logits(pixel_values) / self.calibration.temperature).astype(np.float32)
