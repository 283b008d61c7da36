"""Errors a user can cause. Each one carries a single line that names the problem and the fix."""

from __future__ import annotations


class FerStreamError(Exception):
    """Base class: the command line prints ``fer-stream: error: <message>`` and exits non-zero."""

    exit_code = 1


class ConfigError(FerStreamError):
    """A setting is unknown or has a bad value."""

    exit_code = 2


class SourceError(FerStreamError):
    """A video source cannot be opened or decoded."""


class DeviceError(FerStreamError):
    """The requested compute device is unknown or not available."""


class ModelError(FerStreamError):
    """A classifier or detector model cannot be found or loaded."""


class SinkError(FerStreamError):
    """An output (video file, event log, window) cannot be written or shown."""


class PipelineError(FerStreamError):
    """A pipeline stage failed; the message names the stage and the cause."""
