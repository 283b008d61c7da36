"""Shared fixtures: real data from ../shared, tiny ViT classifiers built with save_pretrained."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_STREAM_SHARED", ROOT.parent / "shared")).resolve()
DETECTOR = SHARED / "models" / "blaze_face_short_range.tflite"
FULL_RANGE = SHARED / "models" / "face_detection_full_range_sparse.tflite"
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


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FER_STREAM_DETECTOR_MODEL=str(DETECTOR),
        FER_STREAM_FULL_RANGE_MODEL=str(FULL_RANGE),
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
