"""Calibration: how far a model's confidence can be trusted, and the figures that show it.

- :func:`fit_temperature`: the temperature T that makes ``softmax(logits / T)`` match held-out
  answers best (lowest negative log-likelihood; Guo et al. 2017). It does not change which label wins.
- :func:`reliability`: confidence bins with their accuracy, and the expected calibration error (ECE).
- :func:`threshold_for`: the lowest confidence threshold at which the answers above it are right
  at least a target share of the time.

A trained model carries its temperature and threshold in its ``config.json`` under ``fer_stream``
(:func:`calibration_of` reads them); fer-stream applies the temperature to every answer and uses the
threshold when the user sets none.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KEY = "fer_stream"  # the config.json entry that holds a model's calibration
ONNX_KEY = "fer_stream.calibration"  # the metadata entry of an exported .onnx file that holds it (JSON)
FALLBACK_THRESHOLD = 0.7  # for models that carry no threshold of their own


@dataclass(frozen=True)
class Calibration:
    """A model's own temperature (1 = as trained) and flag threshold (None: the user's or 0.7)."""

    temperature: float = 1.0
    threshold: float | None = None


def calibration_of(config: Any) -> Calibration:
    """The calibration stored in a transformers config (or a config.json dict); defaults when absent or malformed."""
    entry = config.get(KEY) if isinstance(config, dict) else getattr(config, KEY, None)
    if not isinstance(entry, dict):
        return Calibration()
    t, thr = entry.get("temperature", 1.0), entry.get("threshold")
    temperature = float(t) if isinstance(t, (int, float)) and math.isfinite(t) and 0.05 <= t <= 20 else 1.0
    threshold = float(thr) if isinstance(thr, (int, float)) and 0 <= thr <= 1 else None
    return Calibration(temperature, threshold)


@functools.lru_cache(maxsize=32)
def model_calibration(model: str) -> Calibration:
    """The calibration of a model as fer-stream names one, read from its files without loading it:
    a local folder's config.json, an exported .onnx file's metadata, or a hub id's config.json in
    the Hugging Face cache (if it was fetched). Defaults when there is none."""
    path = Path(model).expanduser()
    try:
        if path.is_dir():
            return calibration_of(json.loads((path / "config.json").read_text(encoding="utf-8")))
        if path.is_file() and path.suffix.lower() == ".onnx":
            return _onnx_calibration(path)
        if not path.exists():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            if isinstance(cached, str):
                return calibration_of(json.loads(Path(cached).read_text(encoding="utf-8")))
    except (OSError, ValueError, ImportError):
        pass  # the model's loader reports a broken or missing model in its own words
    return Calibration()


def _onnx_calibration(path: Path) -> Calibration:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    meta = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    return calibration_of({KEY: json.loads(meta[ONNX_KEY])}) if ONNX_KEY in meta else Calibration()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)
    return float(-np.log(np.clip(p[np.arange(len(targets)), targets], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature in [0.05, 20] with the lowest held-out negative log-likelihood.

    A golden-section search over log T: the likelihood is smooth and unimodal in it, and 60 steps
    pin T to well under 0.1 % with no optimizer to tune.
    """
    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(logits, targets, math.exp(a)), nll(logits, targets, math.exp(b))
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(logits, targets, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(logits, targets, math.exp(b))
    return round(math.exp((lo + hi) / 2), 4)


@dataclass(frozen=True)
class Reliability:
    """Equal-width confidence bins: each bin's count, mean confidence and accuracy; and the ECE."""

    edges: list[float]
    counts: list[int]
    confidence: list[float | None]
    accuracy: list[float | None]
    ece: float

    def as_dict(self) -> dict[str, Any]:
        return {"edges": self.edges, "counts": self.counts, "confidence": self.confidence, "accuracy": self.accuracy, "ece": self.ece}


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> Reliability:
    """Bins of the top-label confidence (``bins`` equal widths over [0, 1]) and the expected
    calibration error: the count-weighted mean gap between each bin's accuracy and confidence."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sum_conf = np.bincount(which, conf, minlength=bins)
    sum_ok = np.bincount(which, ok, minlength=bins)
    n = max(len(conf), 1)
    ece = float(np.abs(sum_ok - sum_conf).sum() / n)
    mean = lambda s, c: round(float(s / c), 4) if c else None
    return Reliability(
        [round(float(e), 4) for e in edges],
        [int(c) for c in counts],
        [mean(s, c) for s, c in zip(sum_conf, counts)],
        [mean(s, c) for s, c in zip(sum_ok, counts)],
        round(ece, 4),
    )


def flag_split(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, Any]:
    """How many answers a threshold flags, and how often the unflagged and the flagged ones are right."""
    conf = np.asarray(confidence)
    ok = np.asarray(correct, dtype=bool)
    sure = conf >= threshold
    share = lambda m: round(float(ok[m].mean()), 4) if m.any() else None
    return {
        "threshold": round(float(threshold), 4),
        "flagged_share": round(float((~sure).mean()), 4) if len(conf) else None,
        "unflagged_accuracy": share(sure),
        "flagged_accuracy": share(~sure),
        "unflagged": int(sure.sum()),
        "flagged": int((~sure).sum()),
    }


def threshold_for(confidence: np.ndarray, correct: np.ndarray, target: float, floor: int = 20) -> float | None:
    """The lowest threshold (a confidence seen in the data, to 2 decimals rounded up) at which the
    answers at or above it are right at least ``target`` of the time, counting at least ``floor``
    answers; None when no threshold reaches it."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], ok[order]
    acc = np.cumsum(k) / np.arange(1, len(k) + 1)  # accuracy of the top-i answers
    for t in np.round(np.arange(0.0, 1.0001, 0.01), 2):
        m = int(np.searchsorted(-c, -t, side="right"))  # answers with confidence >= t
        if m >= floor and acc[m - 1] >= target:
            return float(t)
    return None
