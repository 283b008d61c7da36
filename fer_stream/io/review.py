"""The review store: faces kept for a person to check, and what people said about them.

A store is a folder that several runs (and several reviewers) can share::

    DIR/review.jsonl      one record per kept face (append-only); {"id": ..., "dropped": true} retires one
    DIR/labels.jsonl      one record per answer: {"id", "label", "by", "time"}; the latest per id wins,
                          "label": null undoes
    DIR/faces/ID.jpg      the crop the classifier saw
    DIR/faces/ID.context.jpg  a larger cut-out of the frame around it

Both logs are :class:`~fer_stream.io.jsonlines.JsonLines` files (whole lines, synced, torn lines
skipped), and a face's pictures are written before its record, so a killed run never leaves a record
without its pictures. A label is one of the face's model labels (the keys of its ``probs``),
:data:`NOT_A_FACE` (a detector error) or :data:`SKIP` (looked at, no answer).

>>> store = ReviewStore.open("review/", create=True)                 # doctest: +SKIP
>>> store.label(store.faces()[0]["id"], "happy", by="ana")           # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_stream.errors import ConfigError, SinkError
from fer_stream.io.jsonlines import JsonLines

FACES_LOG = "review.jsonl"
LABELS_LOG = "labels.jsonl"
PICTURES = "faces"
NOT_A_FACE = "not_a_face"
SKIP = "skip"
MARKS = (NOT_A_FACE, SKIP)
_ID = re.compile(r"^[0-9a-f]{8,32}$")
_BY = re.compile(r"^[\w .@-]{0,40}$")


def valid_reviewer(name: str) -> bool:
    """Whether ``name`` can sign an answer: at most 40 letters, digits, spaces, '.', '@' or '-'."""
    return _BY.match(name) is not None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a reviewer said about one face (the latest answer for its id)."""

    id: str
    label: str
    by: str
    time: float


