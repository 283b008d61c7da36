"""fer-stream eval on ../shared/expressions, checked against a confusion matrix computed here."""

import json

import cv2
import numpy as np
import pytest
from conftest import EXPRESSIONS, LABELS, run_cli

from fer_stream.commands.evaluate import evaluate, map_classes
from fer_stream.errors import SourceError
from fer_stream.io.images import find_images, read_image


def test_eval_figures_equal_an_independent_confusion_matrix(clf, cli_env, tiny_model, tmp_path):
    r = run_cli(["eval", str(EXPRESSIONS), "--model", str(tiny_model), "--device", "cpu", "--json", "--out", str(tmp_path)], cli_env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    labels = rep["labels"]
    assert labels == list(clf.labels) and rep["images"] == 280
    # Independently: predict each class folder's images and count.
    expected = np.zeros((7, 7), int)
    for label in LABELS:
        preds = clf.predict([read_image(p) for p in find_images(EXPRESSIONS / label)])
        for p in preds:
            expected[labels.index(label), labels.index(p.label)] += 1
    assert rep["confusion"] == expected.tolist()
    assert rep["accuracy"] == round(np.trace(expected) / expected.sum(), 4)
    for i, label in enumerate(labels):
        m = rep["per_class"][label]
        assert m["support"] == 40 and m["recall"] == round(expected[i, i] / 40, 4)
        col = expected[:, i].sum()
        assert m["precision"] == (round(expected[i, i] / col, 4) if col else None)
    assert json.loads((tmp_path / "eval.json").read_text())["confusion"] == rep["confusion"]
    png = cv2.imread(str(tmp_path / "confusion.png"))
    assert png is not None and png.shape[0] > 7 * 64 and png.shape[1] > 7 * 64


def test_folder_names_map_by_synonym_and_case(clf, tmp_path):
    for folder, label in (("Anger", "angry"), ("HAPPINESS", "happy"), ("sadness", "sad"), ("Surprised", "surprise")):
        (tmp_path / folder).mkdir()
        for p in find_images(EXPRESSIONS / label)[:5]:
            (tmp_path / folder / p.name).symlink_to(p)
    rep = evaluate(clf, tmp_path)
    assert rep["folders"] == {"Anger": "angry", "HAPPINESS": "happy", "Surprised": "surprise", "sadness": "sad"}
    assert rep["images"] == 20
    assert [rep["per_class"][l]["support"] for l in rep["labels"]] == [
        5 if l in ("angry", "happy", "sad", "surprise") else 0 for l in rep["labels"]
    ]


def test_a_class_that_maps_to_nothing_is_a_clear_error(clf, cli_env, tiny_model, tmp_path):
    with pytest.raises(SourceError, match="class folder 'contempt' matches none of the model's labels"):
        map_classes(["happy", "contempt"], clf.labels)
    with pytest.raises(SourceError, match="all map to the label 'happy'"):
        map_classes(["happy", "Happiness"], clf.labels)
    (tmp_path / "contempt").mkdir()
    (tmp_path / "contempt" / "x.jpg").symlink_to(find_images(EXPRESSIONS / "happy")[0])
    r = run_cli(["eval", str(tmp_path), "--model", str(tiny_model)], cli_env)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode != 0 and len(lines) == 1 and "matches none of the model's labels" in lines[0]
    r = run_cli(["eval", str(tmp_path / "nope"), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_eval_reports_calibration_as_the_classifier_flags(clf, tmp_path):
    rep = evaluate(clf, EXPRESSIONS)
    cal = rep["calibration"]
    conf, right = [], []
    for label in LABELS:
        for p in clf.predict([read_image(f) for f in find_images(EXPRESSIONS / label)]):
            conf.append(p.confidence)
            right.append(p.label == label)
    conf, right = np.array(conf), np.array(right)
    sure = conf >= clf.threshold
    split = cal["at_threshold"]
    assert split["threshold"] == round(clf.threshold, 4) and split["flagged"] + split["unflagged"] == 280
    assert split["flagged"] == int((~sure).sum())
    if sure.any():
        assert split["unflagged_accuracy"] == round(float(right[sure].mean()), 4)
    assert sum(cal["bins"]["counts"]) == 280
    gaps = [abs(a - c) * n for a, c, n in zip(cal["bins"]["accuracy"], cal["bins"]["confidence"], cal["bins"]["counts"]) if n]
    assert cal["ece"] == pytest.approx(sum(gaps) / 280, abs=2e-3)
