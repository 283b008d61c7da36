"""Pixel limits: frames that grow past max_pixels mid-stream, queues that shrink for big frames, huge photos chunked and scaled."""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DETECTOR, FACES, LANDMARK, media_file, run_cli
from conftest import http_server as _http_server
from conftest import wait_for as _wait_for

from fer_stream.frames import Frame
from fer_stream.io.reconnect import ReconnectingSource
from fer_stream.io.sources import FrameTooLarge, Source

VIDEO = media_file("436x384")


# -- every decoded frame is checked -------------------------------------------------------------


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
    rejected = ()

    def detect(self, image: np.ndarray) -> list:
        return []

    def reset(self) -> None:
        pass


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


# -- image chunks bounded by pixels --------------------------------------------------------------


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
    monkeypatch.setattr(command, "load_models", lambda cfg, detector, **kw: (Classifier(), None))
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


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_broken_and_oversized_images_are_one_line_each_and_the_others_go_on(tiny_model, cli_env, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a_empty.jpg").write_bytes(b"")
    _png_declaring(folder / "b_bomb.png", 50000, 50000)
    _png_declaring(folder / "c_huge.png", 30000, 30000)
    (folder / "d_junk.jpg").write_bytes(b"not a jpeg at all" * 10)
    cv2.imwrite(str(folder / "e_face.jpg"), cv2.imread(str(FACES / "one_face.jpg")))
    r = run_cli(["image", "--dir", str(folder), "--model", str(tiny_model), "--json"], cli_env, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr  # some failed: non-zero, but all were tried
    doc = {Path(d["image"]).name: d for d in json.loads(r.stdout)}
    assert "empty" in doc["a_empty.jpg"]["error"]
    assert "too large" in doc["b_bomb.png"]["error"] or "over the" in doc["b_bomb.png"]["error"]
    assert "30000x30000" in doc["c_huge.png"]["error"] or "too large" in doc["c_huge.png"]["error"]
    assert "not an image" in doc["d_junk.jpg"]["error"]
    assert len(doc["e_face.jpg"]["faces"]) == 1  # the good one after four bad ones
    assert r.stderr.count("fer-stream: warning: skipped") == 4


def test_a_big_photo_is_scaled_down_for_detection_and_boxes_map_back(tiny_model, cli_env, tmp_path):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(FACES / "one_face_large.png")), (5120, 2880)))
    r = run_cli(["image", str(big), "--detector", "short", "--model", str(tiny_model), "--json"], cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    faces = json.loads(r.stdout)[0]["faces"]
    assert len(faces) == 1
    # In original pixels: 4x the box the same detector (its boxes checked by the face landmark model,
    # as the image command does) finds in the picture at its own size, about (516, 191) 283x309.
    from fer_stream.build import make_detector
    from fer_stream.config import load_config
    from fer_stream.io.images import read_image

    cfg = load_config(None, {"detector.kind": "short", "detector.model": str(DETECTOR), "detector.landmark_model": str(LANDMARK)})
    with make_detector(cfg, follow=False) as det:
        [small] = det.detect(read_image(FACES / "one_face_large.png"))
    x, y, w, h = faces[0]["box"]
    assert abs(x - small.box.x * 4) < 60 and abs(y - small.box.y * 4) < 60 and abs(w - small.box.w * 4) < 120


def test_frames_beyond_max_pixels_are_refused_and_queues_shrink_for_big_frames(tiny_model, cli_env):
    from fer_stream.build import queue_sizes
    from fer_stream.config import load_config

    r = run_cli(["--source", str(VIDEO), "--max-pixels", "100000", "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode == 1 and "436x384, over --max-pixels 100000" in r.stderr and r.stderr.count("\n") == 1
    cfg = load_config()
    assert queue_sizes(cfg, 1920 * 1080 * 3) == (8, 16, 8)  # ordinary frames: the configured lengths
    for side in (3840, 7680, 16000):
        sizes = queue_sizes(cfg, side * side * 9 // 16 * 3)
        frames_held = sizes[0] + sizes[1] + 4 * sizes[2]
        assert min(sizes) >= 2 and (frames_held * side * side * 9 // 16 * 3 <= 1024 << 20 or sizes == (2, 2, 2))
