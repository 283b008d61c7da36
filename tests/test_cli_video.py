"""Every video in ../shared/media through the command line, checked against the input."""

import csv
import json

import numpy as np
import pytest
from conftest import LABELS, MEDIA, decode_video, run_cli

from fer_stream.frames import Box

SUMMARY_KEYS = {"frames_in", "frames_out", "faces", "flagged", "labels", "fps", "dropped"}


@pytest.mark.parametrize("video", MEDIA, ids=[p.name for p in MEDIA])
def test_annotated_video_matches_input(video, tiny_model, cli_env, tmp_path, tiled_detector):
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

    # Events agree with the detector run directly on the input frames (files default to the tiled one).
    records = [json.loads(line) for line in events.read_text().splitlines()]
    by_frame: dict[int, list[dict]] = {}
    for rec in records:
        assert {"frame", "time", "box", "label", "confidence", "flagged", "probs"} <= rec.keys()
        assert rec["label"] in LABELS and set(rec["probs"]) == set(LABELS)
        assert rec["flagged"] == (rec["confidence"] < 0.7)
        by_frame.setdefault(rec["frame"], []).append(rec)
    for i, image in enumerate(src["images"]):
        expected = [f.box.as_list() for f in tiled_detector.detect(image)]
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
