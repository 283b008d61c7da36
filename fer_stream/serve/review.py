"""The review page's endpoints, under ``/review``: flagged faces to look at, and people's answers.

* ``GET /review``: the page (``review.html`` beside this module: nothing fetched from elsewhere; its
  colours are :mod:`fer_stream.palette`'s, as the dashboard's).
* ``GET /review/api/faces?order=newest|least_confident&filter=unreviewed|all|reviewed&limit=N``:
  JSON ``{"faces": [...], "matching", "counts", "labels", "marks", "colors", "by"}``; each face has
  its ``id``, ``time`` (in the stream), ``wall``, ``frame``, ``source``, ``source_id``, ``track``,
  the model's ``label`` and ``confidence``, ``top`` (its 3 most likely labels with their
  probabilities), ``picture`` and ``context`` (names under ``/review/``) and ``answer`` (the latest
  answer: ``label``, ``by``, ``time``; ``null`` if none). ``labels`` is every face's model label,
  sorted (the page's keys 1-9 in this order), ``limit`` at most :data:`MAX_LIMIT`.
* ``GET /review/faces/ID.jpg`` and ``/review/faces/ID.context.jpg``: a face's crop and the cut-out of
  the frame around it (:meth:`~fer_stream.io.review.ReviewStore.picture`: never a file outside them).
* ``POST /review/api/labels`` with ``{"id", "label", "by"}``: an answer (one of the face's labels,
  ``not_a_face``, ``skip``, or ``null`` to undo); the body is JSON (415 otherwise, which also makes a
  browser ask other origins' permission first, which is never given), at most :data:`MAX_BODY` bytes
  (413), with ``Content-Length`` (411), and an ``Origin``, if sent, must be this server's (403).
  Answers ``{"answer", "counts"}``; a bad one gets 400 with a one-line reason.

The monitoring server (``--serve`` with ``--review``) and ``fer-stream review`` both answer them
through :func:`answer`; the checks every request passes first (Host, token) are theirs.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fer_stream import palette
from fer_stream.io.review import MARKS, Answer, ReviewStore
from fer_stream.serve.server import JSON_TYPE, Handler, Refusal

PREFIX = "/review"
LABELS_PATH = re.compile(r"/review/api/labels")  # the one path taking POST
MAX_LIMIT = 500  # faces in one listing
DEFAULT_LIMIT = 200
MAX_BODY = 4096  # bytes of an answer's body
MAX_PICTURE = 16 << 20  # a picture larger than this is not one the store wrote
ORDERS = ("newest", "least_confident")
FILTERS = ("unreviewed", "all", "reviewed")
TOP = 3


@dataclass(frozen=True)
class ReviewSite:
    """A store served for review; answers sent without a name are recorded under ``by``."""

    store: ReviewStore
    by: str = ""


def labels_of(faces: list[dict[str, Any]]) -> list[str]:
    """Every label the faces' models gave probabilities for, sorted (the FER labels' model order)."""
    return sorted({label for f in faces for label in f["probs"]})


def _confidence(face: dict[str, Any]) -> float:
    conf = face.get("confidence")
    return float(conf) if isinstance(conf, (int, float)) else max(map(float, face["probs"].values()), default=0.0)


def card(face: dict[str, Any], answer: Answer | None) -> dict[str, Any]:
    """What the page shows of one face."""
    probs = sorted(((str(k), float(v)) for k, v in face["probs"].items()), key=lambda kv: -kv[1])
    return {
        "id": face["id"],
        **{k: face.get(k) for k in ("time", "wall", "frame", "source", "source_id", "track", "label")},
        "confidence": round(_confidence(face), 4),
        "top": [[k, round(v, 4)] for k, v in probs[:TOP]],
        "picture": face["file"],
        "context": face.get("context") if isinstance(face.get("context"), str) else None,
        "answer": None if answer is None else {"label": answer.label, "by": answer.by, "time": answer.time},
    }


def listing(site: ReviewSite, order: str = "newest", filter: str = "unreviewed", limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """``/review/api/faces``: the faces ``filter`` keeps, in ``order``, at most ``limit`` of them."""
    faces = site.store.faces()
    answers = site.store.answers()
    rows = [(i, f) for i, f in enumerate(faces) if filter == "all" or (f["id"] in answers) == (filter == "reviewed")]
    if order == "newest":
        rows.sort(key=lambda r: (float(r[1].get("wall") or 0.0), r[0]), reverse=True)
    else:
        rows.sort(key=lambda r: (_confidence(r[1]), r[0]))
    labels = labels_of(faces)
    return {
        "faces": [card(f, answers.get(f["id"])) for _, f in rows[:limit]],
        "matching": len(rows),
        "counts": site.store.counts(),
        "labels": labels,
        "marks": list(MARKS),
        "colors": palette.label_colors(labels),
        "by": site.by,
    }


def _query(req: Handler) -> dict[str, str]:
    return {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query).items()}


def page(site: ReviewSite, req: Handler, match: re.Match[str] | None = None) -> None:
    req.send(200, "text/html; charset=utf-8", PAGE.encode())


def faces(site: ReviewSite, req: Handler, match: re.Match[str]) -> None:
    q = _query(req)
    order, filter, limit = q.get("order", "newest"), q.get("filter", "unreviewed"), q.get("limit", str(DEFAULT_LIMIT))
    if order not in ORDERS:
        raise Refusal(400, f"order must be {' or '.join(ORDERS)}")
    if filter not in FILTERS:
        raise Refusal(400, f"filter must be {', '.join(FILTERS)}")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_LIMIT):
        raise Refusal(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
    req.send(200, JSON_TYPE, json.dumps(listing(site, order, filter, int(limit))).encode())


def picture(site: ReviewSite, req: Handler, match: re.Match[str]) -> None:
    path = site.store.picture(f"faces/{match['name']}")
    try:
        if path is None or path.stat().st_size > MAX_PICTURE:
            raise FileNotFoundError
        data = path.read_bytes()
    except OSError:  # not one, or dropped meanwhile
        req.send(404, "text/plain", b"no such picture\n")
        return
    req.send(200, "image/jpeg", data)


def same_origin(origin: str, host: str) -> bool:
    """Whether an ``Origin`` header names the server the ``Host`` header names."""
    parts = urllib.parse.urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.strip().lower()


def label(site: ReviewSite, req: Handler, match: re.Match[str]) -> None:
    origin = req.headers.get("Origin")
    if origin is not None and not same_origin(origin, req.headers.get("Host") or ""):
        raise Refusal(403, "answers are taken from this server's own page only")
    body = req.json_body(MAX_BODY)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise Refusal(400, 'send {"id": FACE_ID, "label": LABEL or null, "by": NAME}')
    given, by = body.get("label"), body.get("by", "")
    if given is not None and not isinstance(given, str):
        raise Refusal(400, "label must be a label, not_a_face, skip or null (undo)")
    if not isinstance(by, str):
        raise Refusal(400, "by must be the reviewer's name")
    try:
        record = site.store.label(body["id"], given, by.strip() or site.by)
    except ValueError as e:
        raise Refusal(400, str(e)) from None
    req.send(200, JSON_TYPE, json.dumps({"answer": record, "counts": site.store.counts()}).encode())


Respond = Callable[[ReviewSite, Handler, "re.Match[str]"], None]
ROUTES: tuple[tuple[re.Pattern[str], str, Respond], ...] = (
    (re.compile(r"/review"), "GET", page),
    (re.compile(r"/review/api/faces"), "GET", faces),
    (re.compile(r"/review/faces/(?P<name>[^/]+)"), "GET", picture),
    (LABELS_PATH, "POST", label),
)


def answer(site: ReviewSite, req: Handler, path: str) -> bool:
    """Answer a request for ``path`` (query and trailing ``/`` dropped) if it is a review path; a
    :class:`Refusal` for a wrong method (405) or bad input. ``False``: not one of them."""
    for pattern, method, respond in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if req.command != method:
            raise Refusal(405, f"use {method} for {path}", {"Allow": method})
        respond(site, req, match)
        return True
    return False


def _page() -> str:
    """``review.html`` with the palette's face-state colours as CSS variables."""
    text = (importlib.resources.files("fer_stream.serve") / "review.html").read_text(encoding="utf-8")
    colors = {
        "flagged": palette.FLAGGED,
        "flagged-text": palette.FLAGGED_TEXT,
        "confident": palette.CONFIDENT,
        "unknown": palette.UNCLASSIFIED,
    }
    assert all(re.fullmatch("#[0-9a-f]{6}", c) for c in colors.values())  # nothing but colours goes into the page
    return text.replace("/* fer_stream.palette */", ":root{" + "".join(f"--{k}:{v};" for k, v in colors.items()) + "}", 1)


PAGE = _page()
