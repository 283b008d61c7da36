"""The review loop: a run keeps flagged faces in a store, people answer, a model learns from the answers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXPRESSIONS, LABELS, MEDIA, run_cli, scored_face, timed_result

from fer_stream.commands.finetune import held_out
from fer_stream.io.collect import ReviewCollector
from fer_stream.io.review import NOT_A_FACE, SKIP, ReviewStore, reviewed

FLAGGED = {"happy": 0.5, "sad": 0.3, "angry": 0.2}
SURE = {"happy": 0.9, "sad": 0.1}


def test_the_collector_keeps_one_flagged_face_per_track_per_interval_and_retires_the_oldest_unreviewed(tmp_path):
    store = ReviewStore.open(tmp_path / "rv", create=True)
    sink = ReviewCollector(store, every_s=1.0, max_faces=3, source="cam.mp4", source_id="door", model="m", threshold=0.7)
    for i in range(20):  # 0.25 s apart: track 1 flagged, track 2 sure (never kept)
        sink.write(timed_result(i, i * 0.25, [scored_face(1, FLAGGED), scored_face(2, SURE)]))
        if i == 5:
            first = store.faces()[0]["id"]
            store.label(first, "sad", by="ana")  # answered: never retired
    kept = store.faces()
    assert sink.counts == {"kept": 5, "dropped": 1, "rate_limited": 15}  # at 0, 1, 2, 3, 4 s
    assert [f["time"] for f in kept] == [0.0, 2.0, 3.0, 4.0]  # 1.0 retired: the oldest unreviewed
    assert first in {f["id"] for f in kept}
    assert len(list((store.root / "faces").glob("*.jpg"))) == 2 * len(kept)  # crop and context of each, the retired one's gone
    rec = kept[-1]
    assert rec["source"] == "cam.mp4" and rec["source_id"] == "door" and rec["track"] == 1 and rec["flagged"]
    assert rec["probs"] == FLAGGED and rec["threshold"] == 0.7 and rec["quality"]["usable"]
    assert cv2.imread(str(store.root / rec["file"])).shape == (16, 16, 3)
    assert sink.summary() == {"dir": str(store.root), "kept": 5, "dropped": 1, "rate_limited": 15}


def test_answers_latest_wins_undo_and_torn_lines_are_skipped(tmp_path):
    store = ReviewStore.open(tmp_path / "rv", create=True)
    sink = ReviewCollector(store, every_s=0.0)
    sink.write(timed_result(0, 0.0, [scored_face(1, FLAGGED), scored_face(2, FLAGGED), scored_face(3, FLAGGED)]))
    a, b, c = (f["id"] for f in store.faces())
    store.label(a, "happy", by="ana")
    store.label(a, "sad", by="bo")  # the latest answer counts
    store.label(b, NOT_A_FACE, by="ana")
    store.label(c, "angry", by="ana")
    store.label(c, None, by="ana")  # undone
    with open(store.root / "labels.jsonl", "a") as f:
        f.write('{"id": "' + c + '", "lab')  # a run killed mid-line
    store.label(c, SKIP, by="ana")
    assert {k: v.label for k, v in store.answers().items()} == {a: "sad", b: NOT_A_FACE, c: SKIP}
    assert store.counts() == {"faces": 3, "reviewed": 3, "unreviewed": 0, NOT_A_FACE: 1, "sad": 1, SKIP: 1}
    with pytest.raises(ValueError, match="label must be one of"):
        store.label(a, "bored")
    got = reviewed([str(store.root)])
    assert got.labels == ("sad",) and got.ids == (a,) and got.marks == {NOT_A_FACE: 1, SKIP: 1}


def test_the_held_out_part_is_chosen_by_id_and_stays_as_a_store_grows():
    ids = [f"{i:016x}" for i in range(2000)]
    first = {i for i in ids[:1000] if held_out(i, 0.2)}
    assert first == {i for i in ids if held_out(i, 0.2)} & set(ids[:1000])
    assert 0.15 < len(first) / 1000 < 0.25


@pytest.mark.usefixtures("_media_present")
def test_two_runs_on_a_real_video_share_one_store(tiny_model, cli_env, tmp_path):
    store_dir = tmp_path / "rv"
    video = next(p for p in MEDIA if "portrait" in p.name)
    for n in (1, 2):
        summary = tmp_path / f"s{n}.json"
        args = ["--source", str(video), "--model", str(tiny_model), "--threshold", "1.0", "--max-frames", "40", "-q"]
        r = run_cli(args + ["--review", str(store_dir), "--summary", str(summary)], cli_env)
        assert r.returncode == 0, r.stderr
        s = json.loads(summary.read_text())["review"]
        assert s["dir"] == str(store_dir) and s["kept"] >= 1 and s["dropped"] == 0
    store = ReviewStore.open(store_dir)
    faces = store.faces()
    assert len({f["id"] for f in faces}) == len(faces) >= 2
    for f in faces:
        assert f["source"] == str(video) and f["flagged"] and set(f["probs"]) == set(LABELS)
        assert store.picture(f["file"]) is not None and store.picture(f["context"]) is not None
        crop = cv2.imread(str(store.root / f["file"]))
        assert crop.shape[0] >= 20 and crop.std() > 10  # a real face, not a blank picture
    assert {f["time"] for f in faces} == {0.0}  # 40 frames: the first classified face of each run, none 2 s later


def _labelled_store(root: Path, per_class: int = 6) -> tuple[ReviewStore, int]:
    """A store of ../shared's labelled crops, each answered with its class; one marked not a face, one skipped."""
    store = ReviewStore.open(root, create=True)
    probs = {label: round(1 / len(LABELS), 6) for label in LABELS}
    n = 0
    for label in LABELS:
        for p in sorted((EXPRESSIONS / label).glob("*.jpg"))[:per_class]:
            crop = cv2.imread(str(p))[..., ::-1]
            fid = store.add({"source": "test", "time": 0.0, "frame": 0, "track": n, "label": "happy", "probs": probs}, crop)
            store.label(fid, label, by="test")
            n += 1
    extra = [store.add({"source": "test", "probs": probs}, np.full((48, 48, 3), 90, np.uint8)) for _ in range(2)]
    store.label(extra[0], NOT_A_FACE, by="test")
    store.label(extra[1], SKIP, by="test")
    return store, n


