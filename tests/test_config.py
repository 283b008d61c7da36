"""Settings: the root config's reference, defaults, files then flags, bad values, sample configs, sources."""

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from fer_stream.config import Config, load_config, render, settings
from fer_stream.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_root_config_lists_every_setting_with_its_default_and_a_comment():
    text = (ROOT / "config.toml").read_text()
    data = tomllib.loads(text)
    for dotted, default, _help in settings():
        table, key = dotted.split(".")
        assert data[table][key] == default, dotted
        line = next(l for l in text.splitlines() if l.startswith(f"{key} = "))
        assert "#" in line.split("=", 1)[1], f"{dotted} has no comment"
    assert load_config(ROOT / "config.toml") == Config()
    assert text == render()


def test_required_defaults():
    c = Config()
    assert c.classifier.max_batch == 8
    assert c.classifier.threshold == "auto" and c.classifier.backend == "auto" and c.classifier.tta == "none"
    assert c.classifier.model == "trpakov/vit-face-expression"


def test_file_then_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[classifier]\nmax_batch = 4\nthreshold = 0.5\n[output]\nevents = "x.csv"\n')
    cfg = load_config(p, {"classifier.max_batch": 2})
    assert cfg.classifier.max_batch == 2
    assert cfg.classifier.threshold == 0.5
    assert cfg.output.events == "x.csv"
    assert cfg.detector.min_confidence == 0.5


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[classifier]\nbatch = 4\n", "unknown key 'classifier.batch'"),
        ("[clasifier]\nmax_batch = 4\n", "unknown table [clasifier]"),
        ("[classifier]\nmax_batch = 0\n", "'max_batch' must be an integer from 1"),
        ("[classifier]\nthreshold = 'high'\n", "'threshold' must be 'auto' or a number"),
        ("[classifier]\ndevice = 'tpu'\n", "'device' must be one of"),
        ("[display]\nenabled = 'yes'\n", "'enabled' must be"),
        ("[output]\nevents = 'log.txt'\n", "'events' must be a path ending in .jsonl or .csv"),
        ("[classifier\n", "not valid TOML"),
        ("[[sources]]\nid = 'a'\n", "needs input"),
        ("[[sources]]\nid = 'a b'\ninput = 'rtsp://x/1'\n", "letters, digits"),
        ("[[sources]]\ninput = 'rtsp://x/1'\nurl = 'y'\n", "unknown key 'url'"),
        ("[[sources]]\nid = 'a'\ninput = 'rtsp://x/1'\n[[sources]]\nid = 'a'\ninput = 'rtsp://x/2'\n", "ids must differ"),
        ("sources = 'rtsp://x/1'\n", "array of tables"),
        ("[source]\ntransport = 'quic'\n", "'transport' must be one of"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, body, needle):
    p = tmp_path / "c.toml"
    p.write_text(body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("sample", sorted((ROOT / "samples").rglob("*.toml")), ids=lambda p: p.name)
def test_sample_configs_load(sample):
    cfg = load_config(sample)
    if sample.name == "video-archive.toml":  # settings for `fer-stream batch`, which names the inputs
        assert not cfg.source.input and not cfg.sources and cfg.classifier.classify_every > 1
    else:
        assert cfg.source.input or cfg.sources
    if sample.parent.name == "fleet":  # a camera group: its own port, outputs per camera
        assert cfg.serve.address and "{source}" in cfg.output.events


def test_sources_tables_and_repeated_flags(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[[sources]]\nid = 'door'\ninput = 'rtsp://a/1'\n[[sources]]\ninput = 'rtsp://b/1'\n")
    assert load_config(p).sources == (("door", "rtsp://a/1"), ("cam2", "rtsp://b/1"))
    # Several --source flags replace the file's list.
    assert load_config(p, {"sources": [("x", "rtsp://c/1"), ("y", "0")]}).sources == (("x", "rtsp://c/1"), ("y", "0"))


@pytest.mark.parametrize("command", ["run", "batch"])
def test_the_face_mesh_flags_set_their_settings(command):
    from fer_stream import cli
    from fer_stream.commands.options import overrides

    def cfg(*flags: str) -> Config:
        first = ["--source", "a.mp4"] if command == "run" else ["in", "--out", "out"]
        return load_config(None, overrides(cli.make_parser(command).parse_args([*first, *flags])))

    default = cfg()
    assert (default.detector.verify, default.detector.align, default.output.landmarks, default.output.draw_rejected) == (
        True,
        True,
        False,
        False,
    )
    assert (default.detector.min_presence, default.detector.rescan_every, default.quality.max_yaw) == (0.5, 10, 45.0)
    c = cfg("--no-verify", "--no-align", "--min-presence", "0.3", "--rescan-every", "4", "--max-yaw", "45", "--landmark-model", "lm.tflite")
    assert (c.detector.verify, c.detector.align, c.detector.min_presence, c.detector.rescan_every) == (False, False, 0.3, 4)
    assert (c.quality.max_yaw, c.detector.landmark_model) == (45.0, "lm.tflite")
    c = cfg("--landmarks", "--draw-rejected")
    assert c.output.landmarks is True and c.output.draw_rejected is True


def test_debug_also_draws_the_rejected_boxes(monkeypatch):
    """``--debug`` on a command that draws turns ``output.draw_rejected`` on (unless set), in-process."""
    from fer_stream import cli
    from fer_stream.commands import analyse

    seen: list = []
    monkeypatch.setattr(analyse, "handle", lambda cfg, args: seen.append(cfg.output.draw_rejected) or 0)
    for argv in (["--source", "x.mp4", "--debug"], ["--source", "x.mp4"], ["--source", "x.mp4", "--draw-rejected"]):
        assert cli.main(argv) == 0
    assert seen == [True, False, True]