class ReviewStore:
    """A review folder (see the module's text). Reads follow the files, so several processes can share one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.faces_log = JsonLines(root / FACES_LOG)
        self.labels_log = JsonLines(root / LABELS_LOG)
        self._cache: dict[str, tuple[tuple[int, int], Any]] = {}

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = False) -> ReviewStore:
        """The store at ``path``; with ``create``, made if missing (its parent must exist). Errors name the fix."""
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"review store '{root}' is a file; give a folder (it is created if missing)")
        if not root.exists():
            if not create:
                raise ConfigError(f"review store '{root}' does not exist; make one with fer-stream --review {root} ...")
            if not root.parent.is_dir():
                raise ConfigError(f"cannot make review store '{root}': folder '{root.parent}' does not exist")
        if create:
            try:
                (root / PICTURES).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot make review store '{root}': {e.strerror}") from None
            if not os.access(root, os.W_OK | os.X_OK):
                raise ConfigError(f"review store '{root}' is not writable; give a folder you can write to")
        elif not (root / FACES_LOG).exists() and not (root / PICTURES).is_dir():
            raise ConfigError(f"'{root}' is not a review store (no {FACES_LOG}); make one with fer-stream --review {root} ...")
        return cls(root)

    # -- reading --------------------------------------------------------------------------------

    def _read(self, log: JsonLines) -> list[dict[str, Any]]:
        """``log``'s records, re-read only when the file changed (size or modification time)."""
        try:
            st = os.stat(log.path)
            stamp = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            return []
        key = log.path.name
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stamp:
            return list(hit[1])
        records = log.records()
        self._cache[key] = (stamp, records)
        return list(records)

    def faces(self) -> list[dict[str, Any]]:
        """Every kept face's record, oldest first (retired ones left out)."""
        kept: dict[str, dict[str, Any]] = {}
        for rec in self._read(self.faces_log):
            fid = rec.get("id")
            if not isinstance(fid, str):
                continue
            if rec.get("dropped"):
                kept.pop(fid, None)
            elif isinstance(rec.get("file"), str) and isinstance(rec.get("probs"), dict):
                kept[fid] = rec
        return list(kept.values())

    def face(self, fid: str) -> dict[str, Any] | None:
        return next((f for f in self.faces() if f["id"] == fid), None)

    def answers(self) -> dict[str, Answer]:
        """The latest answer per face id; an undone one (label null) is no answer."""
        latest: dict[str, Answer | None] = {}
        for rec in self._read(self.labels_log):
            fid, label = rec.get("id"), rec.get("label")
            if not isinstance(fid, str):
                continue
            if label is None:
                latest[fid] = None
            elif isinstance(label, str):
                latest[fid] = Answer(fid, label, str(rec.get("by", "")), float(rec.get("time", 0.0)))
        return {fid: a for fid, a in latest.items() if a is not None}

    def counts(self) -> dict[str, int]:
        """Faces kept, answered, per answer (labels, ``not_a_face``, ``skip``) and still unreviewed."""
        faces = {f["id"] for f in self.faces()}
        answers = {fid: a for fid, a in self.answers().items() if fid in faces}
        by = Counter(a.label for a in answers.values())
        return {"faces": len(faces), "reviewed": len(answers), "unreviewed": len(faces) - len(answers), **dict(sorted(by.items()))}

    def picture(self, name: str) -> Path | None:
        """The file of a picture named in a record (``faces/ID.jpg``), only ever inside the store."""
        m = re.fullmatch(r"faces/([0-9a-f]{8,32})(\.context)?\.jpg", name)
        if m is None:
            return None
        p = self.root / name
        return p if p.is_file() and not p.is_symlink() else None

    # -- writing --------------------------------------------------------------------------------

    def add(self, record: dict[str, Any], crop: np.ndarray, context: np.ndarray | None = None) -> str:
        """Keep a face: its pictures (RGB arrays) as JPEG files, then ``record`` with its ``id`` and files."""
        fid = uuid.uuid4().hex[:16]
        files = {"file": f"{PICTURES}/{fid}.jpg"}
        if context is not None:
            files["context"] = f"{PICTURES}/{fid}.context.jpg"
        try:
            _write_jpeg(self.root / files["file"], crop)
            if context is not None:
                _write_jpeg(self.root / files["context"], context)
            self.faces_log.append({"id": fid, **files, **record})
        except OSError as e:
            raise SinkError(f"writing review store '{self.root}' failed: {e.strerror or e}") from None
        return fid

    def drop(self, fid: str) -> None:
        """Retire a face: a ``dropped`` record, then its pictures removed."""
        face = self.face(fid)
        try:
            self.faces_log.append({"id": fid, "dropped": True, "time": round(time.time(), 3)})
        except OSError as e:
            raise SinkError(f"writing review store '{self.root}' failed: {e.strerror or e}") from None
        for key in ("file", "context"):
            if face is not None and isinstance(face.get(key), str) and self.picture(face[key]) is not None:
                (self.root / face[key]).unlink(missing_ok=True)

    def label(self, fid: str, label: str | None, by: str = "") -> dict[str, Any]:
        """Record a reviewer's answer (``None``: undo theirs); a ValueError names what is wrong."""
        if not _ID.match(fid):
            raise ValueError("not a face id")
        face = self.face(fid)
        if face is None:
            raise ValueError(f"no face {fid} in this store")
        allowed = set(face["probs"]) | set(MARKS)
        if label is not None and label not in allowed:
            raise ValueError(f"label must be one of {', '.join(sorted(allowed))}")
        if not valid_reviewer(by):
            raise ValueError("reviewer name: at most 40 letters, digits, spaces, '.', '@' or '-'")
        record = {"id": fid, "label": label, "by": by, "time": round(time.time(), 3)}
        self.labels_log.append(record)
        return record


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> None:
    """``rgb`` as a new JPEG file at ``path`` (never replacing one)."""
    import cv2  # OpenCV loads slowly; only runs that keep faces need it

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"cannot encode {path.name}")
    with open(path, "xb") as f:
        f.write(data.tobytes())


@dataclass(frozen=True, slots=True)
class Reviewed:
    """The answered faces of one or more stores: each labelled face's crop file, label and id, and
    how many answers were not labels (``not_a_face``: detector errors; ``skip``)."""

    files: tuple[Path, ...]
    labels: tuple[str, ...]
    ids: tuple[str, ...]
    marks: dict[str, int]
    stores: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)


def reviewed(paths: list[str] | tuple[str, ...]) -> Reviewed:
    """Every face a person labelled in the stores at ``paths`` (each face once, its latest answer)."""
    files: list[Path] = []
    labels: list[str] = []
    ids: list[str] = []
    marks: Counter[str] = Counter()
    seen: set[str] = set()
    for path in paths:
        store = ReviewStore.open(path)
        answers = store.answers()
        for face in store.faces():
            answer = answers.get(face["id"])
            if answer is None or face["id"] in seen:
                continue
            seen.add(face["id"])
            if answer.label in MARKS:
                marks[answer.label] += 1
                continue
            picture = store.picture(face["file"])
            if picture is None:
                continue  # its crop is gone: nothing to learn from
            files.append(picture)
            labels.append(answer.label)
            ids.append(face["id"])
    return Reviewed(tuple(files), tuple(labels), tuple(ids), {m: marks.get(m, 0) for m in MARKS}, tuple(str(p) for p in paths))
