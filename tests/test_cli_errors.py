"""Mistakes a user can make end in one clear line and a non-zero exit, never a traceback."""

import os

import pytest

from conftest import MEDIA, run_cli


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "random.mp4").write_bytes(os.urandom(200_000))
    (d / "notamodel").mkdir()
    (d / "notamodel" / "notes.txt").write_text("not a model")
    return d


CASES = {
    "missing file": (["--source", "/no/such/video.mp4"], "does not exist"),
    "random bytes": (["--source", "{bad}/random.mp4"], "cannot open video file"),
    "unknown device": (["--source", "{video}", "--device", "tpu"], "'device' must be one of"),
    "folder that is no model": (["--source", "{video}", "--model", "{bad}/notamodel"], "not a model folder"),
    "npu without torch_npu": (["--source", "{video}", "--model", "{tiny}", "--device", "npu"], "pip install 'fer-stream[npu]'"),
    "hub model offline": (["--source", "{video}", "--model", "nobody/no-such-model"], "fer-stream models pull"),
    "no camera": (["--source", "9"], "cannot open webcam 9"),
    "bad config value": (["--source", "{video}", "--max-batch", "0"], "'max_batch' must be"),
    "unwritable output": (["--source", "{video}", "--output", "/no/such/dir/out.mp4"], "does not exist"),
    "bad detector model": (["--source", "{video}", "--model", "{tiny}", "--detector-model", "{bad}/random.mp4"], "does not load in MediaPipe"),
    "window on a headless machine": (["--source", "{video}", "--model", "{tiny}", "--display"], "--no-display"),
    "no source": ([], "no source given"),
    "missing image": (["image", "/no/such/face.jpg"], "does not exist"),
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
