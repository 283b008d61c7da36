"""Helpers for tests against a real RTSP server on loopback (tests/rtsp_server.py)."""

from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from conftest import Procs

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin") or "/usr/bin/python3"


@functools.cache
def gst_rtsp_available() -> bool:
    """Whether Debian's python3 can import GStreamer's RTSP server (python3-gi + gir1.2-gst-rtsp-server-1.0)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer"
    )
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=120).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """GStreamer's RTSP server in a child process, serving ``mounts`` (name -> MP4) on ``port``.

    Started through ``procs`` (the test's :class:`conftest.Procs`, so it is killed when the test
    ends whatever happens) or, without one, through its own, stopped by :meth:`stop` / ``with``.
    """

    def __init__(self, mounts: dict[str, Path], port: int | None = None, procs: Procs | None = None) -> None:
        self.mounts = mounts
        self.port = port or free_port()
        self.procs = procs if procs is not None else Procs()
        self.proc: subprocess.Popen[str] | None = None

    def url(self, name: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}"

    def start(self, timeout: float = 120.0) -> RtspServer:
        """Start and wait (generously: GStreamer is slow to start on a busy machine) for its "ready"."""
        args = [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), "--port", str(self.port)]
        args += [f"{k}={v}" for k, v in self.mounts.items()]
        self.proc = self.procs.start(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"RTSP server did not start within {timeout:g} s: {line!r}")
        return self

    def stop(self) -> None:
        """Kill the server at once, as a crashed or unplugged camera would vanish."""
        if self.proc is not None:
            self.procs.stop(self.proc, signal.SIGKILL)
            if self.proc in self.procs.started:
                self.procs.started.remove(self.proc)
            self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def looped_copy(src: Path, dst: Path, seconds: float) -> Path:
    """``src``'s video track repeated (copied, not re-encoded) until it lasts at least ``seconds``."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        packets = [p for p in inp.demux(stream) if p.dts is not None]
        step = round(1 / (stream.average_rate * stream.time_base))
        first = min(p.pts for p in packets)
        period = max(p.pts for p in packets) + step - first
        with av.open(str(dst), "w") as out:
            ostream = out.add_stream_from_template(stream)
            loops = max(1, int(seconds / float(period * stream.time_base)) + 1)
            for k in range(loops):
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts, q.dts = p.pts + k * period, p.dts + k * period
                    q.is_keyframe = p.is_keyframe
                    q.time_base = stream.time_base
                    q.stream = ostream
                    out.mux(q)
    return dst
