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


def counted(n: int, singular: str, plural: str = "") -> str:
    """``n`` and the noun that agrees with it, for every count a message prints.

    >>> counted(1, "face"), counted(2, "face"), counted(0, "batch", "batches")
    ('1 face', '2 faces', '0 batches')
    """
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def first_line(error: BaseException, *, last: bool = False, limit: int = 200) -> str:
    """One line of an exception's message for an error line: its first (or ``last``), at most
    ``limit`` characters, or the exception's type when it has no message.

    >>> first_line(ValueError("bad header\\n  at byte 12"))
    'bad header'
    >>> first_line(OSError())
    'OSError'
    """
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return (lines[-1] if last else lines[0])[:limit]


def printable(text: str) -> str:
    r"""``text`` safe to print on one terminal line: control and other unprintable characters
    (newlines, escapes, bidi overrides, undecodable bytes of a file name) escaped as ``\n``, ``\x1b``...

    A file or URL someone else named must not forge lines of our output or move the cursor.

    >>> printable("clip\nfer-stream: error: forged.mp4")
    'clip\\nfer-stream: error: forged.mp4'
    >>> printable("café talk.mp4")
    'café talk.mp4'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text)
