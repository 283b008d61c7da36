"""Append-only JSON Lines files that survive a killed process: the batch manifest, the review store.

Each record is one ``write`` of a whole line on a descriptor opened with ``O_APPEND`` (so writers in
several threads or processes never interleave within a line), then ``fsync``. A torn last line
(power cut mid-write) is ended with a newline by the next writer and skipped by every reader.

>>> log = JsonLines(Path("store/labels.jsonl"))          # doctest: +SKIP
>>> log.append({"id": "a1", "label": "happy"})           # doctest: +SKIP
>>> log.records()                                        # doctest: +SKIP
[{'id': 'a1', 'label': 'happy'}]
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


class JsonLines:
    """One append-only JSON-lines file: :meth:`append` a record, read every whole one with :meth:`records`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every whole JSON object in file order (torn or foreign lines skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Add ``record`` as one line, on disk (synced) when this returns."""
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                if os.fstat(fd).st_size and not _ends_with_newline(fd):
                    os.write(fd, b"\n")  # a torn line from a killed run stays on its own line
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return os.pread(fd, 1, size - 1) == b"\n"
