"""ONNX export of the classifier, and ONNX Runtime as its backend.

``fer-stream export --format onnx OUT.onnx`` writes the model with a dynamic batch axis
(``pixel_values`` -> ``logits``) and stores what fer-stream needs to use it alone in the file's
metadata: the labels (``id2label``) and the image processor's settings. The export checks itself:
the same fixed-seed images go through PyTorch and ONNX Runtime, and the largest difference of the
probabilities is reported (and must stay under ``tolerance``).

``EmotionClassifier("model.onnx", backend="onnxruntime")`` (``--backend onnxruntime``) then runs
it with ONNX Runtime instead of PyTorch, on the CPU, or CUDA when ONNX Runtime has it.

>>> export_onnx("trpakov/vit-face-expression", "fer.onnx")["max_abs_diff"] < 1e-4   # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelError

META_LABELS = "fer_stream.id2label"
META_PROCESSOR = "fer_stream.preprocessor"
META_SOURCE = "fer_stream.source_model"


def _need_onnx() -> Any:
    import importlib.util

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise ModelError("ONNX export and runtime need onnx and onnxruntime: pip install 'fer-stream[onnx]'")
    import onnx

    return onnx


class _Logits(torch.nn.Module):
    """The classifier as a plain ``pixel_values -> logits`` module, as ONNX wants it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=pixel_values).logits


def export_onnx(model: str, out: str | Path, *, opset: int = 17, tolerance: float = 1e-3, images: int = 8) -> dict[str, Any]:
    """Export ``model`` (hub id or folder) to ``out``; returns the self-check's figures."""
    from .classify import TensorPreprocessor, load_model
    from .parity import synthetic_faces

    onnx = _need_onnx()
    processor, net = load_model(model)
    net = net.eval().float()
    pre = TensorPreprocessor.from_processor(processor)
    faces = synthetic_faces(images, seed=1)
    pixels = pre(faces) if pre is not None else processor(images=faces, return_tensors="pt")["pixel_values"]
    out = Path(out)
    try:
        return _export_checked(net, processor, pixels, model, out, opset, tolerance, images, onnx)
    except BaseException:
        out.unlink(missing_ok=True)  # a failed export leaves no .onnx behind
        raise


def _export_checked(net: torch.nn.Module, processor: Any, pixels: torch.Tensor, model: str, out: Path, opset: int,
                    tolerance: float, images: int, onnx: Any) -> dict[str, Any]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about constant shapes in transformers' checks
        torch.onnx.export(
            _Logits(net), (pixels[:2],), str(out), input_names=["pixel_values"], output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
        )
    proto = onnx.load(str(out))
    id2label = {int(k): str(v) for k, v in net.config.id2label.items()}
    for key, value in ((META_LABELS, json.dumps(id2label)), (META_PROCESSOR, json.dumps(processor.to_dict())),
                       (META_SOURCE, model)):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    session = _session(out, "cpu")
    ort_logits = session.run(None, {"pixel_values": pixels.numpy()})[0]
    with torch.inference_mode():
        torch_logits = net(pixel_values=pixels).logits.numpy()
    p_ort, p_torch = _softmax(ort_logits), _softmax(torch_logits)
    diff = float(np.abs(p_ort - p_torch).max())
    result = {
        "path": str(out), "model": model, "opset": opset, "images": images, "size_mb": round(out.stat().st_size / 1e6, 1),
        "max_abs_diff": diff, "max_abs_diff_logits": float(np.abs(ort_logits - torch_logits).max()),
        "top1_agreement": float(np.mean(p_ort.argmax(1) == p_torch.argmax(1))),
    }
    if diff > tolerance:
        raise ModelError(f"ONNX export of '{model}' differs from PyTorch by {diff:.2e} (tolerance {tolerance:g}); try another --opset")
    return result


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _session(path: str | Path, device: str) -> Any:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxModel:
    """An exported classifier: labels, image processor and an ONNX Runtime session."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        _need_onnx()
        import transformers

        from .classify import _quiet_transformers

        _quiet_transformers()

        p = Path(path)
        if not p.is_file():
            raise ModelError(f"ONNX model '{path}' does not exist; make one with `fer-stream export --format onnx {p.name}`")
        try:
            self.session = _session(p, device)
        except Exception as e:  # onnxruntime raises its own types for broken files
            raise ModelError(f"'{path}' is not an ONNX model ONNX Runtime can load ({str(e).splitlines()[0][:120]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_LABELS not in meta or META_PROCESSOR not in meta:
            raise ModelError(f"'{path}' was not exported by fer-stream (no labels in its metadata); "
                             "export it with `fer-stream export --format onnx`")
        bad = f"'{path}' has broken fer-stream metadata"
        try:
            id2label = {int(k): str(v) for k, v in json.loads(meta[META_LABELS]).items()}
            self.labels = tuple(id2label[i] for i in range(len(id2label)))
            settings = json.loads(meta[META_PROCESSOR])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ModelError(f"{bad} (labels or processor); export it again with `fer-stream export --format onnx`") from None
        if not self.labels or not isinstance(settings, dict):
            raise ModelError(f"{bad} (no labels or no processor settings); export it again")
        kind = str(settings.get("image_processor_type", "ViTImageProcessor"))
        # Without torchvision, transformers 5 offers the PIL flavour of a processor ("...Pil").
        base = kind.removesuffix("Fast").removesuffix("Pil")
        # The file names a class: only an image processor's, never anything else transformers exports.
        if not (base.isidentifier() and base.endswith("ImageProcessor")):
            raise ModelError(f"{bad}: '{kind}' is not an image processor")
        cls = getattr(transformers, base + "Pil", None) or getattr(transformers, base, None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.image_processing_utils.BaseImageProcessor)):
            raise ModelError(f"{bad}: '{kind}' is not an image processor transformers knows")
        try:
            self.processor = cls.from_dict(settings)
        except Exception as e:
            raise ModelError(f"{bad}: its processor settings do not load ({type(e).__name__})") from None
        self.providers = self.session.get_providers()
        self.source_model = meta.get(META_SOURCE, "")  # the hub id or folder it was exported from

    def logits(self, pixel_values: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {"pixel_values": pixel_values.float().numpy()})[0]

    def probs(self, pixel_values: torch.Tensor) -> np.ndarray:
        return _softmax(self.logits(pixel_values)).astype(np.float32)
