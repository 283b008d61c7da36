"""fer-stream: real-time facial-expression analysis for webcams, video files and RTSP cameras.

>>> from fer_stream import EmotionClassifier
>>> EmotionClassifier(device="auto").predict(["face.jpg"])[0].label   # doctest: +SKIP
'happy'

Heavy modules (torch, transformers, MediaPipe) load on first use of the names below.

The package's folders follow the data: ``io`` (sources, sinks, images, reports), ``model``
(classifier, detectors, devices), ``stream`` (pipeline, batching, live classification, tracking,
smoothing, overlay), ``serve`` (monitoring server, metrics, dashboard), ``commands`` (one module per
``fer-stream`` command); ``build`` turns settings into those objects. The 0.1 module paths
(``fer_stream.sources`` ...) still import, with a DeprecationWarning (see ``_compat``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fer_stream import _compat

__version__ = "0.1.0"

_EXPORTS = {
    "EmotionClassifier": "model.classifier",
    "FaceDetector": "model.detector",
    "Pipeline": "stream.pipeline",
    "PipelineStats": "stream.stats",
    "IoUTracker": "stream.track",
    "Smoother": "stream.smooth",
    "Overlay": "stream.overlay",
    "open_source": "io.sources",
    "Box": "frames",
    "Face": "frames",
    "Frame": "frames",
    "FrameResult": "frames",
    "Prediction": "frames",
    "Config": "config",
    "load_config": "config",
    "FerStreamError": "errors",
}

__all__ = [*_EXPORTS, "__version__"]

_compat.install()

if TYPE_CHECKING:  # pragma: no cover
    from fer_stream.config import Config, load_config
    from fer_stream.errors import FerStreamError
    from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction
    from fer_stream.io.sources import open_source
    from fer_stream.model.classifier import EmotionClassifier
    from fer_stream.model.detector import FaceDetector
    from fer_stream.stream.overlay import Overlay
    from fer_stream.stream.pipeline import Pipeline
    from fer_stream.stream.smooth import Smoother
    from fer_stream.stream.stats import PipelineStats
    from fer_stream.stream.track import IoUTracker


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fer_stream' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
