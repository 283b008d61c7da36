"""Reconnecting sources: backoff (streams that end at once included), giving up, one log line per outage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import http_server as _http_server
from conftest import run_cli, wait_until
from conftest import wait_for as _wait_for

from fer_stream.errors import SourceError
from fer_stream.frames import Frame
from fer_stream.io.reconnect import Clock, ReconnectingSource, RepeatedLines
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


def test_a_reconnect_pause_of_zero_is_refused(cli_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[source]\nreconnect_initial_s = 0\n")
    r = run_cli(["--config", str(cfg), "--source", "rtsp://127.0.0.1:9/x"], cli_env)
    assert r.returncode == 2 and "reconnect_initial_s" in r.stderr and "0.1" in r.stderr


class FakeClock(Clock):
    """Time that passes only when a frame is delivered or a wait is asked for."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.t += seconds
        return stop.is_set()


class _Clips:
    """Each connection plays the next clip of the script (its length in seconds at 25 fps) on the
    fake clock, then the stream ends as a short HTTP clip's does; no clips left: refused."""

    def __init__(self, clock: FakeClock, seconds: list[float]) -> None:
        self.clock, self.script, self.opened = clock, list(seconds), 0

    def __call__(self, url: str, **kwargs: object) -> Source:
        self.opened += 1
        if not self.script:
            raise SourceError("connection refused")
        return _Clip(self.clock, self.script.pop(0))


class _Clip(Source):
    width, height, fps = 8, 6, 25.0

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.n = clock, round(seconds * 25)

    def frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            yield Frame(index=i, time=i / 25, image=np.zeros((6, 8, 3), np.uint8), captured=time.monotonic())
            self.clock.t += 1 / 25


def test_streams_that_end_within_seconds_back_off_like_failed_attempts(caplog):
    clock = FakeClock()
    clips = _Clips(clock, [1, 1, 1, 10, 1, 1])
    src = ReconnectingSource(
        "http://cam/clip.ts", source_id="door", backoff_initial=1, backoff_max=30, max_reconnects=3, opener=clips, clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="fer_stream"), pytest.raises(SourceError, match="gave up after 3 reconnect attempts"):
        for _ in src.frames():
            pass
    # Three 1 s clips: pauses of 1, 2, 4 s. The 10 s one streamed long enough: reopened at once, the
    # backoff (and the count of failed attempts) starts afresh. Then 1 and 2 s; refused: the 4th
    # failed attempt in a row, given up.
    assert clock.waits == [1, 2, 4, 1, 2]
    assert clips.opened == 7 and src.reconnects == 5 and src.state == "failed"
    assert src.frames_read == 25 * 5 + 250
    lines = [r.getMessage() for r in caplog.records]
    outages = [m for m in lines if "reconnecting" in m]
    again = [m for m in lines if "streaming again" in m]
    # All within a minute: 3 lines of each kind, then the last held back, with the count before it.
    assert len(outages) == 4 and outages[-1].endswith("; reconnecting (at most 3 times) (repeated 2 times)"), lines
    assert len(again) == 4 and again[-1].endswith("(repeated 1 time)"), lines


def test_repeated_warnings_are_counted_not_repeated(caplog):
    clock = FakeClock()
    lines = RepeatedLines(logging.getLogger("fer_stream"), clock, burst=3, window=60.0)
    with caplog.at_level(logging.WARNING, logger="fer_stream"):
        for second in range(150):  # one a second for 150 s, and another kind twice
            clock.t = float(second)
            lines.warning("ended", "source cam1: the stream ended; reconnecting (for ever)")
            if second in (10, 11):
                lines.warning("other", "source cam1: connection refused; reconnecting (for ever)")
        lines.flush()
    shown = [r.getMessage() for r in caplog.records if "stream ended" in r.getMessage()]
    counted = sum(int(m.rsplit("(repeated ", 1)[1].split()[0]) if "(repeated" in m else 0 for m in shown)
    assert len(shown) + counted == 150  # every one is told, as a line or in a count
    assert len(shown) == 3 * 3 + 1  # 3 a minute, and at the end the last held back
    assert sum("connection refused" in r.getMessage() for r in caplog.records) == 2  # another kind is not held back
    for n in range(500):  # reasons that differ every time, for hours: what is remembered stays bounded
        clock.t = 200.0 + 30 * n
        lines.warning(f"outage {n}", f"source cam1: error {n}")
    assert len(lines._shown) <= 65


def test_a_short_clip_over_http_is_reopened_with_growing_pauses(media):
    with _http_server(media) as (base, requests):
        # However slowly this machine decodes the clip, it is a short stream (under min_stream_s).
        src = ReconnectingSource(f"{base}/clip.ts", backoff_initial=0.4, backoff_max=10, min_stream_s=60)
        frames: list[Frame] = []
        reader = threading.Thread(target=lambda: frames.extend(src.frames()), daemon=True)
        reader.start()
        try:
            assert _wait_for(lambda: len(requests) >= 5, timeout=120), requests
        finally:
            src.interrupt()
            reader.join(30)
            src.close()
        assert not reader.is_alive()
    gaps = np.diff(requests[:5])
    # Each 1 s clip is over in a moment: a failed attempt, so 0.4, 0.8, 1.6, 3.2 s pass before the
    # next request (at least: a busy machine only adds). Without the backoff: hundreds a second.
    assert all(gap >= 0.4 * 2**k * 0.95 for k, gap in enumerate(gaps)), gaps
    assert len(frames) >= 25 * 4 and src.reconnects >= 3


def test_an_outage_longer_than_max_outage_s_gives_up():
    from fer_stream.io.reconnect import ReconnectingSource

    opened = []

    def refuse(url, **kwargs):
        opened.append(url)
        raise SourceError("connection refused")

    src = ReconnectingSource("rtsp://127.0.0.1:1/cam", opener=refuse, backoff_initial=0.05, backoff_max=0.2, max_outage_s=0.5)
    with pytest.raises(SourceError, match=r"gave up after 0\.5 s without a frame: connection refused"):
        list(src.frames())
    assert len(opened) >= 2 and src.state == "failed"
