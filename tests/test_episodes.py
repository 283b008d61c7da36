"""Expression episodes and alerts: consensus, hysteresis, ends, rules, and a real video's episode log."""

from __future__ import annotations

import json

import pytest
from conftest import LABELS, MEDIA, run_cli, scored_face, timed_result

from fer_stream.config import AlertRule, load_config
from fer_stream.errors import ConfigError
from fer_stream.stream.episode_sink import EpisodeLog, EpisodeSink, record_key
from fer_stream.stream.episodes import EpisodeSettings

HAPPY = {"happy": 0.8, "sad": 0.2}
SAD = {"sad": 0.8, "happy": 0.2}


class Kept:
    """An outlet that keeps what it is sent."""

    def __init__(self) -> None:
        self.records: list[dict] = []  # episodes and alerts
        self.states: list[dict] = []

    def send(self, record: dict) -> None:
        (self.states if record["type"] == "state" else self.records).append(record)

    def close(self) -> None:
        pass


def _play(sink: EpisodeSink, script: list[tuple[float, dict | None]], track: int = 7) -> None:
    """Frames at the given times, with one face of ``track`` predicted ``probs`` (or no face: None)."""
    for i, (t, probs) in enumerate(script):
        sink.write(timed_result(i, t, [] if probs is None else [scored_face(track, probs)]))


def test_a_label_starts_only_after_agreeing_faces_and_a_short_change_changes_nothing():
    out = Kept()
    sink = EpisodeSink("door", [out], EpisodeSettings(min_faces=3, agreement=0.6, min_s=1.0, gone_s=0.5, window=6))
    _play(sink, [(0.0, HAPPY), (0.1, HAPPY)])  # 2 happy faces: not yet agreed
    assert out.records == []
    _play(sink, [(0.2, HAPPY), (0.3, SAD), (0.4, HAPPY), (0.5, HAPPY)])
    assert [r["type"] for r in out.records] == ["start"]
    start = out.records[0]
    assert start["label"] == "happy" and start["start"] == 0.0 and start["source"] == "door" and start["track"] == 7
    assert start["faces"] == 3 and start["consensus"] == 1.0 and start["mean_confidence"] == 0.8
    # Sad for 0.7 s: agreed from 0.9 s (4 of the last 6 faces) to 1.2 s, under min_s: no update.
    _play(sink, [(0.6 + i * 0.1, SAD) for i in range(7)] + [(1.3 + i * 0.1, HAPPY) for i in range(10)])
    assert [r["type"] for r in out.records] == ["start"]
    sink.close()
    assert [s["label"] for s in out.records[-1]["labels"]] == ["happy"]


def test_a_new_label_must_hold_min_s_before_the_episode_changes_and_the_end_comes_when_the_track_is_gone():
    out = Kept()
    sink = EpisodeSink("door", [out], EpisodeSettings(min_faces=3, agreement=0.6, min_s=1.0, gone_s=0.5, window=6))
    happy = [(i * 0.1, HAPPY) for i in range(10)]  # 0.0-0.9 s
    sad = [(1.0 + i * 0.1, SAD) for i in range(20)]  # 1.0-2.9 s
    _play(sink, happy + sad)
    types = [r["type"] for r in out.records]
    assert types == ["start", "update"]
    update = out.records[1]
    # The vote turns sad once 4 of the last 6 faces are sad (t = 1.3); it has held 1 s at t = 2.3.
    assert update["label"] == "sad" and update["previous"] == "happy"
    assert update["since"] == pytest.approx(1.3) and update["end"] == pytest.approx(2.3)
    assert update["id"] == out.records[0]["id"] and update["seq"] == 1
    _play(sink, [(3.0, None), (3.2, None), (3.6, None)])  # no face: gone after 0.5 s
    end = out.records[-1]
    assert end["type"] == "end" and end["end"] == pytest.approx(2.9) and end["duration"] == pytest.approx(2.9)
    assert [s["label"] for s in end["labels"]] == ["happy", "sad"]
    assert len({record_key(r) for r in out.records}) == len(out.records) == 3
    sink.close()
    assert len(out.records) == 3  # nothing open is left to end
    summary = sink.summary()
    assert {k: summary[k] for k in ("start", "update", "end", "alert")} == {"start": 1, "update": 1, "end": 1, "alert": 0}
    assert [e["id"] for e in summary["episodes"]] == [end["id"]] and summary["episodes"][0]["labels"] == end["labels"]


def test_a_face_in_view_between_classifications_keeps_its_episode_open():
    out = Kept()
    sink = EpisodeSink("door", [out], EpisodeSettings(min_faces=3, gone_s=0.5))
    _play(sink, [(i * 0.1, HAPPY) for i in range(5)])
    for i in range(5, 40):  # 3.5 s of the same face, tracked but not classified (e.g. --classify-every)
        face = scored_face(7, HAPPY)
        sink.write(timed_result(i, i * 0.1, [face.with_prediction(face.prediction, fresh=False)]))
    assert [r["type"] for r in out.records] == ["start"]
    _play(sink, [(4.0, None), (4.6, None)])
    assert [r["type"] for r in out.records] == ["start", "end"] and out.records[-1]["end"] == pytest.approx(3.9)


