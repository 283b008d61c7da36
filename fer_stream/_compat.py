"""Old module paths of fer-stream 0.1 (``fer_stream.sources``, ``fer_stream.classify``, ...) and 0.2
(``fer_stream.commands.run``, ...) keep working until 0.3: importing one gives the module at its new
place, with a DeprecationWarning.

Written by hand because it is a table and a dozen lines of ``importlib``: the old names stay out
of the file list, so the folders show the architecture.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "sources": "io.sources",
    "reconnect": "io.reconnect",
    "sinks": "io.sinks",
    "images": "io.images",
    "report": "io.report",
    "manifest": "io.manifest",
    "classify": "model.classifier",
    "onnx_backend": "model.onnx_runtime",
    "detect": "model.detector",
    "blazeface": "model.blazeface",
    "quality": "model.quality",
    "devices": "model.devices",
    "models": "model.detector_files",
    "classifier_service": "model.service",
    "pipeline": "stream.pipeline",
    "live": "stream.live",
    "schedule": "stream.schedule",
    "track": "stream.track",
    "smooth": "stream.smooth",
    "overlay": "stream.overlay",
    "stats": "stream.stats",
    "monitor": "serve.monitor",
    "metrics": "serve.metrics",
    "dashboard": "serve.dashboard",
    "jobs": "commands.analyse",
    "bench": "commands.bench",
    "detection_bench": "commands.detection_bench",
    "parity": "commands.parity",
    "evaluate": "commands.evaluate",
    "train": "commands.train",
    "batch": "commands.batch",
    "archive": "analysis.archive",
    "cluster": "analysis.ray",
    # the engine out of commands/ (fer_stream.analysis), each command's module named after it
    "commands.run": "commands.analyse",
    "commands.signals": "analysis.signals",
    "commands.archive": "analysis.archive",
    "commands.cluster": "analysis.ray",
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``fer_stream.<old>`` and loads it as the module at its new path."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.partition(".")
        if package != "fer_stream" or name not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = f"fer_stream.{MOVED[spec.name.partition('.')[2]]}"
        warnings.warn(f"{spec.name} is now {new}; the old path works until fer-stream 0.3", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:  # the new module ran when it was imported
        pass


def install() -> None:
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
