"""ReconnectingSource against a scripted camera: backoff, giving up, one log line per outage."""

import logging
import time

import numpy as np
import pytest
from conftest import wait_until

from fer_stream.errors import SourceError
from fer_stream.frames import Frame
from fer_stream.io.reconnect import ReconnectingSource
from fer_stream.io.sources import Source


class ScriptedCamera:
    """Each connection attempt takes the next entry: an int (frames it delivers, then it drops) or an error."""

    def __init__(self, script):
        self.script = list(script)
        self.opened_at = []

    def __call__(self, url, **kwargs):
        self.opened_at.append(time.monotonic())
        step = self.script.pop(0) if self.script else SourceError("camera gone")
        if isinstance(step, Exception):
            raise step
        return _Conn(step)


class _Conn(Source):
    width, height, fps = 8, 6, 30.0

    def __init__(self, n):
        self.n = n

    def frames(self):
        for i in range(self.n):
            yield Frame(index=i, time=i / 30, image=np.zeros((6, 8, 3), np.uint8), captured=time.monotonic())
        raise SourceError("connection reset")


def test_frames_continue_across_outages_with_doubling_backoff(caplog):
    cam = ScriptedCamera([5, SourceError("refused"), SourceError("refused"), 4])
    src = ReconnectingSource("rtsp://cam/1", source_id="door", backoff_initial=0.05, backoff_max=1.0, max_reconnects=3, opener=cam)
    with caplog.at_level(logging.WARNING, logger="fer_stream"):
        frames = []
        with pytest.raises(SourceError, match="gave up after 3 reconnect attempts"):
            for f in src.frames():
                frames.append(f)
    assert [f.index for f in frames] == list(range(9))  # 5 + 4, numbered on
    assert all(b.time >= a.time for a, b in zip(frames, frames[1:]))
    gaps = np.diff(cam.opened_at)
    # Lost stream: retried at once; then 0.05 s and 0.1 s after failed attempts.
    assert gaps[0] < gaps[1] < gaps[2] and gaps[1] >= 0.05 and gaps[2] >= 0.1
    assert src.reconnects == 1 and src.outages == 2 and src.state == "failed"
    lines = [r.getMessage() for r in caplog.records]
    assert sum("reconnecting" in m for m in lines) == 2  # one line per outage, not per attempt
    assert sum("streaming again" in m for m in lines) == 1


def test_backoff_is_capped_and_retries_go_on_until_closed():
    cam = ScriptedCamera([SourceError("refused")] * 50)
    src = ReconnectingSource("rtsp://cam/1", backoff_initial=0.01, backoff_max=0.04, opener=cam)
    it = src.frames()
    import threading

    t = threading.Thread(target=lambda: list(it), daemon=True)
    t.start()
    try:
        wait_until(lambda: len(cam.opened_at) >= 8, 120, "8 attempts")
        h = src.health()
        assert h.state == "reconnecting" and h.frames == 0 and h.last_error == "refused"
        assert np.median(np.diff(cam.opened_at)[3:]) < 0.1  # pauses stop growing at the cap
    finally:
        src.interrupt()
        t.join(120)
    assert not t.is_alive()


def test_max_reconnects_zero_fails_with_the_reason_itself():
    src = ReconnectingSource("rtsp://cam/1", max_reconnects=0, opener=ScriptedCamera([SourceError("cannot open stream 'x'")]))
    with pytest.raises(SourceError, match="^cannot open stream 'x'$"):
        list(src.frames())


def test_redact_hides_passwords_in_urls_and_messages():
    from fer_stream.io.sources import redact, redact_text

    assert redact("rtsp://admin:S3cret@10.0.0.7:554/s1") == "rtsp://admin:***@10.0.0.7:554/s1"
    assert redact("rtsp://a:p%40ss@[::1]:8554/x") == "rtsp://a:***@[::1]:8554/x"
    assert redact("rtsp://admin@cam/s1") == "rtsp://***@cam/s1"  # a user name alone may be a token
    for plain in ("rtsp://cam/s1", "talk.mp4", "0"):
        assert redact(plain) == plain
    url = "rtsp://admin:S3cret@cam/s1"
    msg = redact_text(f"Connection refused: '{url}' (user admin, password S3cret)", url)
    assert "S3cret" not in msg and "rtsp://admin:***@cam/s1" in msg
