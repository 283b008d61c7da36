"""Bounds that hold for every frame and every attempt: a stream that grows mid-way, a stream that
ends at once (backoff, counted warnings), image chunks by pixels, source specs that are no index."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import logging
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from fer_stream.errors import SourceError
from fer_stream.frames import Frame
from fer_stream.io.reconnect import Clock, ReconnectingSource, RepeatedLines
from fer_stream.io.sources import FrameTooLarge, Source


def _h264_ts(width: int, height: int, frames: int, fps: int = 25) -> bytes:
    """An MPEG-TS of ``frames`` flat grey H.264 frames of one size."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 40 + 5 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``grow.ts``: 5 frames of 64x48, then 5 of 640x480 (a stream whose size changes mid-way);
    ``clip.ts``: 1 s of 64x48 at 25 fps."""
    folder = tmp_path_factory.mktemp("media")
    (folder / "grow.ts").write_bytes(_h264_ts(64, 48, 5) + _h264_ts(640, 480, 5))
    (folder / "clip.ts").write_bytes(_h264_ts(64, 48, 25))
    return folder


@contextlib.contextmanager
def _http_server(folder: Path) -> Iterator[tuple[str, list[float]]]:
    """``folder`` served on 127.0.0.1 (a port of its own): its URL and the times of the GETs it answered."""
    requests: list[float] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(time.monotonic())
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _wait_for(condition, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- item 9: every decoded frame is checked -----------------------------------------------------


def test_a_video_that_grows_past_max_pixels_mid_way_ends_with_one_line(media, tiny_model, cli_env, tmp_path):
    summary = tmp_path / "s.json"
    args = ["--source", str(media / "grow.ts"), "--max-pixels", "10000", "--summary", str(summary), "--model", str(tiny_model), "-q"]
    r = run_cli(args, cli_env, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert "frame 5 is 640x480, over --max-pixels 10000" in r.stderr and "the source ended" in r.stderr
    # The same video is analysed whole when the limit allows its largest frame.
    r = run_cli(args[:3] + ["1000000"] + args[4:] + ["--overwrite"], cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(summary.read_text())["frames_in"] == 10


def test_a_camera_whose_frames_grow_past_max_pixels_is_not_reconnected(media):
    with _http_server(media) as (base, requests):
        src = ReconnectingSource(f"{base}/grow.ts", max_pixels=10000, backoff_initial=0.05)
        shapes = []
        with pytest.raises(FrameTooLarge, match="frame 5 is 640x480, over --max-pixels 10000"):
            for frame in src.frames():
                shapes.append(frame.image.shape)
                if len(shapes) >= 30:  # without the check: the large frames come through, and the stream is replayed
                    break
        src.close()
    assert shapes == [(48, 64, 3)] * 5  # no frame over the limit was ever converted and passed on
    assert len(requests) == 1 and src.health().state == "failed"


class _GrowingSource(Source):
    """``small`` frames of 100x100, then ``big`` frames of 640x546 (about 1 MiB each); not live."""

    width, height, fps = 100, 100, 25.0

    def __init__(self, small: int, big: int) -> None:
        self.small, self.big = small, big

    def frames(self) -> Iterator[Frame]:
        for i in range(self.small + self.big):
            h, w = (100, 100) if i < self.small else (546, 640)
            yield Frame(index=i, time=i / 25, image=np.zeros((h, w, 3), np.uint8), captured=time.monotonic())


class _NoFaces:
    kind = "none"

    def detect(self, image: np.ndarray) -> list:
        return []


class _NoClassifier:
    max_batch = 8
    labels = ("a", "b")


def _held_bytes(pipeline) -> int:
    """Bytes of the pictures waiting in the pipeline's queues now."""
    total = 0
    for q in (pipeline._frames, pipeline._detected, pipeline._classified, pipeline._out):
        with q.mutex:
            items = list(q.queue)
        for item in items:
            frame = getattr(item, "frame", item)
            if isinstance(frame, Frame):
                total += frame.image.nbytes
                annotated = getattr(item, "annotated", None)
                total += annotated.nbytes if isinstance(annotated, np.ndarray) else 0
    return total


def test_queues_shrink_when_frames_grow_mid_stream():
    """Queue lengths were fitted to the size at open only; they follow each frame's size now."""
    from fer_stream.stream.pipeline import Pipeline, QueueSizes

    budget_mb = 28  # 28 frames of 1 MiB: queues of (4, 8, 4), where 100x100 frames get (8, 16, 8)
    source = _GrowingSource(small=3, big=120)
    pipeline = Pipeline.for_source(source, _NoClassifier(), _NoFaces(), warmup=False, annotate=False, queues=QueueSizes(max_mb=budget_mb))  # type: ignore[arg-type]
    with pipeline:  # nobody reads the results: every queue fills up, then every stage waits
        full = _wait_for(
            lambda: all(q.full() for q in (pipeline._frames, pipeline._detected, pipeline._classified, pipeline._out)),
            timeout=120,
        )
        held, lengths = _held_bytes(pipeline), pipeline.queue_lengths()
    assert full
    assert lengths == {"frames": 4, "faces": 8, "results": 4}
    assert held <= budget_mb << 20  # without refitting: 8 + 16 + 8 + 8 frames of 1 MiB wait


