"""A loopback RTSP server for the tests and the soak benchmark: GStreamer's gst-rtsp-server.

Runs under Debian's python3 (python3-gi, gir1.2-gst-rtsp-server-1.0, GStreamer's good/bad/libav
plugins; `.ci/run` installs them), not the project's virtual environment:

    /usr/bin/python3 tests/rtsp_server.py --port 8554 cam1=../shared/media/two_people_512.mp4

serves rtsp://127.0.0.1:8554/cam1, playing the MP4's H.264 track (copied, not re-encoded) at its
own rate, shared by every client. Prints "ready" once listening. For a camera that runs longer than
the video, serve a looped copy (tests/rtsp.py: looped_copy).
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def factory(path: str) -> GstRtspServer.RTSPMediaFactory:
    """Plays the file's H.264 track to every client of the mount, sharing one pipeline."""
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(
        f'( filesrc location="{path}" ! qtdemux name=d d.video_0 ! queue ! h264parse config-interval=-1 '
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    f.set_shared(True)
    return f


def main() -> None:
    ap = argparse.ArgumentParser(description="loopback RTSP server for fer-stream's tests")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("mounts", nargs="+", metavar="NAME=FILE")
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    points = server.get_mount_points()
    for spec in args.mounts:
        name, _, path = spec.partition("=")
        points.add_factory("/" + name, factory(path))
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
