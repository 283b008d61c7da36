"""Shared fixtures: real data from ../shared, tiny ViT classifiers built with save_pretrained."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fer_stream.frames import Box, Face, Frame, FrameResult, Prediction, Quality

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_STREAM_SHARED", ROOT.parent / "shared")).resolve()
DETECTOR = SHARED / "models" / "blaze_face_short_range.tflite"
FULL_RANGE = SHARED / "models" / "face_detection_full_range_sparse.tflite"
LANDMARK = SHARED / "models" / "face_landmark.tflite"
MEDIA = sorted((SHARED / "media").glob("*.mp4"))
FACES = SHARED / "faces"
EXPRESSIONS = SHARED / "expressions"
LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
# The order the Ascend copy of trpakov/vit-face-expression lists the same labels in.
ASCEND_ORDER = ["sad", "disgust", "angry", "neutral", "fear", "surprise", "happy"]

HAVE_MEDIA = DETECTOR.is_file()

# Ray starts its workers at nice 15 (its default worker_niceness): on a machine whose cores are
# busy with normal-priority work they get a few percent of a core, and a Ray test that takes a
# minute takes half an hour. Every Ray the tests start (in this process or a fer-stream child,
# which inherits the environment) runs its workers at normal priority, like the rest of the suite.
os.environ.setdefault("RAY_worker_niceness", "0")


def media_file(part: str) -> Path:
    """The ../shared video whose name contains ``part`` (a path that does not exist without the data)."""
    return next((p for p in MEDIA if part in p.name), SHARED / "media" / f"missing-{part}.mp4")


collect_ignore = ["rtsp_server.py"]  # run by Debian's python3 (GStreamer), not a test module
# Fixtures that read ../shared: a test using one (directly or through another) is a media test.
MEDIA_FIXTURES = {
    "tiny_model",
    "clf",
    "detector",
    "tiled_detector",
    "ascend_model",
    "cli_env",
    "long_videos",
    "archive",
    "single_runs",
    "reported",
    "local_ray",
    "video",
    "model_server",
}


@pytest.hookimpl(tryfirst=True)  # before -m selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if MEDIA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.media)


@pytest.fixture(autouse=True)
def _media_present(request: pytest.FixtureRequest) -> None:
    """A media test without the test data is an error naming the fix, not a skip."""
    if not HAVE_MEDIA and request.node.get_closest_marker("media"):
        raise pytest.UsageError(
            f"test data not found at {SHARED}; set FER_STREAM_SHARED to the shared/ folder, or run the fast tier: pytest -m 'not media'"
        )


def save_tiny_vit(folder: Path, labels: list[str], seed: int = 0, base: Path | None = None, rows: list[int] | None = None) -> Path:
    """A 2-layer ViT on 32x32 inputs with its image processor, saved as safetensors.

    With ``base``, the network is that saved model's, its output rows reordered by ``rows`` (if
    given) and its config relabelled with ``labels``.
    """
    import torch
    import transformers
    from transformers import ViTConfig, ViTForImageClassification

    processor_cls = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    if base is None:
        torch.manual_seed(seed)
        cfg = ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=len(labels),
        )
        model = ViTForImageClassification(cfg)
        _fit(model, labels)
    else:
        model = ViTForImageClassification.from_pretrained(base)
    if rows is not None:
        with torch.no_grad():
            model.classifier.weight.copy_(model.classifier.weight[rows].clone())
            model.classifier.bias.copy_(model.classifier.bias[rows].clone())
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {l: i for i, l in enumerate(labels)}
    model.save_pretrained(folder, safe_serialization=True)
    processor_cls(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def _fit(model, labels: list[str], steps: int = 60) -> None:
    """A few seconds of training on ../shared/expressions so predictions depend on the face."""
    import cv2
    import numpy as np
    import torch

    xs, ys = [], []
    for i, label in enumerate(labels):
        for p in sorted((EXPRESSIONS / label).glob("*.jpg")):
            xs.append(cv2.resize(cv2.imread(str(p)), (32, 32)))
            ys.append(i)
    x = torch.from_numpy((np.stack(xs)[..., ::-1].astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2).copy())
    y = torch.tensor(ys)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x[idx]).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("tiny_vit"), LABELS)


@pytest.fixture(scope="session")
def clf(tiny_model: Path):
    """The tiny model on the CPU, batches of up to 8."""
    from fer_stream import EmotionClassifier

    return EmotionClassifier(str(tiny_model), device="cpu", max_batch=8)


@pytest.fixture(scope="session")
def detector():
    """MediaPipe's BlazeFace from ../shared, crops with the default 0.1 margin."""
    from fer_stream import FaceDetector

    with FaceDetector(DETECTOR) as d:
        yield d


