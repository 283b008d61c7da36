"""``DIR/manifest.jsonl``: what ``fer-stream batch`` did with each input, one JSON line per attempt.

The file is only ever appended to (one ``write`` of a whole line, flushed and synced), so a
killed batch leaves every finished video recorded; the last line of an input is its state. A torn
last line (power cut mid-write) is ignored on reading. Inputs are matched by a key: the SHA-256 of
a file's path, or of a URL as it is shown (:func:`~fer_stream.io.sources.redact`, its password and
secrets replaced by ``***``), so the key reveals nothing the ``input`` field beside it does not: a
dictionary of passwords recovers none. A finished one is skipped only while its file's size and
modification time and the settings' hash are unchanged and its outputs are still there.

>>> m = Manifest(Path("out/manifest.jsonl"))            # doctest: +SKIP
>>> m.latest()["3f2a..."]["status"]                     # doctest: +SKIP
'done'
"""

from __future__ import annotations

import hashlib
from typing import Any

from fer_stream.io.jsonlines import JsonLines
from fer_stream.io.sources import redact

DONE, FAILED, STOPPED = "done", "failed", "stopped"


def input_key(spec: str) -> str:
    """A stable key for an input: of a path, or of a URL without its password (two URLs that differ
    only in their password or tokens are the same input).

    >>> input_key("rtsp://admin:hunter2@cam/1") == input_key("rtsp://admin:letmein@cam/1")
    True
    """
    return _hash(redact(spec) if "://" in spec else spec)


def legacy_key(spec: str) -> str:
    """The key earlier versions gave ``spec`` (of the full URL, password and all): looked up to resume
    their manifests, never written."""
    return _hash(spec)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


class Manifest(JsonLines):
    """Appends records to, and reads the latest record per input from, a JSON-lines file."""

    def records(self) -> list[dict[str, Any]]:
        """Every whole record in file order (torn or foreign lines skipped)."""
        return [rec for rec in super().records() if isinstance(rec.get("key"), str)]

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of each input, by key."""
        return {rec["key"]: rec for rec in self.records()}
