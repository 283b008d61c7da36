"""``bench --detection``: hard negatives hold no face, sequences move with their faces, and a small run's figures."""

import json
import random

import numpy as np
import pytest
from conftest import DETECTOR, FULL_RANGE, LANDMARK, MEDIA, media_file, run_cli

from fer_stream.commands.detection_bench import Mode, detection_benchmark, format_report, modes
from fer_stream.commands.detection_bench.footage import FaceFinder, sample_shots
from fer_stream.commands.detection_bench.masking import faceless
from fer_stream.commands.detection_bench.motion import render
from fer_stream.commands.detection_bench.pieces import backgrounds, heads
from fer_stream.commands.detection_bench.sequences import face_sequences
from fer_stream.config import load_config
from fer_stream.frames import Box
from fer_stream.model.landmarks import FaceLandmarker, roi_from_box

pytestmark = pytest.mark.media

CFG = load_config(None, {"detector.model": str(DETECTOR), "detector.full_model": str(FULL_RANGE), "detector.landmark_model": str(LANDMARK)})


@pytest.fixture(scope="module")
def shots():
    with FaceFinder(CFG) as finder:
        return sample_shots([str(m) for m in MEDIA], (), finder, 4)


def _box(xyxy: np.ndarray) -> Box:
    x0, y0, x1, y1 = (round(float(v)) for v in xyxy)
    return Box(x0, y0, x1 - x0, y1 - y0)


def test_covered_faces_are_gone_for_the_landmark_model(shots):
    """Where a reference face was, the landmark model sees one before covering and none after."""
    checked = 0
    with FaceLandmarker(LANDMARK) as lm:
        for shot in shots:
            covered = faceless(shot)
            if shot.reference is None or covered is None:
                continue
            roi = roi_from_box(_box(shot.faces[shot.reference]))
            [before] = lm.run(shot.image, [roi])
            [after] = lm.run(covered, [roi])
            assert before.presence > 0.9 and after.presence < 0.1, (shot.source, before.presence, after.presence)
            checked += 1
    assert checked >= 4  # the close-up portrait is left out; the two wider videos' frames are checked


def test_sequences_move_their_faces_in_and_out(shots):
    take = next(
        face_sequences(heads(shots), backgrounds(shots, random.Random(0)), resolution="720p", count=1, frames=24, rng=random.Random(1))
    )
    clip = render(take)
    assert len(clip.frames) == 24 and clip.moving and len(take.sprites) >= 4
    assert not np.array_equal(clip.frames[0], clip.frames[-1])
    first, last = clip.truth[0], clip.truth[-1]
    assert len(first) >= 3 and len(last) >= 3
    # Every true box stays on the frame; faces that stay in move (or change size) between the first and last frame.
    for boxes in clip.truth:
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 1280).all() and (boxes[:, 3] <= 720).all()
    staying = [s for s in take.sprites if all(s.face_box(i, 24) is not None for i in (0, 23))]
    moved = [np.abs(np.subtract(s.face_box(0, 24), s.face_box(23, 24))).max() for s in staying]
    assert min(moved) > 2
    # One face enters (not wholly in at first) and one leaves (not wholly in at the end): the counts change.
    counts = [len(t) + len(i) for t, i in zip(clip.truth, clip.ignore)]
    assert any(len(i) for i in clip.ignore) and len(set(len(t) for t in clip.truth)) > 1, counts


@pytest.fixture(scope="module")
def small_run():
    return detection_benchmark(
        CFG,
        [str(m) for m in MEDIA],
        modes=[Mode("tiled"), Mode("tiled", "plain")],
        images=[str(MEDIA[0].parents[1] / "faces" / "no_face.jpg")],
        per_video=4,
        canvases_per_size=0,
        sequences=1,
        sequence_frames=20,
        negatives=2,
    )


def test_a_small_run_measures_every_mode_on_negatives_and_sequences(small_run):
    r = small_run
    assert list(r["modes"]) == ["tiled", "tiled/plain"]
    json.dumps(r)  # every figure is JSON
    for res in ("720p", "1080p"):
        assert r["data"]["negatives"][res]["frames"] == 20 and r["data"]["sequences"][res]["frames"] == 20
        assert r["data"]["negatives"][res]["faces"] == 0 and r["data"]["sequences"][res]["faces"] >= 60
        follow, plain = r["modes"]["tiled"][res], r["modes"]["tiled/plain"][res]
        assert "scenes" not in follow  # --canvases 0
        # Verified, the hard negatives give at most a few false boxes (20 frames with up to 8 pieces each).
        assert follow["negatives"]["false_positives"] <= 2, follow["negatives"]
        # Large moving faces are found and followed; the detector ran on only some frames.
        assert follow["sequences"]["recall_ge_80px"] >= 0.9, follow["sequences"]
        assert plain["sequences"]["recall_ge_80px"] >= 0.9, plain["sequences"]
        assert follow["sequences"]["detector_frames"] < 1.0
        assert "detector_frames" not in plain["sequences"]
    assert r["modes"]["tiled"]["landmarks"]["crops"] > 0 and r["modes"]["tiled"]["landmarks"]["ms_per_face"] > 0
    assert "landmarks" not in r["modes"]["tiled/plain"]
    text = format_report(r)
    assert "tiled/plain" in text and "hard neg" in text and "landmark model:" in text


def test_modes_are_named_by_kind_and_variant():
    assert [m.name for m in modes(["short", "tiled"], ["follow", "plain"])] == ["short", "short/plain", "tiled", "tiled/plain"]
    assert [(m.verify, m.follow) for m in modes(["full"])] == [(True, True), (True, False), (False, False)]


def test_the_command_prints_json_with_every_section(cli_env):
    r = run_cli(
        [
            "bench", "--detection", "--video", str(media_file("two_people")), "--detectors", "short", "--modes", "follow,plain",
            "--canvases", "1", "--sequences", "1", "--sequence-frames", "6", "--negatives", "1", "--json",
        ],
        cli_env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert list(report["modes"]) == ["short", "short/plain"]
    assert set(report["modes"]["short"]["1080p"]) == {"scenes", "negatives", "sequences"}
    assert report["data"]["sequences"]["720p"]["frames"] == 6 and report["data"]["negatives"]["720p"]["frames"] == 10
