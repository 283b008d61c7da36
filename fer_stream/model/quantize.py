"""Static int8 quantization of an exported classifier, calibrated on real face crops (``fer-stream export --int8``).

ONNX Runtime's ``quantize_static`` in QDQ format: weights int8 per output channel (7-bit, see
below), activations uint8 with ranges measured (min/max) on calibration images that go through
the model's own preprocessing. ONNX Runtime turns every quantized convolution, addition, pooling
and the final linear layer into its int8 kernels (``QLinearConv``, ``QLinearAdd``, ``QGemm``), so
a ResNet's convolutions run in int8, unlike torch's dynamic quantization of linear layers alone.

Weights use 7 bits (``reduce_range``): x86-64 CPUs without VNNI multiply uint8 by int8 with an
instruction whose 16-bit sums saturate at full 8-bit range; at 7 bits they cannot, so every
x86-64 CPU computes the same integers as a VNNI one.

The images are split once with a fixed seed, proportionally per class folder
(:func:`split_images`): at most :data:`CALIBRATION_IMAGES` (and at most half of them) calibrate,
and up to :data:`CHECK_IMAGES` of the others check the int8 model against the fp32 one
(:func:`quantize_checked`): the share of equal top-1 answers must reach ``min_agreement``
(:data:`MIN_AGREEMENT` unless given).

>>> plan = split_images(files, classes)                          # doctest: +SKIP
>>> data, report = quantize_checked(fp32_bytes, preprocess, plan)  # doctest: +SKIP
>>> report["top1_agreement"]                                     # doctest: +SKIP
0.986
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_stream.errors import ConfigError, ModelError, SourceError, counted
from fer_stream.io.images import read_image

CALIBRATION_IMAGES = 256  # images that set the activation ranges (at most half of those given)
CHECK_IMAGES = 256  # held-out images the int8 model is compared with fp32 on
MIN_AGREEMENT = 0.95  # the share of held-out images whose top-1 label int8 and fp32 must agree on
MIN_IMAGES = 16  # fewer real crops than this calibrate nothing worth trusting
SEED = 0  # the split's seed: the same images on every run and machine
BATCH = 8
META_PRECISION = "fer_stream.precision"  # "int8" in a quantized file (an fp32 file has no such key)
META_QUANTIZATION = "fer_stream.quantization"  # JSON: how it was quantized and checked

# A batch of RGB crops -> the model's ``pixel_values`` (float32, N x 3 x H x W): the classifier's own preprocessing.
Preprocess = Callable[[Sequence[np.ndarray]], Any]


@dataclass(frozen=True)
class Int8Plan:
    """Which images calibrate, which check, and how close int8 must stay to fp32."""

    calibration: tuple[Path, ...]
    check: tuple[Path, ...]
    classes: int  # class folders the images came from (1: a plain folder of crops)
    source: str  # where they came from, for the report and the file's metadata
    min_agreement: float = MIN_AGREEMENT


def stratified_order(files: Sequence[Path], classes: Sequence[str], seed: int = SEED) -> list[int]:
    """Indices of ``files`` in an order whose every prefix holds each class in proportion.

    Each class is shuffled with ``seed`` (after sorting by path, so the listing's order does not
    matter); its j-th of n images gets the key (j + 0.5) / n, and all are sorted by key. The
    first k then hold about k * n_c / N images of class c, and so does any run that follows.
    """
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(classes):
        members[c].append(i)
    keyed: list[tuple[float, int, int]] = []
    for rank, c in enumerate(sorted(members)):
        idx = sorted(members[c], key=lambda i: str(files[i]))
        for j, k in enumerate(rng.permutation(len(idx))):
            keyed.append(((j + 0.5) / len(idx), rank, idx[int(k)]))
    return [i for *_, i in sorted(keyed)]


def split_images(
    files: Sequence[Path],
    classes: Sequence[str],
    *,
    calibration: int = CALIBRATION_IMAGES,
    check: int = CHECK_IMAGES,
    min_agreement: float = MIN_AGREEMENT,
    source: str = "",
    seed: int = SEED,
) -> Int8Plan:
    """The calibration and check images out of ``files`` (their class folder names in ``classes``).

    Calibration takes ``calibration`` images, at most half of them, so that as many are left to
    check on; the check takes up to ``check`` of the rest. Both are stratified by class.
    """
    if calibration < 1 or check < 1:
        raise ConfigError(f"--calibration-images and --check-images must be at least 1, not {min(calibration, check)}")
    if not 0 < min_agreement <= 1:
        raise ConfigError(f"--min-agreement must be above 0 and at most 1, not {min_agreement:g}")
    if len(files) < MIN_IMAGES:
        raise SourceError(
            f"'{source}' holds {counted(len(files), 'image')}; int8 calibration needs at least "
            f"{MIN_IMAGES} real face crops ({CALIBRATION_IMAGES} by default), e.g. the data set the model was trained on"
        )
    order = stratified_order(files, classes, seed)
    n = min(calibration, len(files) // 2)
    rest = order[n : n + check]
    return Int8Plan(
        calibration=tuple(files[i] for i in order[:n]),
        check=tuple(files[i] for i in rest),
        classes=len(set(classes)),
        source=source,
        min_agreement=min_agreement,
    )


def _batches(files: Sequence[Path], preprocess: Preprocess) -> Iterator[np.ndarray]:
    """``pixel_values`` batches of ``files``, read and preprocessed one batch at a time."""
    for start in range(0, len(files), BATCH):
        pixels = preprocess([read_image(f) for f in files[start : start + BATCH]])
        yield np.ascontiguousarray(np.asarray(pixels, dtype=np.float32))


class _Reader:
    """ONNX Runtime's calibration data reader (``get_next`` -> one input dict, ``None`` at the end)."""

    def __init__(self, name: str, files: Sequence[Path], preprocess: Preprocess) -> None:
        self._name = name
        self._it = _batches(files, preprocess)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self._name: batch}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice at INFO/WARNING through the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_bytes(fp32: bytes, plan: Int8Plan, preprocess: Preprocess) -> bytes:
    """The int8 (QDQ) model of the fp32 ONNX model ``fp32``, calibrated on ``plan.calibration``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load_from_string(fp32).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="fer-int8-") as tmp, _quiet():
        src, prepared, out = (Path(tmp) / f for f in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        src.write_bytes(fp32)
        # Shape inference and graph optimization first (ONNX Runtime's advice): every tensor gets
        # a shape, so every operator can be quantized.
        quant_pre_process(str(src), str(prepared))
        quantize_static(
            str(prepared),
            str(out),
            _Reader(name, plan.calibration, preprocess),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # Min/max: the calibration graph reduces each tensor to its range per batch, so memory
            # does not grow with the activations (entropy and percentile keep histograms of them).
            calibrate_method=CalibrationMethod.MinMax,
        )
        return out.read_bytes()


def _probs(session: Any, name: str, batches: Sequence[np.ndarray]) -> np.ndarray:
    logits = np.concatenate([session.run(None, {name: b})[0] for b in batches])
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compare(fp32: bytes, int8: bytes, files: Sequence[Path], preprocess: Preprocess) -> dict[str, Any]:
    """The int8 model against the fp32 one on ``files``: top-1 agreement, largest and mean probability difference."""
    from fer_stream.model.onnx_runtime import _session

    batches = list(_batches(files, preprocess))
    a, b = (_session(data, "cpu") for data in (fp32, int8))
    name = a.get_inputs()[0].name
    p32, p8 = _probs(a, name, batches), _probs(b, name, batches)
    return {
        "check_images": len(files),
        "top1_agreement": float(np.mean(p32.argmax(1) == p8.argmax(1))),
        "max_prob_diff": float(np.abs(p32 - p8).max()),
        "mean_prob_diff": float(np.abs(p32 - p8).mean()),
    }


def quantize_checked(fp32: bytes, preprocess: Preprocess, plan: Int8Plan, model: str = "") -> tuple[bytes, dict[str, Any]]:
    """The int8 model's bytes and its check against ``fp32`` (a ModelError under ``plan.min_agreement``)."""
    data = quantize_bytes(fp32, plan, preprocess)
    report = {
        "calibration_images": len(plan.calibration),
        "calibration_classes": plan.classes,
        "calibration_source": plan.source,
        "min_agreement": plan.min_agreement,
        **compare(fp32, data, plan.check, preprocess),
    }
    if not report["top1_agreement"] >= plan.min_agreement:
        raise ModelError(
            f"the int8 model of '{model}' gives the fp32 model's top label on only {report['top1_agreement']:.1%} of "
            f"{counted(len(plan.check), 'held-out image')} (floor {plan.min_agreement:.0%}); calibrate on more, "
            "or more typical, face crops (--calibration, --calibration-images) or lower --min-agreement"
        )
    return data, report