@pytest.fixture(scope="session")
def tiled_detector():
    """The tiled detector (the default for files, cameras and images) on ../shared's models."""
    from fer_stream.model.detector import make_detector

    with make_detector("tiled", short_model=DETECTOR, full_model=FULL_RANGE) as d:
        yield d


@pytest.fixture(scope="session")
def ascend_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same network as ``tiny_model`` with its labels listed in the Ascend order (rows moved to match)."""
    rows = [LABELS.index(l) for l in ASCEND_ORDER]
    return save_tiny_vit(tmp_path_factory.mktemp("ascend_vit"), ASCEND_ORDER, base=tiny_model, rows=rows)


# What a Ray worker (another process, maybe another node) must be told to find the tests' models offline.
WORKER_VARS = (
    *("FER_STREAM_DETECTOR_MODEL", "FER_STREAM_FULL_RANGE_MODEL", "FER_STREAM_LANDMARK_MODEL"),
    *("FER_STREAM_CACHE", "HF_HUB_OFFLINE"),
)


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FER_STREAM_DETECTOR_MODEL=str(DETECTOR),
        FER_STREAM_FULL_RANGE_MODEL=str(FULL_RANGE),
        FER_STREAM_LANDMARK_MODEL=str(LANDMARK),
        FER_STREAM_CACHE=str(tmp_path_factory.mktemp("cache")),
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
    )
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


class Procs:
    """Processes a test starts, each in its own session (process group), all stopped when the test ends.

    Use the ``procs`` fixture (or ``Procs`` in a ``with`` block) for every process a test starts:

        def test_x(procs):
            proc = procs.start([sys.executable, "-m", "fer_stream", ...], stdout=subprocess.PIPE, text=True)
            ...                                  # any Popen keyword works (env, stdout, preexec_fn, ...)
            procs.stop(proc)                     # optional: SIGTERM to its group, then SIGKILL, and reap
            r = procs.run([browser, ...], timeout=120, capture_output=True, text=True)  # like subprocess.run

    Whatever the test's outcome, every process started here and every process in its group (children
    such as ffmpeg, Chromium's helpers or Ray's workers) gets SIGTERM, then SIGKILL after ``grace``
    seconds, and is reaped; its pipes are closed. Nothing keeps running, reconnecting or holding a port.
    """

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self.started: list[subprocess.Popen[Any]] = []

    def start(self, args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        self.started.append(proc)
        return proc

    def run(
        self, args: list[str], *, timeout: float, input: Any = None, capture_output: bool = False, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """:func:`subprocess.run`, but the whole group is killed on timeout (or any error) and reaped."""
        if capture_output:
            kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if input is not None:
            kwargs["stdin"] = subprocess.PIPE
        proc = self.start(args, **kwargs)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            os.killpg(proc.pid, signal.SIGKILL)
            try:  # what it printed, for the test's message (bounded: an escaped child may hold the pipe)
                e.stdout, e.stderr = proc.communicate(timeout=self.grace)
            except subprocess.TimeoutExpired:
                pass
            raise
        finally:
            self.stop(proc)
        return subprocess.CompletedProcess(args, proc.returncode, out, err)

    def stop(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
        """``sig`` to the process's group, SIGKILL to it after ``grace`` s, reaped; returns the exit code."""
        for s in (sig, signal.SIGKILL):
            try:
                os.killpg(proc.pid, s)  # its own session: the group id is its pid
            except (ProcessLookupError, PermissionError):
                pass  # the group is gone already
            try:
                proc.wait(self.grace)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children left behind by a leader that exited
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        return proc.returncode

    def stop_all(self) -> None:
        while self.started:
            self.stop(self.started.pop())

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@pytest.fixture
def procs():
    """A :class:`Procs`: every process started through it is killed and reaped when the test ends."""
    p = Procs()
    try:
        yield p
    finally:
        p.stop_all()


