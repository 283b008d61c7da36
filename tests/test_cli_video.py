"""Every video in ../shared/media through the command line, checked against the input."""

import csv
import json

import numpy as np
import pytest
from conftest import DETECTOR, FULL_RANGE, LABELS, LANDMARK, MEDIA, decode_video, media_file, run_cli

from fer_stream.frames import Box

SUMMARY_KEYS = {"frames_in", "frames_out", "faces", "flagged", "labels", "fps", "dropped"}


@pytest.mark.parametrize("video", MEDIA, ids=[p.name for p in MEDIA])
def test_annotated_video_matches_input(video, tiny_model, cli_env, tmp_path):
    from fer_stream.build import make_detector
    from fer_stream.config import load_config

    out, events, summary = tmp_path / "out.mp4", tmp_path / "events.jsonl", tmp_path / "summary.json"
    r = run_cli(
        [
            "--source",
            str(video),
            "--model",
            str(tiny_model),
            "--output",
            str(out),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "--quiet",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    src, dst = decode_video(video), decode_video(out)
    assert dst["size"] == src["size"]
    assert len(dst["times"]) == len(src["times"])
    np.testing.assert_allclose(dst["times"], src["times"], atol=1e-3)
    assert dst["audio"] == src["audio"]
    assert dst["audio_packets"] == src["audio_packets"]

    # Events agree with the default detector run directly on the input frames, in order (files: the tiled
    # one, its boxes verified and the faces followed by the face landmark model).
    models = {"detector.model": str(DETECTOR), "detector.full_model": str(FULL_RANGE), "detector.landmark_model": str(LANDMARK)}
    records = [json.loads(line) for line in events.read_text().splitlines()]
    by_frame: dict[int, list[dict]] = {}
    for rec in records:
        assert {"frame", "time", "box", "label", "confidence", "flagged", "probs"} <= rec.keys()
        assert rec["label"] in LABELS and set(rec["probs"]) == set(LABELS)
        assert rec["flagged"] == (rec["confidence"] < 0.7)
        by_frame.setdefault(rec["frame"], []).append(rec)
    with make_detector(load_config(None, models)) as det:
        for i, image in enumerate(src["images"]):
            expected = [f.box.as_list() for f in det.detect(image)]
            got = [rec["box"] for rec in by_frame.get(i, [])]
            assert got == expected, f"frame {i}"
            for rec in by_frame.get(i, []):
                assert rec["time"] == pytest.approx(src["times"][i] - src["times"][0], abs=1e-3)
    assert records, "no faces found in a video that has faces"

    # Boxes are drawn where faces are: the output differs from the input along each box's edge
    # far more than elsewhere.
    for rec in records[:: max(1, len(records) // 10)]:
        i, b = rec["frame"], Box(*rec["box"])
        diff = np.abs(dst["images"][i].astype(int) - src["images"][i].astype(int)).sum(axis=2)
        edge = diff[b.y + b.h - 2 : b.y + b.h, b.x + 4 : b.x + b.w - 4].mean()
        assert edge > 40 and edge > 4 * diff.mean(), f"no box drawn at frame {i}"

    s = json.loads(summary.read_text())
    assert s.keys() >= SUMMARY_KEYS
    assert s["frames_in"] == s["frames_out"] == len(src["times"])
    assert s["faces"] == len(records)
    assert s["flagged"] == sum(rec["flagged"] for rec in records)
    assert sum(s["labels"].values()) == len(records)
    assert s["dropped"] == 0 and s["fps"] > 0
    assert f"{s['frames_out']} frames" in r.stdout


def test_csv_events_and_max_frames(tiny_model, cli_env, tmp_path):
    video = MEDIA[0]
    events = tmp_path / "e.csv"
    r = run_cli(["--source", str(video), "--model", str(tiny_model), "--events", str(events), "--max-frames", "20", "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(events.open()))
    assert rows and {int(row["frame"]) for row in rows} <= set(range(20))
    assert {"frame", "time", "box", "label", "confidence", "flagged", "probs"} <= rows[0].keys()
    assert len(json.loads(rows[0]["box"])) == 4
    assert "20 frames out of 20" in r.stdout


def test_config_file_and_flag_override(tiny_model, cli_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[classifier]\nmodel = "{tiny_model}"\nthreshold = 0.0\n[source]\nmax_frames = 5\n')
    summary = tmp_path / "s.json"
    r = run_cli(["--config", str(cfg), "--source", str(MEDIA[0]), "--summary", str(summary), "--quiet"], cli_env)
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["frames_out"] == 5 and s["flagged"] == 0 and s["threshold"] == 0.0
    r = run_cli(
        ["--config", str(cfg), "--source", str(MEDIA[0]), "--summary", str(summary), "--threshold", "1.0", "--quiet", "--overwrite"],
        cli_env,
    )  # the summary exists now: replacing it must be asked for
    s = json.loads(summary.read_text())
    assert s["flagged"] == s["faces"] > 0


def _first_frames(video, n: int) -> list[np.ndarray]:
    import av

    with av.open(str(video)) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0))]


def _new_red(out: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Pixels red in ``out`` (the rejected boxes' colour, not the flagged boxes' amber) that were not red in ``src``."""

    def red(im: np.ndarray) -> np.ndarray:
        im = im.astype(int)
        return (im[..., 0] - im[..., 1] > 100) & (im[..., 0] - im[..., 2] > 100)

    return red(out) & ~red(src)


def test_face_mesh_verification_landmarks_and_rejected_boxes(tiny_model, cli_env, tmp_path):
    """An eager short-range detector (score >= 0.05, on every frame) boxes much that is no face in
    two_people_512.mp4: the face landmark model rejects those boxes (counted in the summary, drawn
    red with --draw-rejected) and --landmarks writes each face's 468 points; --no-verify is the old
    path: every box a face, no head pose, nothing rejected, nothing red."""
    from fer_stream.build import make_detector
    from fer_stream.config import load_config

    video, n = media_file("two_people"), 20
    eager = ["--detector", "short", "--min-detection-confidence", "0.05", "--rescan-every", "1", "--max-frames", str(n), "--quiet"]
    runs = {}
    for name, extra in (("mesh", ["--landmarks"]), ("plain", ["--no-verify"])):
        out = tmp_path / name
        args = ["--source", str(video), "--model", str(tiny_model), *eager, *extra, "--draw-rejected"]
        r = run_cli([*args, "--output", f"{out}.mp4", "--events", f"{out}.jsonl", "--summary", f"{out}.json"], cli_env)
        assert r.returncode == 0, r.stderr
        records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
        runs[name] = decode_video(out.with_suffix(".mp4"))["images"], records, json.loads(out.with_suffix(".json").read_text())

    # What the same settings give through the Python API, frame by frame.
    src = _first_frames(video, n)
    cfg = load_config(
        None,
        {
            "detector.kind": "short",
            "detector.min_confidence": 0.05,
            "detector.rescan_every": 1,
            "detector.model": str(DETECTOR),
            "detector.landmark_model": str(LANDMARK),
        },
    )
    faces, rejected = [], []
    with make_detector(cfg) as det:
        for image in src:
            faces.append([f.box.as_list() for f in det.detect(image)])
            rejected.append(det.rejected)
    with make_detector(cfg, verify=False) as det:
        plain_faces = [[f.box.as_list() for f in det.detect(np.ascontiguousarray(image))] for image in src]

    images, records, summary = runs["mesh"]
    assert summary["rejected"] == sum(map(len, rejected)) > n  # measured: 133 boxes in these 20 frames (and 20 faces; 153 with --no-verify)
    assert [[r["box"] for r in records if r["frame"] == i] for i in range(n)] == faces
    for rec in records:
        assert len(rec["landmarks"]) == 468 and all(len(p) == 3 for p in rec["landmarks"])
        assert {"yaw", "pitch", "roll"} <= rec["quality"].keys()
    red_on_rejected = 0
    for out, image, boxes in zip(images, src, rejected):
        red = _new_red(out, image)
        near = np.zeros_like(red)
        for b in boxes:  # each box with its label above it
            near[max(0, b.y - 30) : b.y + b.h + 2, max(0, b.x - 2) : b.x + b.w + 2] = True
        assert red[~near].sum() <= 0.05 * max(1, red.sum())  # red only where rejected boxes are
        red_on_rejected += int(red[near].sum())
    assert red_on_rejected > 100 * n

    images, records, summary = runs["plain"]
    assert summary["rejected"] == 0
    assert [[r["box"] for r in records if r["frame"] == i] for i in range(n)] == plain_faces
    assert len(records) > len(runs["mesh"][1])  # the boxes the landmark model rejected are faces here
    assert all("landmarks" not in rec and "yaw" not in rec["quality"] for rec in records)
    assert sum(int(_new_red(out, image).sum()) for out, image in zip(images, src)) < 0.01 * red_on_rejected
