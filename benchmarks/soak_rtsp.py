"""Soak test: two looping RTSP cameras for a fixed time, the server killed several times.

Starts GStreamer's RTSP server on loopback (tests/rtsp_server.py, Debian's python3-gi) serving
looped copies of two videos, runs ``fer-stream`` on both cameras with segments, event logs and
``--serve``, kills the server ``--kills`` times (``--outage`` seconds each) at even intervals,
samples the process's memory (RSS) and thread count every few seconds, then stops it with
SIGTERM and reports, as JSON: memory growth after warm-up, thread counts, frames served while the
server was up against frames read, dropped and written (frames lost), reconnects, and whether
every closed segment plays.

    python benchmarks/soak_rtsp.py --minutes 10 --kills 4 --model /tmp/vit-b --precision int8 \\
        --detector-model ../shared/models/blaze_face_short_range.tflite --shared ../shared
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rtsp import RtspServer, free_port, looped_copy  # noqa: E402


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            out[key] = int(value.split()[0])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--kills", type=int, default=4)
    ap.add_argument("--outage", type=float, default=5.0, help="seconds the server stays down each time")
    ap.add_argument("--model", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--detector-model", default=None)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--sample-every", type=float, default=5.0)
    args = ap.parse_args()

    media = Path(args.shared) / "media"
    videos = {"a": (media / "two_people_512.mp4", 30.0), "b": (media / "portrait_436x384.mp4", 25.0)}
    seconds = args.minutes * 60
    work = Path(tempfile.mkdtemp(prefix="fer-soak-"))
    mounts = {k: looped_copy(v, work / f"{k}.mp4", seconds + 120) for k, (v, _) in videos.items()}
    port = free_port()
    env = dict(os.environ)
    if args.detector_model:
        env["FER_STREAM_DETECTOR_MODEL"] = args.detector_model
    server = RtspServer(mounts).start()
    out = work / "out"
    out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "fer_stream",
        "--source",
        f"a={server.url('a')}",
        "--source",
        f"b={server.url('b')}",
        "--model",
        args.model,
        "--precision",
        args.precision,
        "--output",
        str(out / "{source}.mp4"),
        "--segment-seconds",
        "60",
        "--events",
        str(out / "{source}.jsonl"),
        "--summary",
        str(work / "summary.json"),
        "--serve",
        f"127.0.0.1:{port}",
        "--stall-timeout",
        "3",
        "-q",
    ]
    err = open(work / "stderr.txt", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)

    def health() -> dict:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())

    while True:  # the clock starts once the models are loaded and both cameras stream
        if proc.poll() is not None:
            sys.exit(f"fer-stream exited: {(work / 'stderr.txt').read_text()}")
        try:
            if all(v["state"] == "streaming" for v in health()["sources"].values()):
                break
        except OSError:
            pass
        time.sleep(0.5)
    start = time.monotonic()
    first = {k: v["frames"] for k, v in health()["sources"].items()}
    kill_at = [start + seconds * (i + 1) / (args.kills + 1) for i in range(args.kills)]
    samples: list[dict[str, float]] = []
    kills = 0
    next_sample = start
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if proc.poll() is not None:
            break
        if kills < len(kill_at) and now >= kill_at[kills]:
            server.stop()
            time.sleep(args.outage)
            server.start()
            kills += 1
        if now >= next_sample:
            st = _proc_status(proc.pid)
            samples.append({"t": round(now - start, 1), "rss_mb": round(st["VmRSS"] / 1024, 1), "threads": st["Threads"]})
            next_sample += args.sample_every
        time.sleep(0.2)
    last = health()
    elapsed = time.monotonic() - start
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    server.stop()
    err.close()
    summary = json.loads((work / "summary.json").read_text())

    import av

    segments, playable = 0, 0
    for sid in ("a", "b"):
        for seg in summary["sources"][sid].get("segments", []):
            segments += 1
            try:
                with av.open(seg) as c:
                    playable += sum(1 for _ in c.decode(video=0)) > 0
            except av.error.FFmpegError:
                pass
    warm = [x for x in samples if x["t"] >= 60] or samples
    report = {
        "minutes": args.minutes,
        "model": args.model,
        "precision": args.precision,
        "server_kills": kills,
        "outage_s": args.outage,
        "exit_code": proc.returncode,
        "rss_mb": {
            "at_1min": warm[0]["rss_mb"],
            "end": samples[-1]["rss_mb"],
            "max": max(s["rss_mb"] for s in samples),
            "growth_after_1min": round(samples[-1]["rss_mb"] - warm[0]["rss_mb"], 1),
        },
        "threads": {"min": min(s["threads"] for s in samples), "max": max(s["threads"] for s in samples), "end": samples[-1]["threads"]},
        "sources": {},
        "segments": {"closed": segments, "playable": playable},
        "health_before_stop": {k: v["state"] for k, v in last["sources"].items()},
        "samples": samples,
        "stderr_lines": len((work / "stderr.txt").read_text().splitlines()),
        "work_dir": str(work),
    }
    for sid, (_, fps) in videos.items():
        s, h = summary["sources"][sid], last["sources"][sid]
        read = h["frames"] - first[sid]  # frames read during the measured time
        streaming_s = elapsed - h["down_s"]
        report["sources"][sid] = {
            "measured_s": round(elapsed, 1),
            "down_s": h["down_s"],
            "outages": h["outages"],
            "reconnects": h["reconnects"],
            "frames_read": read,
            "frames_expected_while_streaming": round(fps * streaming_s),
            "frames_missed_in_outages": round(fps * h["down_s"]),
            "dropped_total": s["dropped"],
            "frames_written_total": s["frames_out"],
            "frames_read_total": s["frames_in"],
            "latency_s": s["latency_s"],
            "tracks": len(s["tracks"]),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