# -- item 11: a stream that ends at once backs off; repeated warnings are counted -----------------


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


# -- item 17: image chunks bounded by pixels ------------------------------------------------------


def test_chunks_are_bounded_by_pixels_and_count():
    from fer_stream.io.images import chunk_by_pixels

    mp = 1_000_000
    sizes = [119 * mp] * 3 + [12 * mp] * 9 + [0, 0] + [1 * mp] * 40 + [60 * mp]
    chunks = chunk_by_pixels(sizes, budget=48 * mp, most=16)
    assert [i for c in chunks for i in c] == list(range(len(sizes)))  # every image once, in order
    for c in chunks:
        assert len(c) <= 16
        assert sum(sizes[i] for i in c) <= 48 * mp or len(c) == 1  # only an image over the budget is alone over it
    assert [len(c) for c in chunks[:3]] == [1, 1, 1] and len(chunks[3]) == 4  # 119 MP alone; 12 MP four at a time
    assert chunk_by_pixels([]) == []


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header says ``width`` x ``height``."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = 8 + 8
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    path.write_bytes(bytes(data))


def test_a_folder_of_huge_photos_is_read_in_chunks_bounded_by_pixels(tmp_path, monkeypatch, capsys):
    """``image --no-detect --dir``: each image is held whole until its chunk is classified."""
    import fer_stream.commands.image as command
    import fer_stream.io.images as images
    from fer_stream.config import load_config
    from fer_stream.io.images import CHUNK_PIXELS

    folder = tmp_path / "photos"
    folder.mkdir()
    declared = {}
    for i in range(20):
        w, h = (11000, 10800) if i % 4 else (4000, 3000)  # 119 MP, and every fourth 12 MP
        _png_declaring(folder / f"p{i:02}.png", w, h)
        declared[f"p{i:02}.png"] = w * h
    events: list[tuple[str, str]] = []

    def read_image(path: Path, max_pixels: int = 0) -> np.ndarray:  # a stand-in decoder: the sizes come from the real headers
        events.append(("read", Path(path).name))
        return np.zeros((8, 8, 3), np.uint8)

    class Classifier:
        def predict(self, crops: list) -> list:
            events.append(("classify", ""))
            return []  # 8x8 "faces" are too small to classify

    monkeypatch.setattr(images, "read_image", read_image)
    monkeypatch.setattr(command, "load_models", lambda cfg, detector: (Classifier(), None))
    command.classify_images(load_config(), [], str(folder), detect=False, as_json=True)
    chunks: list[list[str]] = [[]]
    for kind, name in events:
        if kind == "read":
            chunks[-1].append(name)
        else:
            chunks.append([])
    chunks = [c for c in chunks if c]
    assert sorted(n for c in chunks for n in c) == sorted(declared)
    for c in chunks:  # without the bound: 16 photos of 119 MP (5.7 GB of pixels) held together
        assert sum(declared[n] for n in c) <= CHUNK_PIXELS or len(c) == 1, chunks
    assert '"image":' in capsys.readouterr().out


# -- item 20: a source spec that is no webcam index ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--source", "²"], "'²' is neither a webcam index nor an existing file"),
        (["--source", "٣"], "'٣' is neither a webcam index nor an existing file"),
        (["--source", "99999999999999999999"], "is neither a webcam index nor an existing file"),
        (["--source", "x.mp4", "--serve", "127.0.0.1:²"], "must be PORT or HOST:PORT"),
        (["--source", "x.mp4", "--device", "cuda:²"], "cuda:N"),
    ],
    ids=["superscript-two", "arabic-indic-three", "past-a-c-int", "serve-port", "device-index"],
)
def test_digits_that_are_no_number_are_one_line(args, says, cli_env, tmp_path):
    # Run in a folder of its own: no file there has the name given.
    r = subprocess.run([sys.executable, "-m", "fer_stream", *args], cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and says in r.stderr, r.stderr


def test_a_device_index_in_other_digits_is_a_device_error():
    from fer_stream.errors import DeviceError
    from fer_stream.model.devices import resolve_device

    with pytest.raises(DeviceError, match="unknown device 'cuda:²'"):
        resolve_device("cuda:²")
