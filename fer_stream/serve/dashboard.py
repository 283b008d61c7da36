"""The ``--serve`` dashboard: ``/`` shows every camera live, and ``/api/state`` feeds it.

Per camera: its live picture (the MJPEG stream), its state from ``/healthz``, its current tracks
with label and confidence, the label mix of the last minutes and its recent flagged faces (small
thumbnails, for a person to look at). The page is one HTML file with its CSS and script inline
(``dashboard.html`` beside this module: nothing fetched from elsewhere, so it works on an isolated
network) and polls ``/api/state`` once a second; a token given as ``?token=`` is passed on to every
request it makes. While the models load it says "starting". Its colours are :mod:`fer_stream.palette`'s,
as in the overlay and the report: the face states' written into the page (:data:`PAGE`), each label's
sent with the state (``colors``).

:class:`SourceView` is the sink that keeps one camera's state: bounded (``minutes`` of per-second
label counts, ``keep_flagged`` thumbnails, at most one thumbnail per track every
``flag_every_s``), and cheap per frame: only a fresh flagged face costs a JPEG encode.

>>> view = SourceView()
>>> view.state()["tracks"]
[]
"""

from __future__ import annotations

import base64
import importlib.resources
import re
import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from fer_stream import palette
from fer_stream.frames import FrameResult
from fer_stream.io.sinks import Sink


class SourceView(Sink):
    """One camera's current tracks, recent label mix and recent flagged faces, for the dashboard."""

    def __init__(self, *, minutes: float = 5.0, keep_flagged: int = 12, flag_every_s: float = 2.0, thumb_px: int = 72) -> None:
        self.seconds = int(minutes * 60)
        self.keep_flagged = keep_flagged
        self.flag_every_s = flag_every_s
        self.thumb_px = thumb_px
        self._lock = threading.Lock()
        self._tracks: list[dict[str, Any]] = []
        self._mix: deque[tuple[int, Counter[str]]] = deque()  # (second, label counts of classified faces)
        self._flagged: deque[dict[str, Any]] = deque(maxlen=keep_flagged)
        self._last_flag: dict[int, float] = {}
        self._colors: dict[str, str] = {}  # every label of the model: its colour in the label mix

    def write(self, result: FrameResult) -> None:
        now = time.time()
        second = int(now)
        tracks, fresh_flags = [], []
        counts: Counter[str] = Counter()
        for face in result.faces:
            p = face.prediction
            entry: dict[str, Any] = {"track": face.track, "box": face.box.as_list()}
            if p is None:
                entry["unusable"] = face.quality.reason if face.quality is not None else "unusable"
            else:
                if len(p.probs) != len(self._colors) or p.label not in self._colors:  # the first prediction (or another model)
                    self._colors = palette.label_colors(label for label, _ in p.probs)
                entry.update(label=p.label, confidence=round(p.confidence, 3), flagged=p.flagged)
                counts[p.label] += 1
                if p.flagged and face.fresh and now - self._last_flag.get(face.track_id, 0.0) >= self.flag_every_s:
                    self._last_flag[face.track_id] = now
                    fresh_flags.append((face, p))
            tracks.append(entry)
        thumbs = [
            {
                "time": round(now, 3),
                "video_s": round(result.frame.time, 3),
                "track": face.track,
                "label": p.label,
                "confidence": round(p.confidence, 3),
                "jpeg": self._thumb(face.crop),
            }
            for face, p in fresh_flags
        ]
        with self._lock:
            self._tracks = tracks
            if counts:
                if self._mix and self._mix[-1][0] == second:
                    self._mix[-1][1].update(counts)
                else:
                    self._mix.append((second, counts))
            while self._mix and self._mix[0][0] <= second - self.seconds:
                self._mix.popleft()
            self._flagged.extend(t for t in thumbs if t["jpeg"])
            if len(self._last_flag) > 1000:  # tracks long gone
                self._last_flag = {k: v for k, v in self._last_flag.items() if now - v < 60}

    def _thumb(self, crop: np.ndarray | None) -> str:
        import cv2  # heavy (OpenCV): only once a flagged face is shown

        if crop is None or crop.size == 0:
            return ""
        h, w = crop.shape[:2]
        scale = self.thumb_px / max(h, w)
        small = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        return base64.b64encode(buf.tobytes()).decode() if ok else ""

    def state(self) -> dict[str, Any]:
        """Tracks in the newest frame, label shares of the last minutes, flagged faces newest first, label colours."""
        with self._lock:
            total: Counter[str] = Counter()
            for _, c in self._mix:
                total.update(c)
            n = sum(total.values())
            return {
                "tracks": list(self._tracks),
                "mix": {label: round(count / n, 4) for label, count in total.most_common()} if n else {},
                "mix_faces": n,
                "mix_minutes": self.seconds / 60,
                "flagged": list(reversed(self._flagged)),
                "colors": dict(self._colors),
            }


def _page() -> str:
    """``dashboard.html`` with the palette's face-state colours as CSS variables."""
    text = (importlib.resources.files("fer_stream.serve") / "dashboard.html").read_text(encoding="utf-8")
    colors = {"flagged": palette.FLAGGED, "flagged-text": palette.FLAGGED_TEXT, "unknown": palette.UNCLASSIFIED}
    assert all(re.fullmatch("#[0-9a-f]{6}", c) for c in colors.values())  # nothing but colours goes into the page
    return text.replace("/* fer_stream.palette */", ":root{" + "".join(f"--{k}:{v};" for k, v in colors.items()) + "}", 1)


PAGE = _page()