def test_train_from_review_makes_a_model_with_its_card_and_eval_scores_it(tiny_model, cli_env, tmp_path):
    store, n = _labelled_store(tmp_path / "rv")
    replay = tmp_path / "replay"
    for label in LABELS:  # the base's "training data": other crops of ../shared
        (replay / label).mkdir(parents=True)
        for p in sorted((EXPRESSIONS / label).glob("*.jpg"))[6:12]:
            (replay / label / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "site-model"
    args = ["train", "--from-review", str(store.root), "--model", str(tiny_model), "--out", str(out), "--replay", str(replay)]
    r = run_cli(args + ["--epochs", "3", "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "1 marked not a face, 1 skipped" in r.stdout and "held-out reviewed faces" in r.stdout
    s = json.loads((out / "training.json").read_text())
    assert s["reviewed"] == n and s["not_a_face"] == 1 and s["skipped"] == 1
    assert s["trained_on"] + s["held_out"] == n and s["held_out"] == len((out / "review-heldout.txt").read_text().split())
    assert all(0.0 <= v <= 1.0 for v in (*s["before"].values(), *s["after"].values()))
    assert len(s["history"]) == 3 and s["replay"]["pool"] == 42
    card = (out / "README.md").read_text()
    assert "Accuracy, base and fine-tuned" in card and f"{s['held_out']} held out" in card

    r = run_cli(["eval", "--from-review", str(store.root), "--model", str(out), "--json"], cli_env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == n and report["review"] == {"stores": [str(store.root)], "labelled": n, NOT_A_FACE: 1, SKIP: 1}
    assert report["labels"] == LABELS  # the new model loads with its base's labels

    again = run_cli(args, cli_env)  # the model folder exists now: never replaced
    assert again.returncode != 0 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_too_few_answers_or_no_replay_data_are_one_line_each(tiny_model, cli_env, tmp_path):
    store = ReviewStore.open(tmp_path / "rv", create=True)
    sink = ReviewCollector(store, every_s=0.0)
    sink.write(timed_result(0, 0.0, [scored_face(1, FLAGGED)]))
    store.label(store.faces()[0]["id"], "happy")
    r = run_cli(["train", "--from-review", str(store.root), "--model", str(tiny_model), "--out", str(tmp_path / "m")], cli_env)
    assert r.returncode != 0 and "1 labelled face" in r.stderr and "fer-stream review" in r.stderr
    many, _ = _labelled_store(tmp_path / "rv2", per_class=2)
    r = run_cli(["train", "--from-review", str(many.root), "--model", str(tiny_model), "--out", str(tmp_path / "m")], cli_env)
    assert r.returncode != 0 and "--replay DIR" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli(["eval", "--from-review", str(tmp_path / "nowhere"), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_faces_labelled_in_a_real_browser_train_a_model_that_loads(tiny_model, cli_env, tmp_path, procs):
    """The whole loop: a person's keys on the review page -> labels.jsonl -> train --from-review -> a model."""
    from conftest import wait_until
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from test_review_page import TOKEN, WAIT, _chrome, _start_review, _stop_chrome

    store, n = _labelled_store(tmp_path / "rv", per_class=2)
    truth = {a.id: a.label for a in store.answers().values()}
    (store.root / "labels.jsonl").unlink()  # nobody has answered yet: the browser does it
    proc, url = _start_review(procs, [str(store.root), "--serve", "127.0.0.1:0", "--token", TOKEN])
    driver, service = _chrome(tmp_path)
    keys = {label: str(i + 1) for i, label in enumerate(LABELS)} | {NOT_A_FACE: "n", SKIP: "s"}
    try:
        driver.get(f"{url}?token={TOKEN}")
        cards = lambda: [c.get_attribute("data-id") for c in driver.find_elements(By.CSS_SELECTOR, "article.card")]
        wait_until(lambda: len(cards()) == n + 2, WAIT, "the page to show every face")
        driver.find_element(By.ID, "by").send_keys("reviewer")
        driver.execute_script("document.activeElement.blur()")  # keys typed in the name box are the name's
        for k, fid in enumerate(cards()):  # newest first; after an answer the next card is selected
            sel = lambda: driver.find_element(By.CSS_SELECTOR, "article.card.sel").get_attribute("data-id")
            wait_until(lambda: sel() == fid, WAIT, f"card {k} to be selected")
            ActionChains(driver).send_keys(keys[truth[fid]]).perform()
            wait_until(lambda: len(store.labels_log.records()) == k + 1, WAIT, f"answer {k + 1} in labels.jsonl")
    finally:
        _stop_chrome(driver, service)
    assert {a.id: a.label for a in store.answers().values()} == truth
    assert {r["by"] for r in store.labels_log.records()} == {"reviewer"}
    replay = tmp_path / "replay"
    for label in LABELS:
        (replay / label).mkdir(parents=True)
        for p in sorted((EXPRESSIONS / label).glob("*.jpg"))[6:9]:
            (replay / label / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "site-model"
    r = run_cli(["train", "--from-review", str(store.root), "--model", str(tiny_model), "--out", str(out), "--replay", str(replay),
                 "--epochs", "2", "-q"], cli_env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    from fer_stream import EmotionClassifier

    clf = EmotionClassifier(str(out), device="cpu")
    probs = clf.predict([cv2.imread(str(store.root / store.faces()[0]["file"]))[..., ::-1]])
    assert list(clf.labels) == LABELS and len(probs) == 1 and probs[0].label in LABELS
