"""Unusable faces (too small, blurry, unsure): boxed grey, never classified, counted apart."""

import json

import cv2
import numpy as np
from conftest import FACES, media_file, run_cli

from fer_stream.frames import Box, Face, Frame, FrameResult, Pose, Prediction, Quality
from fer_stream.io.sinks import Tally
from fer_stream.model.quality import QualityGate
from fer_stream.stream.overlay import UNUSABLE, Overlay

PORTRAIT = media_file("436x384")


def test_unusable_faces_are_not_classified_and_not_counted_as_labels(tiny_model, cli_env, tmp_path):
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    # Every face is blurrier than this minimum: all unusable.
    r = run_cli(
        [
            "--source",
            str(PORTRAIT),
            "--model",
            str(tiny_model),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "--max-frames",
            "30",
            "--min-sharpness",
            "100000",
            "--quiet",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["faces"] == 30 and s["unusable"] == 30 and s["classified"] == 0 and s["flagged"] == 0
    assert sum(s["labels"].values()) == 0 and s["detector"] == "tiled"
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(records) == 30
    for rec in records:
        assert rec["quality"]["usable"] is False and rec["quality"]["reason"] == "blurry"
        assert "label" not in rec and rec["quality"]["size_px"] > 200
    assert "30 unusable" in r.stdout


def test_usable_faces_are_classified_with_their_quality(tiny_model, cli_env, tmp_path):
    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    r = run_cli(
        [
            "--source",
            str(PORTRAIT),
            "--model",
            str(tiny_model),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "--max-frames",
            "20",
            "--quiet",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["unusable"] == 0 and s["classified"] == 20 and sum(s["labels"].values()) == 20
    for rec in map(json.loads, events.read_text().splitlines()):
        q = rec["quality"]
        assert q["usable"] and q["reason"] is None and q["sharpness"] > 10 and q["size_px"] >= 20 and "label" in rec


def test_image_command_reports_a_blurry_face_as_unusable(tiny_model, cli_env, tmp_path):
    sharp = tmp_path / "sharp.png"
    blurry = tmp_path / "blurry.png"
    face = cv2.imread(str(FACES / "one_face.jpg"))[116:291, 97:272]
    cv2.imwrite(str(sharp), face)
    cv2.imwrite(str(blurry), cv2.GaussianBlur(face, (0, 0), 12))
    r = run_cli(["image", str(sharp), str(blurry), "--no-detect", "--model", str(tiny_model), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    doc = {d["image"]: d["faces"][0] for d in json.loads(r.stdout)}
    assert doc[str(sharp)]["quality"]["usable"] and "label" in doc[str(sharp)]
    assert doc[str(blurry)]["quality"] == {
        "size_px": 175,
        "sharpness": doc[str(blurry)]["quality"]["sharpness"],
        "usable": False,
        "reason": "blurry",
    }
    assert "label" not in doc[str(blurry)]
    r = run_cli(["image", str(blurry), "--no-detect", "--model", str(tiny_model)], cli_env)
    assert r.returncode == 0 and "unusable (blurry" in r.stdout and "not classified" in r.stdout


def test_overlay_draws_unusable_faces_grey_and_tally_keeps_them_out_of_labels():
    image = np.zeros((200, 200, 3), np.uint8)
    bad = Face(Box(20, 40, 60, 60), 0.9, quality=Quality(60, 2.0, 0.9, "blurry"))
    good = Face(Box(110, 40, 60, 60), 0.9, quality=Quality(60, 300.0, 0.9), prediction=Prediction((("happy", 0.9), ("sad", 0.1)), False))
    out = Overlay().draw(image, [bad, good])
    assert (out[40:100, 20] == UNUSABLE).all(axis=1).any()  # a grey edge on the unusable box
    tally = Tally()
    tally.write(FrameResult(Frame(0, 0.0, image), (bad, good)))
    assert tally.faces == 2 and tally.unusable == 1 and dict(tally.labels) == {"happy": 1}


def test_a_face_turned_past_max_yaw_is_a_profile():
    cut = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)  # sharp
    box = Box(0, 0, 80, 80)
    gate = QualityGate(max_yaw=60.0)
    assert gate.assess(cut, box, 0.9, Pose(61.0, 0.0, 0.0)).reason == "profile"
    assert gate.assess(cut, box, 0.9, Pose(-75.0, 10.0, 5.0)).reason == "profile"  # either way
    upright = gate.assess(cut, box, 0.9, Pose(59.0, -40.0, 30.0))  # pitch and roll do not count
    assert upright.usable and upright.pose == Pose(59.0, -40.0, 30.0)
    assert gate.assess(cut, box, 0.9).usable  # no pose (no landmark model): no check
    assert QualityGate().assess(cut, box, 0.9, Pose(89.0, 0.0, 0.0)).usable  # max_yaw 0: off
    assert QualityGate(min_size=100, max_yaw=60.0).assess(cut, box, 0.9, Pose(80.0, 0.0, 0.0)).reason == "small"  # the first miss
    d = gate.assess(cut, box, 0.9, Pose(-61.26, 5.04, -0.96)).as_dict()
    assert (d["usable"], d["reason"], d["yaw"], d["pitch"], d["roll"]) == (False, "profile", -61.3, 5.0, -1.0)
    assert "yaw" not in gate.assess(cut, box, 0.9).as_dict()
