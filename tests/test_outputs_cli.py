"""Issue 16's outputs through the command line: export keeps what exists, outputs that are one
file are refused, any model's labels give a report, CSVs a spreadsheet never runs."""

from __future__ import annotations

import csv
import json
import os

import pytest
from conftest import ROOT, media_file, run_cli, save_tiny_vit

VIDEO = media_file("436x384")
SHIPPED = sorted(p.parent for p in (ROOT / "samples" / "models").glob("*/config.json"))


# -- export ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", SHIPPED, ids=[p.name for p in SHIPPED])
def test_export_of_every_shipped_model_passes_its_own_check(model, cli_env, tmp_path):
    """fer2013-small is a ResNet: its batch-norm layers must be in eval mode on both sides of the check."""
    out = tmp_path / "m.onnx"
    r = run_cli(["export", "--format", "onnx", str(out), "--model", str(model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["max_abs_diff"] < 1e-4 and result["top1_agreement"] == 1.0 and out.is_file()
    assert not list(tmp_path.glob("*.partial.*"))


def test_export_never_replaces_an_existing_file_unasked_nor_loses_it_when_it_fails(tiny_model, cli_env, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"yesterday's model")
    r = run_cli(["export", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "already exists; pass --overwrite" in r.stderr and r.stderr.count("\n") == 1
    assert out.read_bytes() == b"yesterday's model"
    probe = tmp_path / "probe.onnx"  # the same export, to know its difference is not zero
    r = run_cli(["export", str(probe), "--model", str(tiny_model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["max_abs_diff"] > 1e-300
    r = run_cli(["export", str(out), "--overwrite", "--tolerance", "1e-300", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "differs from PyTorch" in r.stderr and "Traceback" not in r.stderr
    assert out.read_bytes() == b"yesterday's model"  # a failed export leaves the file as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "probe.onnx"]
    r = run_cli(["export", str(out), "--overwrite", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == probe.read_bytes()


def test_export_never_writes_through_a_link(tiny_model, cli_env, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "m.onnx"
    out.symlink_to(victim)
    r = run_cli(["export", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode == 1 and "already exists" in r.stderr
    (tmp_path / "m.partial.onnx").symlink_to(victim)  # planted at the partial name as well
    r = run_cli(["export", str(out), "--overwrite", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me\n"
    assert not out.is_symlink() and out.stat().st_size > 1000  # the link itself was replaced by the model
    assert not os.path.lexists(tmp_path / "m.partial.onnx")


@pytest.mark.parametrize("tolerance", ["0", "-1", "nan"])
def test_export_tolerance_must_be_positive(tolerance, cli_env, tmp_path):
    r = run_cli(["export", str(tmp_path / "m.onnx"), "--tolerance", tolerance, "--model", str(tmp_path / "no-model")], cli_env)
    assert r.returncode == 2 and "--tolerance must be a positive number" in r.stderr and r.stderr.count("\n") == 1


# -- outputs that are one file ---------------------------------------------------------------------


def test_two_outputs_on_one_file_are_refused_before_models_load(cli_env, tmp_path):
    same = tmp_path / "same.csv"
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(same)
    no_model = str(tmp_path / "no-model")  # never reached: outputs are checked first
    for args, names in (
        (["--events", str(same), "--timeline", str(same)], ("--events", "--timeline")),
        (["--events", str(same), "--timeline", str(link)], ("--events", "--timeline")),
        (["--timeline", str(tmp_path / "t.csv"), "--events", str(tmp_path / "sub" / ".." / "t.csv")], ("--events", "--timeline")),
    ):
        r = run_cli(["--source", str(VIDEO), *args, "--model", no_model, "-q"], cli_env)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert "are the same file" in r.stderr and all(n in r.stderr for n in names), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "sub"]


def test_hard_links_to_one_file_are_one_output(cli_env, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text("old\n")
    os.link(a, tmp_path / "b.csv")
    r = run_cli(
        ["--source", str(VIDEO), "--events", str(a), "--timeline", str(tmp_path / "b.csv"), "--overwrite", "--model", "x/", "-q"], cli_env
    )
    assert r.returncode == 2 and "are the same file" in r.stderr
    assert a.read_text() == "old\n"


# -- any model's labels ----------------------------------------------------------------------------

# Labels with control characters (a tab) are refused when the model loads (tests/test_model_files.py).
ODD_LABELS = ['=HYPERLINK("http://evil")', "+plus", "-minus", "@at", "sleepy", "bored", "calm"]


@pytest.fixture(scope="module")
def odd_model(tiny_model, tmp_path_factory):
    """The tiny network, its labels ones no built-in colour knows, some of them starting like formulas."""
    return save_tiny_vit(tmp_path_factory.mktemp("odd"), ODD_LABELS, base=tiny_model)


def test_a_model_with_labels_of_its_own_gets_a_report_and_safe_csvs(odd_model, cli_env, tmp_path):
    paths = {k: tmp_path / n for k, n in (("events", "e.csv"), ("timeline", "t.csv"), ("report", "r.html"), ("summary", "s.json"))}
    flags = [x for k, p in paths.items() for x in (f"--{k}", str(p))]
    r = run_cli(["--source", str(VIDEO), "--model", str(odd_model), *flags, "--max-frames", "30", "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    s = json.loads(paths["summary"].read_text())
    assert set(s["labels"]) == set(ODD_LABELS) and "report" in s["outputs"]
    assert paths["report"].read_text().count("<svg") >= 3
    for name in ("events", "timeline"):
        rows = list(csv.reader(paths[name].open(newline="")))
        assert len(rows) > 1
        for cell in (c for row in rows for c in row):
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # only numbers may start so
    header = next(csv.reader(paths["timeline"].open(newline="")))
    assert ["'" + label if label[0] in "=+-@\t" else label for label in ODD_LABELS] == header[4:-1]
    events = list(csv.DictReader(paths["events"].open(newline="")))
    assert all(e["label"].lstrip("'") in ODD_LABELS for e in events if e["label"])


def test_the_summary_is_written_even_when_the_report_fails(tiny_model, cli_env, tmp_path, monkeypatch, capsys):
    from fer_stream import cli
    from fer_stream.io import report

    for key in ("FER_STREAM_DETECTOR_MODEL", "FER_STREAM_FULL_RANGE_MODEL", "FER_STREAM_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(key, cli_env[key])

    def broken(*args, **kwargs):
        raise ValueError("Invalid RGBA argument: None")

    monkeypatch.setattr(report, "write_report", broken)
    summary, page, timeline = tmp_path / "s.json", tmp_path / "r.html", tmp_path / "t.csv"
    argv = ["--source", str(VIDEO), "--model", str(tiny_model), "--max-frames", "5", "-q"]
    code = cli.main([*argv, "--report", str(page), "--timeline", str(timeline), "--summary", str(summary)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write report" in err and "Invalid RGBA" in err and "Traceback" not in err
    s = json.loads(summary.read_text())
    assert s["frames_out"] == 5 and "report" not in s["outputs"] and "timeline" in s["outputs"] and "report" in s["error"]
    assert timeline.is_file() and not page.exists() and not list(tmp_path.glob("*.partial.*"))
