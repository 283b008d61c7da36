"""What a new user reads: help lines, errors that name the flag and the fix, counts that agree, and
mistakes caught before the slow model loading starts (tried as on a machine without Hub access)."""

import re
from pathlib import Path

import pytest
from conftest import FACES, MEDIA, ROOT, run_cli

from fer_stream import cli
from fer_stream.errors import ModelError

SHIPPED = "samples/models/fer2013-small"


def _one_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("fer-stream: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def _help_entries(text):
    """``{"-q, --quiet": "no progress bar", ...}``: each option of a --help page with its whole help text."""
    entries, name = {}, None
    for line in text.splitlines():
        m = re.match(r"  (-\S.*?)(?:\s{2,}(.*))?$", line)
        if m:
            name = m.group(1).strip()
            entries[name] = (m.group(2) or "").strip()
        elif name and line.startswith(" " * 10):
            entries[name] = (entries[name] + " " + line.strip()).strip()
        else:
            name = None
    return entries


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_off_flag_says_in_plain_words_what_it_turns_off(command):
    if command == "models":
        parser = cli.make_parser("models")._subparsers._group_actions[0].choices["pull"]
    else:
        parser = cli.make_parser(command)
    entries = _help_entries(parser.format_help())
    assert entries, parser.format_help()
    for name, text in entries.items():
        assert text and "turn off" not in text, (name, text)
        if name.startswith("--no-") or name.startswith("--display, --no-display"):
            assert text.startswith(("no ", "skip ", "leave ", "show ")), (name, text)
    if "-q, --quiet" in entries:
        assert entries["-q, --quiet"] == "no progress bar"


def test_help_lines_of_the_run_command():
    entries = _help_entries(cli.make_parser("run").format_help())
    assert entries["-q, --quiet"] == "no progress bar"
    assert entries["--no-audio"] == "leave the input's audio out of the annotated MP4"
    assert entries["--no-warmup"].startswith("skip the warm-up batch")
    assert "--no-display: never" in entries["--display, --no-display"]


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


def test_counts_agree_with_their_nouns(capsys):
    from fer_stream.commands.analyse import print_summary as _print_summary

    one = {
        "frames_out": 1,
        "frames_in": 1,
        "elapsed_s": 0.5,
        "fps": 2.0,
        "faces": 1,
        "tracks": [{"id": 1}],
        "classified": 1,
        "flagged": 0,
        "unusable": 0,
        "dropped": 0,
        "stopped_by": None,
        "latency_s": {},
        "labels": {"happy": 1},
        "outputs": {},
        "segments": ["a.mp4"],
    }
    _print_summary(one)
    out = capsys.readouterr().out
    assert "1 frame out of 1 read" in out and "1 face in 1 track," in out and "segments: 1 file," in out
    _print_summary({**one, "frames_out": 3, "frames_in": 3, "faces": 2, "tracks": [{"id": 1}, {"id": 2}], "segments": ["a", "b"]})
    out = capsys.readouterr().out
    assert "3 frames out of 3 read" in out and "2 faces in 2 tracks," in out and "segments: 2 files," in out


def test_serving_is_information_not_a_warning(tiny_model, cli_env):
    r = run_cli(["--source", str(MEDIA[0]), "--model", str(tiny_model), "--max-frames", "3", "--serve", "127.0.0.1:0", "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    serving = [l for l in r.stderr.splitlines() if "serving" in l]
    assert len(serving) == 1 and re.match(r"fer-stream: serving http://127\.0\.0\.1:\d+/ \(dashboard\)", serving[0]), r.stderr
    assert "warning" not in serving[0] and "3 frames out of 3" in r.stdout


def test_a_video_given_to_image_is_not_an_image_before_any_model_loads(cli_env):
    r = run_cli(["image", str(MEDIA[0]), "--model", "nobody/not-loaded"], cli_env, timeout=60)
    line = _one_line(r)
    assert "is not an image" in line and f"fer-stream --source {MEDIA[0]}" in line
    assert "not-loaded" not in r.stderr  # no model was looked for


@pytest.mark.parametrize("model", ["nosuchdir/", "no such dir", "a/b/c", "bad..name"])
def test_a_model_that_is_no_hub_id_is_a_missing_folder_not_a_hub_look_up(model, monkeypatch, tmp_path):
    from fer_stream.model.hub import load_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=f"^no such model folder '{re.escape(model)}'") as caught:
        load_model(model)
    assert "Hugging Face" not in str(caught.value) and "--model" in str(caught.value)


def test_the_default_model_offline_names_the_shipped_model(cli_env, tmp_path):
    env = dict(cli_env, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"))
    r = run_cli(["image", str(FACES / "one_face.jpg")], env, timeout=120)  # the default model, trpakov/vit-face-expression
    line = _one_line(r)
    assert "fer-stream models pull --model trpakov/vit-face-expression" in line
    named = re.search(r"--model (\S+)$", line)
    assert named and Path(named.group(1)).resolve() == (ROOT / SHIPPED).resolve(), line  # a path that works from here
    if Path.cwd().resolve() == ROOT:
        assert line.endswith(f"--model {SHIPPED}")  # run from the repository: the short form


def _without_detectors(cli_env, tmp_path):
    env = dict(
        cli_env,
        FER_STREAM_CACHE=str(tmp_path / "cache"),
        FER_STREAM_DETECTOR_URL="http://127.0.0.1:9/blaze_face_short_range.tflite",
        FER_STREAM_FULL_RANGE_URL="http://127.0.0.1:9/face_detection_full_range_sparse.tflite",
        FER_STREAM_TRUST_MIRROR="1",
    )
    env.pop("FER_STREAM_DETECTOR_MODEL")
    env.pop("FER_STREAM_FULL_RANGE_MODEL")
    return env


def test_every_missing_detector_file_is_named_at_once_before_the_classifier_loads(cli_env, tmp_path):
    env = _without_detectors(cli_env, tmp_path)
    r = run_cli(["--source", str(MEDIA[0]), "--model", "nobody/not-loaded", "-q"], env, timeout=120)
    line = _one_line(r)
    assert "cannot download blaze_face_short_range.tflite and face_detection_full_range_sparse.tflite" in line
    assert "FER_STREAM_DETECTOR_MODEL and FER_STREAM_FULL_RANGE_MODEL" in line and "fer-stream models pull" in line
    assert "not-loaded" not in r.stderr  # the classifier was not looked for
    missing = ["--detector-model", "/no/a.tflite", "--full-range-model", "/no/b.tflite"]
    r = run_cli(["--source", str(MEDIA[0]), "--model", "nobody/not-loaded", *missing], cli_env, timeout=120)
    line = _one_line(r)
    assert "'/no/b.tflite' (from --full-range-model) does not exist" in line and "'/no/a.tflite' (from --detector-model)" in line
    assert "not-loaded" not in r.stderr


def test_models_pull_uses_the_detector_files_the_environment_names(cli_env, tmp_path):
    env = dict(cli_env, FER_STREAM_CACHE=str(tmp_path / "cache"), FER_STREAM_DETECTOR_URL="http://127.0.0.1:9/x.tflite")
    r = run_cli(["models", "pull", "--model", "nobody/no-such-model"], env, timeout=120)
    assert f"detector (short-range): using {env['FER_STREAM_DETECTOR_MODEL']} (from $FER_STREAM_DETECTOR_MODEL)" in r.stdout
    assert f"detector (full-range): using {env['FER_STREAM_FULL_RANGE_MODEL']} (from $FER_STREAM_FULL_RANGE_MODEL)" in r.stdout
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing downloaded
    line = _one_line(r)
    assert "cannot download classifier 'nobody/no-such-model'" in line and f"--model {SHIPPED}" in line


def test_a_failing_models_pull_does_not_say_run_models_pull(cli_env, tmp_path):
    env = _without_detectors(cli_env, tmp_path)
    r = run_cli(["models", "pull"], env, timeout=120)
    line = _one_line(r)
    assert "cannot download blaze_face_short_range.tflite and face_detection_full_range_sparse.tflite" in line
    assert "models pull" not in line and "FER_STREAM_DETECTOR_URL" in line and "FER_STREAM_DETECTOR_MODEL" in line
