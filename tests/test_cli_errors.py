"""Mistakes a user can make end in one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import MEDIA, run_cli

from fer_stream import cli


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "random.mp4").write_bytes(os.urandom(200_000))
    (d / "truncated.mp4").write_bytes(MEDIA[0].read_bytes()[:150_000])  # no moov atom
    (d / "notamodel").mkdir()
    (d / "notamodel" / "notes.txt").write_text("not a model")
    return d


CASES = {
    "missing file": (["--source", "/no/such/video.mp4"], "does not exist"),
    "random bytes": (["--source", "{bad}/random.mp4"], "cannot open video file"),
    "truncated video": (["--source", "{bad}/truncated.mp4"], "cannot open video file"),
    "dead RTSP camera": (
        ["--source", "rtsp://127.0.0.1:9/stream", "--max-reconnects", "0", "--model", "{tiny}"],
        "cannot open stream 'rtsp://127.0.0.1:9/stream'",
    ),
    "unknown device": (["--source", "{video}", "--device", "tpu"], "--device (classifier.device) must be one of"),
    "folder that is no model": (["--source", "{video}", "--model", "{bad}/notamodel"], "not a model folder"),
    "npu without torch_npu": (["--source", "{video}", "--model", "{tiny}", "--device", "npu"], "pip install 'fer-stream[npu]'"),
    "hub model offline": (["--source", "{video}", "--model", "nobody/no-such-model"], "fer-stream models pull"),
    "no camera": (["--source", "9"], "cannot open webcam 9"),
    "bad config value": (["--source", "{video}", "--max-batch", "0"], "--max-batch (classifier.max_batch) must be"),
    "unwritable output": (["--source", "{video}", "--output", "/no/such/dir/out.mp4"], "does not exist"),
    "bad detector model": (
        ["--source", "{video}", "--model", "{tiny}", "--detector", "short", "--detector-model", "{bad}/random.mp4"],
        "does not load in MediaPipe",
    ),
    "bad short-range model, tiled": (
        ["--source", "{video}", "--model", "{tiny}", "--detector-model", "{bad}/random.mp4"],
        "point it at MediaPipe's blaze_face_short_range.tflite",
    ),
    "bad full-range model": (
        ["--source", "{video}", "--model", "{tiny}", "--full-range-model", "{bad}/random.mp4"],
        "point it at MediaPipe's face_detection_full_range_sparse.tflite",
    ),
    "bad landmark model": (
        ["--source", "{video}", "--model", "{tiny}", "--landmark-model", "{bad}/random.mp4"],
        "point it at MediaPipe's face_landmark.tflite",
    ),
    "missing full-range model": (
        ["--source", "{video}", "--model", "{tiny}", "--detector", "full", "--full-range-model", "/no/such.tflite"],
        "does not exist",
    ),
    "window on a headless machine": (["--source", "{video}", "--model", "{tiny}", "--display"], "--no-display"),
    "no source": ([], "no source given"),
    "missing image": (["image", "/no/such/face.jpg"], "does not exist"),
    "two cameras, one output file": (
        ["--source", "a=rtsp://127.0.0.1:9/a", "--source", "b=rtsp://127.0.0.1:9/b", "--output", "{bad}/out.mp4"],
        "put {source} in the --output path",
    ),
    "same id twice": (["--source", "a=rtsp://127.0.0.1:9/a", "--source", "a=rtsp://127.0.0.1:9/b"], "ids must differ"),
    "bad serve address": (["--source", "{video}", "--serve", "localhost:http"], "--serve (serve.address) must be PORT or HOST:PORT"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_one_line_error(case, bad_inputs, tiny_model, cli_env):
    args, needle = CASES[case]
    args = [a.format(bad=bad_inputs, video=MEDIA[0], tiny=tiny_model) for a in args]
    r = run_cli(args + (["--quiet"] if args[:1] != ["image"] else []), cli_env, timeout=120)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fer-stream: error: ")
    assert needle in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_silent_camera_times_out_with_a_clear_line(cli_env, tiny_model):
    """A server that accepts the connection and never answers must not block forever."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        start = time.monotonic()
        r = run_cli(
            ["--source", f"rtsp://127.0.0.1:{port}/cam", "--max-reconnects", "0", "--model", str(tiny_model), "--quiet"],
            cli_env,
            timeout=60,
        )
        took = time.monotonic() - start
    finally:
        stop.set()
        acceptor.join()
        for c in held:
            c.close()
        server.close()
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "no answer within 10 s" in lines[0]
    assert took < 40


def test_a_busy_serve_address_fails_before_the_models_load(cli_env, tmp_path):
    import socket
    import time

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        r = run_cli(["--source", str(MEDIA[0]), "--model", "nobody/not-loaded", "--serve", f"127.0.0.1:{port}"], cli_env)
    assert r.returncode != 0 and f"cannot serve on 127.0.0.1:{port}" in r.stderr
    assert "not-loaded" not in r.stderr and time.monotonic() - started < 30  # no model was asked for


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


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--output", "out.avi"], "--output (output.video) must be a path ending in .mp4"),
        (["--max-batch", "0"], "--max-batch (classifier.max_batch) must be an integer from 1 to 256, not 0"),
        (["--serve", "localhost:http"], "--serve (serve.address) must be PORT or HOST:PORT"),
        (["--crf", "99"], "--crf (output.crf) must be an integer from 0 to 51"),
    ],
)
def test_a_bad_flag_value_names_the_flag(args, expected, capsys):
    assert cli.main(["--source", "talk.mp4", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fer-stream: error: ") and "\n" not in err and expected in err
    assert "command line" not in err and "[output]" not in err


def test_a_bad_value_in_a_file_still_names_the_file_and_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[output]\nvideo = "out.avi"\n')
    assert cli.main(["--config", str(cfg), "--source", "talk.mp4"]) == 2
    assert f"{cfg} [output]: 'video' must be a path ending in .mp4" in capsys.readouterr().err
