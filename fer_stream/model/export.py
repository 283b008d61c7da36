"""The classifier as an ONNX file, checked against PyTorch (``fer-stream export``, :mod:`fer_stream.commands.export`).

The model is written with a dynamic batch axis (``pixel_values`` -> ``logits``) and what
fer-stream needs to use it alone in the file's metadata: the labels (``id2label``) and the image
processor's settings. The export checks itself: the same fixed-seed images go through PyTorch and
ONNX Runtime, and the largest difference of the probabilities is reported (and must stay under
``tolerance``). Run the file with :class:`fer_stream.model.onnx_runtime.OnnxModel`
(``--backend onnxruntime``).

With an :class:`~fer_stream.model.quantize.Int8Plan` the file written is the int8 model
quantized from that checked fp32 graph (:mod:`fer_stream.model.quantize`), calibrated and checked
on real face crops; its metadata is the fp32 file's plus :data:`~fer_stream.model.quantize.META_PRECISION`
(``"int8"``) and :data:`~fer_stream.model.quantize.META_QUANTIZATION` (how it was made and checked).

>>> export_onnx("trpakov/vit-face-expression", "fer.onnx")["max_abs_diff"] < 1e-4   # doctest: +SKIP
True
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fer_stream.errors import ConfigError, ModelError
from fer_stream.io.images import synthetic_faces
from fer_stream.io.sinks import write_atomic
from fer_stream.model.calibration import KEY as CALIBRATION_KEY
from fer_stream.model.calibration import ONNX_KEY as META_CALIBRATION
from fer_stream.model.hub import load_model
from fer_stream.model.onnx_runtime import META_LABELS, META_PROCESSOR, META_SOURCE, _session, _softmax, need_onnx
from fer_stream.model.preprocess import TensorPreprocessor

if TYPE_CHECKING:
    from fer_stream.model.quantize import Int8Plan


class _Logits(torch.nn.Module):
    """The classifier as a plain ``pixel_values -> logits`` module, as ONNX wants it."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values=pixel_values).logits


def export_onnx(
    model: str, out: str | Path, *, opset: int = 17, tolerance: float = 1e-3, images: int = 8, int8: Int8Plan | None = None
) -> dict[str, Any]:
    """Export ``model`` (hub id or folder) to ``out``; returns the self-check's figures.

    With ``int8``, ``out`` is the int8 model quantized from the checked fp32 graph, and the
    figures include its check against fp32 (``int8``).

    The file is built and checked in memory, then written as ``OUT.partial.onnx`` (created
    exclusively, never through a link) and renamed to ``out``: a failed export leaves ``out``
    as it was. Whether ``out`` may be replaced is the caller's check (:func:`check_output`).
    """
    onnx = need_onnx()
    if not tolerance > 0 or not np.isfinite(tolerance):
        raise ConfigError(f"--tolerance must be a positive number, not {tolerance:g}")
    processor, net = load_model(model)
    net = net.eval().float()
    pre = TensorPreprocessor.from_processor(processor)
    faces = synthetic_faces(images, seed=1)
    pixels = pre(faces) if pre is not None else processor(images=faces, return_tensors="pt")["pixel_values"]
    data, result = _export_checked(net, processor, pixels, model, opset, tolerance, images, onnx)
    if int8 is not None:
        data, result = _int8(data, result, processor, model, int8, onnx)
    written = write_atomic(out, data, "ONNX model")
    return {"path": str(written), **result}


def _export_checked(
    net: Any, processor: Any, pixels: torch.Tensor, model: str, opset: int, tolerance: float, images: int, onnx: Any
) -> tuple[bytes, dict[str, Any]]:
    """The ONNX file's bytes and its check against PyTorch (a ModelError if over ``tolerance``)."""
    # The wrapper must be in eval mode too: the exporter puts the module it was given back into
    # that module's mode when it is done, and a wrapper left in training mode (a new Module's
    # default) switched the whole network to training, batch-norm with batch statistics.
    wrapper = _Logits(net).eval()
    with torch.inference_mode():
        torch_logits = net(pixel_values=pixels).logits.numpy()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about constant shapes in transformers' checks
        torch.onnx.export(
            wrapper,
            (pixels[:2],),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter (dynamo=False) writes to file objects too
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
        )
    net.eval()
    proto = onnx.load_from_string(buf.getvalue())
    id2label = {int(k): str(v) for k, v in net.config.id2label.items()}
    meta = [(META_LABELS, json.dumps(id2label)), (META_PROCESSOR, json.dumps(processor.to_dict())), (META_SOURCE, model)]
    own = getattr(net.config, CALIBRATION_KEY, None)
    if isinstance(own, dict):  # the model's temperature and threshold travel with the file
        meta.append((META_CALIBRATION, json.dumps(own)))
    for key, value in meta:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    session = _session(data, "cpu")
    ort_logits = session.run(None, {"pixel_values": pixels.numpy()})[0]
    p_ort, p_torch = _softmax(ort_logits), _softmax(torch_logits)
    diff = float(np.abs(p_ort - p_torch).max())
    result = {
        "model": model,
        "opset": opset,
        "images": images,
        "size_mb": round(len(data) / 1e6, 1),
        "max_abs_diff": diff,
        "max_abs_diff_logits": float(np.abs(ort_logits - torch_logits).max()),
        "top1_agreement": float(np.mean(p_ort.argmax(1) == p_torch.argmax(1))),
    }
    if not diff <= tolerance:
        raise ModelError(f"ONNX export of '{model}' differs from PyTorch by {diff:.2e} (tolerance {tolerance:g}); try another --opset")
    return data, result


def _int8(fp32: bytes, result: dict[str, Any], processor: Any, model: str, plan: Int8Plan, onnx: Any) -> tuple[bytes, dict[str, Any]]:
    """The int8 model of the checked fp32 graph, with the fp32 file's metadata and a note that it is int8."""
    from fer_stream.model.head import ClassifierHead
    from fer_stream.model.quantize import META_PRECISION, META_QUANTIZATION, quantize_checked

    head = ClassifierHead(processor, (), 0.0)  # the classifier's own preprocessing, fast path included
    data, check = quantize_checked(fp32, head.preprocess, plan, model)
    proto = onnx.load_from_string(data)
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update({p.key: p.value for p in onnx.load_from_string(fp32).metadata_props})
    note = {"format": "QDQ", "weights": "int8 per channel, 7-bit", "activations": "uint8, min/max calibrated", **check}
    meta.update({META_PRECISION: "int8", META_QUANTIZATION: json.dumps(note)})
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    out = {**result, "precision": "int8", "fp32_size_mb": result["size_mb"], "size_mb": round(len(data) / 1e6, 1), "int8": check}
    return data, out
