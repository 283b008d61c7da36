"""fer-stream: real-time facial-expression analysis for webcams, video files and RTSP cameras.

>>> from fer_stream import EmotionClassifier
>>> EmotionClassifier(device="auto").predict(["face.jpg"])[0].label   # doctest: +SKIP
'happy'

Heavy modules (torch, transformers, MediaPipe) load on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "EmotionClassifier": "classify",
    "FaceDetector": "detect",
    "Pipeline": "pipeline",
    "PipelineStats": "stats",
    "IoUTracker": "track",
    "Smoother": "smooth",
    "Overlay": "overlay",
    "open_source": "sources",
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

if TYPE_CHECKING:  # pragma: no cover
    from .classify import EmotionClassifier
    from .config import Config, load_config
    from .detect import FaceDetector
    from .errors import FerStreamError
    from .frames import Box, Face, Frame, FrameResult, Prediction
    from .overlay import Overlay
    from .pipeline import Pipeline
    from .smooth import Smoother
    from .stats import PipelineStats
    from .track import IoUTracker
    from .sources import open_source


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fer_stream' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