def run_cli(args: list[str], env: dict[str, str], timeout: float = 300, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``fer-stream ARGS`` to completion; on timeout its whole process group is killed and reaped."""
    with Procs() as p:
        return p.run([sys.executable, "-m", "fer_stream", *args], env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def wait_until(
    check: Callable[[], Any], timeout: float = 120.0, what: str = "", interval: float = 0.1, ignore: tuple[type[BaseException], ...] = ()
) -> Any:
    """``check()``'s first true value, polled until ``timeout`` s (generous: the machine may be busy).

    Exceptions in ``ignore`` (say ``OSError`` while a server is still starting) count as not yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
            if got:
                return got
        except ignore:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or check}")
        time.sleep(interval)


def decode_video(path: Path) -> dict:
    """Size, frame times, audio packet count and frames of a video, read back with PyAV."""
    import av
    import numpy as np

    out: dict = {}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out["size"] = (v.codec_context.width, v.codec_context.height)
        frames = [(f.time, np.ascontiguousarray(f.to_ndarray(format="rgb24"))) for f in c.decode(video=0)]
    out["times"] = [t for t, _ in frames]
    out["images"] = [im for _, im in frames]
    with av.open(str(path)) as c:
        a = c.streams.audio
        out["audio"] = (a[0].codec_context.name, a[0].codec_context.sample_rate) if a else None
        out["audio_packets"] = sum(1 for p in c.demux(a[0]) if p.dts is not None) if a else 0
    return out


# -- made-up frames and faces, and a fake classifier (fast-tier tests of sinks, overlay, modes) -------

TWO_LABELS = ("happy", "sad")
FACE_BOX = Box(40, 30, 60, 60)
SMALL_BOX = Box(10, 10, 40, 40)


def labelled_face(track: int, label: str | None, conf: float = 0.9, *, usable: bool = True, box: Box = FACE_BOX) -> Face:
    """A tracked face; with a label, predicted ``label`` at ``conf`` (the other label gets the rest)."""
    quality = Quality(size_px=60, sharpness=50.0, score=0.9, reason=None if usable else "small")
    face = Face(box, 0.9, np.full((60, 60, 3), 120, np.uint8), quality=quality).with_track(track)
    if label is None:
        return face
    other = next(lab for lab in TWO_LABELS if lab != label)
    return face.with_prediction(Prediction(probs=((label, conf), (other, 1 - conf)), flagged=conf < 0.7))


def numbered_result(i: int, faces: list[Face], size: tuple[int, int] = (160, 120)) -> FrameResult:
    """Frame ``i`` at 25 fps (its image differs from the other frames') with ``faces``."""
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 0] = (i * 8) % 256  # frames differ, so the encoder has something to do
    return FrameResult(Frame(i, i / 25, image, pts=i, captured=time.monotonic()), tuple(faces))


class BrightnessModel:
    """Probability of "happy" = the crop's mean brightness / 255; records its batches."""

    labels = TWO_LABELS
    max_batch = 4
    threshold = 0.7

    def __init__(self) -> None:
        self.batches: list[int] = []

    def preprocess(self, crops):
        import torch

        return torch.tensor([[float(np.mean(c)) / 255.0] for c in crops])

    def forward(self, pixels):
        self.batches.append(len(pixels))
        p = pixels[:, 0].numpy()
        return np.stack([p, 1 - p], axis=1).astype(np.float32)

    def postprocess(self, probs):
        from fer_stream.model.head import ClassifierHead

        return ClassifierHead(None, self.labels, self.threshold, fast=False).postprocess(probs)