def test_a_stream_that_ends_ends_its_open_episodes():
    out = Kept()
    sink = EpisodeSink("door", [out])
    _play(sink, [(i * 0.1, HAPPY) for i in range(5)])
    assert sink.state()["episodes"][0]["label"] == "happy"
    sink.close()
    assert [r["type"] for r in out.records] == ["start", "end"] and sink.state()["episodes"] == []
    # What the camera sees: one face, then its label once the episode started (not once per frame).
    assert [(s["label"], s["faces"]) for s in out.states] == [("none", 1), ("happy", 1)]


def test_alert_rules_need_time_faces_and_confidence_and_keep_their_cooldown():
    out = Kept()
    rules = (
        AlertRule("happy", min_seconds=1.0, min_faces=5, cooldown_s=100.0, name="smiling"),
        AlertRule("happy", min_confidence=0.9),  # never: the faces say 0.8
        AlertRule("sad", sources=("hall",)),  # another camera
    )
    settings = EpisodeSettings(min_faces=2, gone_s=0.3)
    sink = EpisodeSink("door", [out], settings, rules)
    _play(sink, [(i * 0.1, HAPPY) for i in range(15)], track=1)
    _play(sink, [(2.0 + i * 0.1, HAPPY) for i in range(15)], track=2)  # track 1 gone; track 2 within the cooldown
    alerts = [r for r in out.records if r["type"] == "alert"]
    assert len(alerts) == 1
    a = alerts[0]
    assert a["rule"] == "smiling" and a["track"] == 1 and a["held_s"] >= 1.0 and a["faces"] >= 5 and a["time"] == pytest.approx(1.0)
    assert a["id"] == out.records[0]["id"]  # the alert names its episode


def test_alert_tables_are_checked_key_by_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[alerts]]\nlabel = "angry"\nmin_seconds = 5\nsources = ["door"]\n[episodes]\nmin_s = 2.5\n')
    c = load_config(cfg)
    assert c.alerts == (AlertRule("angry", min_seconds=5, sources=("door",)),) and c.episodes.min_s == 2.5
    for bad, says in (
        ('label = "angry"\nmin_secnds = 5', "unknown key 'min_secnds'"),
        ("min_seconds = 5", 'needs label = "..."'),
        ('label = "angry"\nmin_confidence = 2', "'min_confidence' must be a confidence from 0 to 1"),
        ('label = "angry"\nsources = "door"', "'sources' must be a list of source ids"),
    ):
        cfg.write_text("[[alerts]]\n" + bad + "\n")
        with pytest.raises(ConfigError, match=says):
            load_config(cfg)


def test_the_episode_log_never_replaces_a_file_unless_told(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("mine\n")
    with pytest.raises(Exception, match="cannot write episode log"):
        EpisodeLog(path)
    assert path.read_text() == "mine\n"
    log = EpisodeLog(path, overwrite=True)
    log.send({"type": "start", "id": "a", "seq": 0})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"type": "start", "id": "a", "seq": 0}]


def test_a_real_video_gives_episodes_and_alerts_in_the_log_and_the_summary(tiny_model, cli_env, tmp_path):
    video = next(p for p in MEDIA if "portrait" in p.name)
    cfg = tmp_path / "alerts.toml"
    cfg.write_text('[[alerts]]\nlabel = "*"\nmin_seconds = 1\nmin_faces = 3\nname = "any label for 1 s"\n')
    episodes, summary = tmp_path / "ep.jsonl", tmp_path / "s.json"
    args = ["--source", str(video), "--model", str(tiny_model), "--max-frames", "90", "-q", "--config", str(cfg)]
    report = tmp_path / "r.html"
    r = run_cli(args + ["--episodes", str(episodes), "--summary", str(summary), "--report", str(report)], cli_env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in episodes.read_text().splitlines()]
    html = report.read_text()
    assert "<h2>Episodes" in html and "<h2>Alerts</h2>" in html and all(x["id"] in html for x in records)
    types = [r["type"] for r in records]
    assert types[0] == "start" and types[-1] == "end" and "alert" in types, types
    s = json.loads(summary.read_text())
    assert {k: s["episodes"][k] for k in ("start", "update", "end", "alert")} == {
        k: types.count(k) for k in ("start", "update", "end", "alert")
    }
    assert {e["id"] for e in s["episodes"]["episodes"]} == {x["id"] for x in records if x["type"] == "end"}
    assert [a["alert"] for a in s["episodes"]["alerts"]] == [x["alert"] for x in records if x["type"] == "alert"]
    assert s["outputs"]["episodes"] == str(episodes)
    by_id: dict[str, list[dict]] = {}
    for rec in records:
        by_id.setdefault(rec["id"], []).append(rec)
    for recs in by_id.values():  # each episode: one start, its updates, one end, in order
        kinds = [x["type"] for x in recs if x["type"] != "alert"]
        assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) <= {"update"}
        assert [x["seq"] for x in recs if x["type"] != "alert"] == list(range(len(kinds)))
        end = recs[-1] if recs[-1]["type"] == "end" else next(x for x in recs if x["type"] == "end")
        assert end["duration"] > 0 and end["label"] in LABELS and end["labels"][0]["label"] == recs[0]["label"]
    again = run_cli(args + ["--episodes", str(episodes)], cli_env)  # the log exists: not replaced
    assert again.returncode != 0 and "--overwrite" in again.stderr and len(episodes.read_text().splitlines()) == len(records)
