"""Flood fer-stream's --serve server with idle and half-sent connections; report its threads and descriptors.

    python benchmarks/serve_flood.py --connections 1100 --seconds 25

The server (fer_stream.serve.monitor.Monitor, as --serve runs it) lives in this process; the clients in a
child process (so their descriptors do not count). Prints the server's peak thread and descriptor
counts while the clients hold their connections, and when /healthz answered again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
import threading
import time

from fer_stream.serve.metrics import Metrics
from fer_stream.serve.monitor import Monitor

CLIENT = textwrap.dedent("""
    import resource, socket, sys, time, urllib.request
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    port, n, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    socks = []
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n")  # half a request
            socks.append(s)
        except OSError:
            pass
    print("connections accepted by the kernel:", len(socks), flush=True)
    start = time.time()
    while time.time() - start < hold:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                print(f"/healthz answered {r.status} after {time.time() - start:.1f} s of the flood", flush=True)
                break
        except Exception:
            time.sleep(0.5)
    else:
        print(f"/healthz did not answer within {hold:g} s", flush=True)
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=25.0)
    a = ap.parse_args()
    with Monitor("127.0.0.1", 0, Metrics()) as mon:
        mon.health["cam1"] = lambda: {"state": "streaming"}
        port = mon.server.server_address[1]
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port), str(a.connections), str(a.seconds)])
        peak_threads = peak_fds = 0
        while client.poll() is None:
            peak_threads = max(peak_threads, threading.active_count())
            peak_fds = max(peak_fds, len(os.listdir("/proc/self/fd")))
            time.sleep(0.05)
        print(f"server peak threads {peak_threads}, peak descriptors {peak_fds} (max_clients 32, {a.connections} connection attempts)")


if __name__ == "__main__":
    main()