def scored_face(track: int | None, probs: dict[str, float], *, crop: bool = True, box: Box = SMALL_BOX) -> Face:
    """A face predicted with ``probs`` (flagged under 0.7), with or without a crop."""
    top = sorted(probs.items(), key=lambda kv: -kv[1])
    quality = Quality(size_px=40, sharpness=50.0, score=0.9)
    face = Face(box, 0.9, np.full((16, 16, 3), 100, np.uint8) if crop else None, quality=quality, track=track)
    return face.with_prediction(Prediction(probs=tuple(top), flagged=top[0][1] < 0.7))


def timed_result(i: int, t: float, faces: list[Face], size: tuple[int, int] = (64, 48)) -> FrameResult:
    """Frame ``i`` at time ``t`` with ``faces``."""
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 1] = (i * 16) % 256
    return FrameResult(Frame(i, t, image, captured=time.monotonic()), tuple(faces))


# -- a detector that also boxes what is no face (tests of the face landmark model's verification) ---

# Parts of the first frame of ../shared's webcam video that hold no face (its face is at about
# (511, 229) 284x284): the right shoulder, the left shoulder, the wall, the chest below the face, a shelf.
WEBCAM_NO_FACE = (
    Box(850, 470, 220, 220),
    Box(180, 500, 200, 200),
    Box(40, 150, 130, 130),
    Box(540, 540, 240, 180),
    Box(960, 330, 120, 120),
)


class PlantedDetector:
    """A real detector's faces plus ``planted`` boxes (score 0.8, no keypoints), as a detector that
    boxes a shoulder or a wall would report them; ``calls`` lists the ``frame`` numbers (set by the
    caller before each ``detect``) it ran on. Closing closes ``real``."""

    def __init__(self, real: Any, planted: tuple[Box, ...] = ()) -> None:
        self.real, self.planted = real, planted
        self.kind = real.kind
        self.rejected: tuple[Box, ...] = ()
        self.frame = 0
        self.calls: list[int] = []

    def detect(self, image: np.ndarray) -> list[Face]:
        from fer_stream.model.detector import crop

        self.calls.append(self.frame)
        rgb = np.ascontiguousarray(image)
        return self.real.detect(rgb) + [Face(b, 0.8, crop(rgb, b, 0.1)) for b in self.planted]

    def reset(self) -> None:
        pass

    def close(self) -> None:
        self.real.close()

    def __enter__(self) -> PlantedDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- video streams made here, served over HTTP (limits and reconnects) ----------------------------


def h264_ts(width: int, height: int, frames: int, fps: int = 25) -> bytes:
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
    (folder / "grow.ts").write_bytes(h264_ts(64, 48, 5) + h264_ts(640, 480, 5))
    (folder / "clip.ts").write_bytes(h264_ts(64, 48, 25))
    return folder


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[tuple[str, list[float]]]:
    """``folder`` served on 127.0.0.1 (a port of its own): its URL and the times of the GETs it answered."""
    requests: list[float] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(time.monotonic())
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    with serving(functools.partial(Handler, directory=str(folder))) as url:
        yield url, requests


@contextlib.contextmanager
def serving(handler: Any) -> Iterator[str]:
    """An HTTP server of ``handler`` (a request handler class or factory) on 127.0.0.1, a port of its
    own, on a thread: its URL; shut down and joined when the block ends, pass or fail."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def wait_for(condition, timeout: float = 60.0) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# -- batch folders (manifest, batch inputs, Ray) -----------------------------------------------

SMALLEST_VIDEO = media_file("portrait")  # the smallest of ../shared's videos


def manifest_by_key(out: Path) -> dict[str, dict]:
    """The newest record of each key of a batch folder's manifest."""
    return {rec["key"]: rec for rec in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def manifest_by_stem(out: Path) -> dict[str, dict]:
    """The newest manifest record of each input, by the input's file stem."""
    return {Path(rec["input"]).stem: rec for rec in manifest_by_key(out).values()}


def video_copies(folder: Path, names: str) -> Path:
    """Copies (not links: links resolve to one input) of the portrait video, one per letter of ``names``."""
    folder.mkdir()
    for n in names:
        shutil.copyfile(SMALLEST_VIDEO, folder / f"{n}.mp4")
    return folder
