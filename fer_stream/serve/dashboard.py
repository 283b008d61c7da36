"""The ``--serve`` dashboard: ``/`` shows every camera live, and ``/api/state`` feeds it.

Per camera: its live picture (the MJPEG stream), its state from ``/healthz``, its current tracks
with label and confidence, the label mix of the last minutes and its recent flagged faces (small
thumbnails, for a person to look at). The page is one HTML file with its CSS and script inline
(nothing fetched from elsewhere, so it works on an isolated network) and polls ``/api/state``
once a second; a token given as ``?token=`` is passed on to every request it makes. While the
models load it says "starting".

:class:`SourceView` is the sink that keeps one camera's state: bounded (``minutes`` of per-second
label counts, ``keep_flagged`` thumbnails, at most one thumbnail per track every
``flag_every_s``), and cheap per frame: only a fresh flagged face costs a JPEG encode.

>>> view = SourceView()
>>> view.state()["tracks"]
[]
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter, deque
from typing import Any

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

    def _thumb(self, crop: Any) -> str:
        import cv2

        if crop is None or getattr(crop, "size", 0) == 0:
            return ""
        h, w = crop.shape[:2]
        scale = self.thumb_px / max(h, w)
        small = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        return base64.b64encode(buf.tobytes()).decode() if ok else ""

    def state(self) -> dict[str, Any]:
        """Tracks in the newest frame, label shares of the last minutes, flagged faces newest first."""
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
            }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fer-stream</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f3f4f6;color:#111}
header{background:#111827;color:#fff;padding:10px 18px;display:flex;gap:18px;align-items:baseline}
header h1{font-size:18px;margin:0} header span{color:#9ca3af}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px;padding:14px}
.cam{background:#fff;border-radius:8px;box-shadow:0 1px 3px #0002;padding:12px}
.cam h2{font-size:16px;margin:0 0 8px;display:flex;gap:10px;align-items:center}
.state{font-size:12px;padding:2px 8px;border-radius:10px;color:#fff;background:#6b7280}
.state.streaming{background:#059669}.state.reconnecting{background:#d97706}.state.failed{background:#dc2626}
.live{width:100%;background:#000;border-radius:4px;min-height:120px;display:block}
.row{display:flex;gap:12px;margin-top:8px}.row>div{flex:1}
table{border-collapse:collapse;width:100%;font-size:13px} td,th{padding:2px 6px;text-align:left;border-bottom:1px solid #eee}
.flag{color:#b45309;font-weight:600}
.bar{display:flex;height:18px;border-radius:4px;overflow:hidden;background:#e5e7eb}
.bar div{height:100%}
.legend span{display:inline-block;margin-right:8px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:3px;border-radius:2px}
.thumbs{display:flex;flex-wrap:wrap;gap:6px}
.thumbs figure{margin:0;font-size:11px;text-align:center}
.thumbs img{display:block;height:64px;border:2px solid #f59e0b;border-radius:3px}
.muted{color:#6b7280}
</style></head>
<body data-ok="0">
<header><h1>fer-stream</h1><span id="status">connecting&hellip;</span>
<span><a style="color:#93c5fd" id="healthz" href="healthz">/healthz</a> &middot;
<a style="color:#93c5fd" id="metrics" href="metrics">/metrics</a></span></header>
<main id="cams"></main>
<script>
"use strict";
const COLORS = {angry:"#dc2626",disgust:"#65a30d",fear:"#7c3aed",happy:"#f59e0b",neutral:"#6b7280",sad:"#2563eb",surprise:"#db2777"};
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
document.getElementById("healthz").href = "healthz" + q;
document.getElementById("metrics").href = "metrics" + q;
window.addEventListener("error", e => { document.body.dataset.error = String(e.message); });
function el(tag, attrs, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) { if (k === "class") n.className = v; else n.setAttribute(k, v); }
  for (const k of kids) n.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return n;
}
function color(label, i) { return COLORS[label] || ["#0891b2","#4d7c0f","#9333ea","#ea580c"][i % 4]; }
function card(id) {
  let c = document.getElementById("cam-" + id);
  if (c) return c;
  c = el("section", {class: "cam", id: "cam-" + id},
    el("h2", {}, id, el("span", {class: "state"}, "...")),
    el("img", {class: "live", alt: "live picture of " + id}),
    el("div", {class: "row"},
      el("div", {}, el("b", {}, "Tracks now"), el("table", {class: "tracks"})),
      el("div", {}, el("b", {class: "mixtitle"}, "Label mix"), el("div", {class: "bar"}), el("div", {class: "legend"}))),
    el("div", {}, el("b", {}, "Recent flagged faces"), el("div", {class: "thumbs"})));
  document.getElementById("cams").append(c);
  c.querySelector(".live").src = "sources/" + encodeURIComponent(id) + "/mjpeg" + q;
  return c;
}
function render(data) {
  document.body.dataset.state = data.state || "";
  if (data.state === "starting") {
    document.getElementById("status").textContent =
      "starting: loading the models, then the cameras (" + new Date().toLocaleTimeString() + ")";
    return;
  }
  const ids = Object.keys(data.sources);
  document.getElementById("status").textContent =
    ids.length + " camera" + (ids.length === 1 ? "" : "s") + ", " + data.status + ", updated " + new Date().toLocaleTimeString();
  for (const id of ids) {
    const s = data.sources[id], c = card(id);
    const st = c.querySelector(".state"), h = s.health || {};
    st.textContent = (h.state || "unknown") + (h.frames !== undefined ? " \u00b7 " + h.frames + " frames" : "");
    st.className = "state " + (h.state || "");
    const t = c.querySelector(".tracks");
    t.replaceChildren(el("tr", {}, el("th", {}, "track"), el("th", {}, "label"), el("th", {}, "confidence")));
    if (!s.tracks.length) t.append(el("tr", {}, el("td", {colspan: 3, class: "muted"}, "no face in view")));
    for (const tr of s.tracks) {
      const lab = tr.label === undefined ? "unusable (" + tr.unusable + ")" : tr.label;
      const conf = tr.confidence === undefined ? "" : (tr.confidence * 100).toFixed(0) + "%" + (tr.flagged ? " flagged" : "");
      t.append(el("tr", {class: tr.flagged ? "flag" : ""}, el("td", {}, "#" + tr.track), el("td", {}, lab), el("td", {}, conf)));
    }
    c.querySelector(".mixtitle").textContent = "Label mix, last " + s.mix_minutes + " min (" + s.mix_faces + " faces)";
    const bar = c.querySelector(".bar"), legend = c.querySelector(".legend");
    bar.replaceChildren(); legend.replaceChildren();
    Object.entries(s.mix).forEach(([label, share], i) => {
      bar.append(el("div", {style: "width:" + (share * 100) + "%;background:" + color(label, i), title: label}));
      legend.append(el("span", {}, el("i", {style: "background:" + color(label, i)}), label + " " + (share * 100).toFixed(0) + "%"));
    });
    if (!Object.keys(s.mix).length) legend.append(el("span", {class: "muted"}, "nothing classified yet"));
    const th = c.querySelector(".thumbs");
    th.replaceChildren();
    if (!s.flagged.length) th.append(el("span", {class: "muted"}, "none"));
    for (const f of s.flagged) {
      th.append(el("figure", {}, el("img", {src: "data:image/jpeg;base64," + f.jpeg, alt: "flagged face"}),
        "#" + f.track + " " + f.label + " " + (f.confidence * 100).toFixed(0) + "%",
        el("br"), new Date(f.time * 1000).toLocaleTimeString()));
    }
  }
  document.body.dataset.ok = String(Number(document.body.dataset.ok) + 1);
}
async function tick() {
  try {
    const r = await fetch("api/state" + q, {cache: "no-store"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    render(await r.json());
  } catch (e) {
    document.getElementById("status").textContent = "cannot reach fer-stream (" + e.message + "); retrying";
  }
  setTimeout(tick, 1000);
}
tick();
</script></body></html>
"""
