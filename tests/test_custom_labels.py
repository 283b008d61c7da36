"""Models with labels of their own: a colour for every label, and reports and CSVs for any label."""

from __future__ import annotations

import csv
import json

import pytest
from conftest import media_file, run_cli, save_tiny_vit
from conftest import scored_face as _face
from conftest import timed_result as _frame

from fer_stream.io import report
from fer_stream.io.report import TimelineSink, label_colors, write_report

VIDEO = media_file("436x384")


def test_every_label_gets_a_colour_the_same_each_time():
    labels = ["happy", "bored", "confused", "sad", "x1", "x2"]
    colors = label_colors(labels)
    assert set(colors) == set(labels) and colors["happy"] == report.COLORS["happy"]
    assert len({colors[lab] for lab in labels}) == len(labels)  # distinct
    assert label_colors(labels) == colors  # deterministic
    assert label_colors(reversed(labels)) == colors  # whatever the order (the dashboard sees no model order)
    many = label_colors([f"l{i}" for i in range(40)])
    assert all(c.startswith("#") for c in many.values())


def test_a_report_for_labels_without_built_in_colours_is_written(tmp_path):
    labels = ("bored", "engaged", "confused")
    timeline = TimelineSink(labels)
    for i in range(30):
        timeline.write(_frame(i, i / 10, [_face(1, {"bored": 0.5, "engaged": 0.3, "confused": 0.2})]))
    summary = {"labels": {"bored": 30, "engaged": 0, "confused": 0}, "faces": 30, "tracks": [{}], "source": "x.mp4"}
    page = write_report(tmp_path / "r.html", timeline, summary).read_text()
    assert page.count("<svg") >= 3 and label_colors(labels)["bored"] in page


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
