"""``fer-stream batch``: outputs per video, the manifest, resuming, failures, one classifier for all."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LABELS, MEDIA, WORKER_VARS, decode_video, run_cli

FRAMES = 30  # per video: enough for tracks and batches, quick enough for CI


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_events(got: list[dict], want: list[dict]) -> None:
    """Same frames, times, boxes, tracks, labels and flags; probabilities equal to 1e-5.

    Batches are made up differently (they depend on timing, in one process as across several),
    and a batch's make-up moves float sums in their last bits; nothing else may differ.
    """
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if k not in ("probs", "confidence")} == {
            k: v for k, v in w.items() if k not in ("probs", "confidence")
        }
        if "probs" in w:
            assert g["confidence"] == pytest.approx(w["confidence"], abs=1e-5)
            assert g["probs"] == pytest.approx(w["probs"], abs=1e-5)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two of ../shared's videos linked into a folder (links: the archive is read, never copied)."""
    folder = tmp_path_factory.mktemp("archive")
    for video in MEDIA[:2]:
        (folder / video.name).symlink_to(video)
    return folder


@pytest.fixture(scope="module")
def single_runs(archive: Path, tiny_model: Path, cli_env: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each video through a plain ``fer-stream`` run, the reference for batch outputs."""
    out = {}
    for video in sorted(archive.iterdir()):
        d = tmp_path_factory.mktemp(video.stem)
        r = run_cli(
            [
                "--source",
                str(video),
                "--model",
                str(tiny_model),
                "--max-frames",
                str(FRAMES),
                "-q",
                "--output",
                str(d / "a.mp4"),
                "--events",
                str(d / "e.jsonl"),
                "--summary",
                str(d / "s.json"),
            ],
            cli_env,
        )
        assert r.returncode == 0, r.stderr
        out[video.stem] = d
    return out


def test_batch_writes_each_video_like_a_single_run(archive, single_runs, tiny_model, cli_env, tmp_path):
    out = tmp_path / "out"
    r = run_cli(
        ["batch", str(archive), "--out", str(out), "--model", str(tiny_model), "--max-frames", str(FRAMES), "--jobs", "2", "-q"], cli_env
    )
    assert r.returncode == 0, r.stderr
    assert "2 of 2 videos done, 0 failed" in r.stdout
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(rec["name"] for rec in records) == sorted(single_runs)
    for rec in records:
        assert rec["status"] == "done" and rec["error"] is None and rec["frames"] == FRAMES
        folder = out / rec["name"]
        names = ["annotated.mp4", "episodes.jsonl", "events.jsonl", "report.html", "summary.json", "timeline.csv"]
        assert sorted(p.name for p in folder.iterdir()) == names
        assert set(rec["outputs"]) == {"video", "events", "episodes", "summary", "report", "timeline"}
        ref = single_runs[rec["name"]]
        assert_same_events(_events(folder / "events.jsonl"), _events(ref / "e.jsonl"))
        got, want = decode_video(folder / "annotated.mp4"), decode_video(ref / "a.mp4")
        assert got["times"] == want["times"] and got["size"] == want["size"]
        s = json.loads((folder / "summary.json").read_text())
        assert s["faces"] == rec["faces"] > 0 and s["labels"].keys() == set(LABELS)
        assert s["outputs"]["video"] == str(folder / "annotated.mp4")  # paths name the batch's folder
        assert "<svg" in (folder / "report.html").read_text()


def test_rerun_skips_finished_and_retries_failed(archive, tiny_model, cli_env, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for video in sorted(archive.iterdir()):
        (inputs / video.name).symlink_to(video.resolve())
    broken = inputs / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# the archive\n{inputs}\n")
    out = tmp_path / "out"
    args = ["batch", str(listing), "--out", str(out), "--model", str(tiny_model), "--max-frames", "10", "--no-video", "-q"]

    r = run_cli(args, cli_env)
    assert r.returncode == 1, r.stderr  # one input failed
    assert "2 of 3 videos done, 1 failed" in r.stdout and "broken.mp4" in r.stdout
    latest = _latest(out)
    assert sorted(rec["status"] for rec in latest.values()) == ["done", "done", "failed"]
    failed = next(rec for rec in latest.values() if rec["status"] == "failed")
    assert "broken.mp4" in failed["input"] and failed["error"]
    lines = len((out / "manifest.jsonl").read_text().splitlines())

    r = run_cli(args, cli_env)  # finished ones skipped, the failed one tried again
    assert "3 inputs: 1 to run, 2 skipped" in r.stderr
    assert len((out / "manifest.jsonl").read_text().splitlines()) == lines + 1

    broken.write_bytes(Path(sorted(archive.iterdir())[0]).resolve().read_bytes())  # fixed
    r = run_cli(args + ["--retry-failed"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "3 inputs: 1 to run, 2 skipped" in r.stderr and "3 of 3 videos done" in r.stdout

    r = run_cli(args, cli_env)
    assert r.returncode == 0 and "0 to run, 3 skipped" in r.stderr

    first = sorted(inputs.glob("*.mp4"))[0]
    os.utime(first, ns=(time.time_ns(), time.time_ns()))  # changed file: run again
    r = run_cli(args, cli_env)
    assert "1 to run, 2 skipped" in r.stderr

    r = run_cli(args + ["--max-frames", "11"], cli_env)  # changed settings: everything again
    assert "3 to run, 0 skipped" in r.stderr

    r = run_cli(args + ["--max-frames", "11", "--force"], cli_env)
    assert "3 to run, 0 skipped" in r.stderr


def _latest(out: Path) -> dict[str, dict]:
    return {rec["key"]: rec for rec in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def test_batch_never_reads_its_own_outputs_or_takes_foreign_folders(archive, tiny_model, cli_env, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    video = sorted(archive.iterdir())[0]
    (root / video.name).symlink_to(video.resolve())
    (root / "out").mkdir()
    (root / "out" / video.stem).mkdir()  # someone else's folder with the video's name
    (root / "out" / video.stem / "notes.txt").write_text("mine")
    r = run_cli(["batch", str(root), "--out", str(root / "out"), "--model", str(tiny_model), "--max-frames", "5", "-q"], cli_env)
    assert r.returncode == 0, r.stderr
    (rec,) = _latest(root / "out").values()
    assert rec["name"] != video.stem and rec["name"].startswith(video.stem + "-")
    assert (root / "out" / video.stem / "notes.txt").read_text() == "mine"
    r = run_cli(["batch", str(root), "--out", str(root / "out"), "--model", str(tiny_model), "--max-frames", "5", "-q"], cli_env)
    assert "1 input: 0 to run" in r.stderr  # its annotated.mp4 under out/ is no input


def test_batch_user_errors_are_one_line(tiny_model, cli_env, tmp_path):
    r = run_cli(["batch", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    (tmp_path / "empty").mkdir()
    r = run_cli(["batch", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and "no videos found" in r.stderr
    r = run_cli(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--force", "--retry-failed"], cli_env)
    assert r.returncode != 0 and "choose one" in r.stderr


def test_fleet_user_errors_are_one_line_before_any_cluster_starts(tmp_path):
    from conftest import run_cli as run

    env = dict(os.environ)
    r = run(["fleet", str(tmp_path / "missing.toml")], env)
    assert r.returncode != 0 and "does not exist" in r.stderr and r.stderr.count("\n") == 1
    group = tmp_path / "site.toml"
    group.write_text('[[sources]]\nid = "door"\ninput = "rtsp://cam/1"\n')
    r = run(["fleet", str(group)], env)
    assert r.returncode != 0 and "no [serve] address" in r.stderr and r.stderr.count("\n") == 1


class _Doubler:
    """A stand-in classifier: probabilities are a fixed function of each row, batches recorded."""

    labels = ("a", "b")
    max_batch = 8

    def __init__(self) -> None:
        self.batches: list[int] = []

    def forward(self, pixels):
        time.sleep(0.01)
        self.batches.append(int(pixels.shape[0]))
        x = pixels.reshape(len(pixels), -1)[:, 0].numpy()
        return np.stack([x, 2 * x], axis=1).astype(np.float32)


def test_classifier_service_merges_requests_and_keeps_rows_apart():
    import torch

    from fer_stream.model.service import ClassifierService

    gate, holding = threading.Event(), threading.Event()

    class Held(_Doubler):
        """Holds its first batch until every request is queued, as a busy model would."""

        def forward(self, pixels):
            if not self.batches and not holding.is_set():
                holding.set()
                gate.wait(10)
            return super().forward(pixels)

    clf = Held()
    service = ClassifierService(clf)
    results: dict[int, np.ndarray] = {}
    sizes = {1: 3, 2: 5, 3: 11, 4: 1}

    def ask(owner: int) -> None:
        pixels = torch.arange(sizes[owner], dtype=torch.float32).reshape(-1, 1, 1, 1) + 100 * owner
        results[owner] = service.client().forward(pixels)

    with service:
        sizes[0] = 2
        first = threading.Thread(target=ask, args=(0,))
        first.start()
        assert holding.wait(5)  # the model is busy with the first request
        threads = [threading.Thread(target=ask, args=(o,)) for o in (1, 2, 3, 4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while service._queue.rows < 20 and time.monotonic() < deadline:
            time.sleep(0.005)  # all 20 rows wait behind the busy model
        gate.set()
        for t in [first, *threads]:
            t.join(10)
    for owner, n in sizes.items():
        x = np.arange(n, dtype=np.float32) + 100 * owner
        np.testing.assert_array_equal(results[owner], np.stack([x, 2 * x], axis=1))
    assert clf.batches == [2, 8, 8, 4]  # then full batches across callers
    assert service.mixed_batches >= 1
    assert service.client().labels == ("a", "b")  # everything but forward is the classifier's


def test_classifier_service_passes_errors_to_every_waiting_caller():
    import torch

    from fer_stream.model.service import ClassifierService

    class Broken(_Doubler):
        def forward(self, pixels):
            raise RuntimeError("device lost")

    with ClassifierService(Broken()) as service, pytest.raises(RuntimeError, match="device lost"):
        service.client().forward(torch.zeros(2, 1, 1, 1))


# -- Ray -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(cli_env):
    """A local Ray with two CPUs, its workers seeing the tests' model paths and offline hub."""
    ray = pytest.importorskip("ray")
    env = {k: cli_env[k] for k in WORKER_VARS}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield ray
    ray.shutdown()


def _cfg(tiny_model, **more):
    from conftest import DETECTOR, FULL_RANGE

    from fer_stream.config import load_config

    return load_config(
        None,
        {
            "classifier.model": str(tiny_model),
            "detector.model": str(DETECTOR),
            "detector.full_model": str(FULL_RANGE),
            "output.progress": False,
            **more,
        },
    )


def test_batch_on_ray_equals_single_process_runs(local_ray, archive, single_runs, tiny_model, tmp_path, capsys):
    from fer_stream.commands.batch import run_batch

    out = tmp_path / "out"
    assert run_batch(_cfg(tiny_model, **{"source.max_frames": FRAMES}), [str(archive)], str(out), ray="auto") == 0
    assert "2 of 2 videos done, 0 failed" in capsys.readouterr().out
    latest = _latest(out)
    assert len(latest) == 2
    for rec in latest.values():
        assert rec["status"] == "done" and rec["node"]
        folder, ref = out / rec["name"], single_runs[rec["name"]]
        assert_same_events(_events(folder / "events.jsonl"), _events(ref / "e.jsonl"))
        got, want = decode_video(folder / "annotated.mp4"), decode_video(ref / "a.mp4")
        assert len(got["times"]) == len(want["times"]) == FRAMES and got["times"] == want["times"]
        s, w = json.loads((folder / "summary.json").read_text()), json.loads((ref / "s.json").read_text())
        assert (s["faces"], s["labels"], s["flagged"], s["tracks"]) == (w["faces"], w["labels"], w["flagged"], w["tracks"])
        assert s["outputs"]["events"] == str(folder / "events.jsonl")  # the driver's folder, not the worker's
    # Resuming works the same on Ray: nothing left to do.
    assert run_batch(_cfg(tiny_model, **{"source.max_frames": FRAMES}), [str(archive)], str(out), ray="auto") == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 2


def test_camera_groups_run_as_ray_actors_each_serving_metrics(local_ray, archive, tiny_model):
    import urllib.request

    from rtsp import free_port

    from fer_stream.analysis.ray import start_groups

    videos = sorted(archive.iterdir())
    ports = {"east": free_port(), "west": free_port()}
    cfgs = {name: _cfg(tiny_model, **{"source.live": True, "serve.address": f"127.0.0.1:{port}"}) for name, port in ports.items()}
    import dataclasses

    cfgs = {
        name: dataclasses.replace(cfg, sources=((f"{name}-cam", str(video.resolve())),)) for (name, cfg), video in zip(cfgs.items(), videos)
    }
    actors = start_groups(cfgs, "auto")
    runs = {name: actor.run.remote() for name, actor in actors.items()}

    def frames(name: str) -> float:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{ports[name]}/metrics", timeout=2).read().decode()
        except OSError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(f'fer_stream_frames_total{{source="{name}-cam"}}'):
                return float(line.split()[-1])
        return 0.0

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(frames(n) > 5 for n in ports):
        time.sleep(0.5)
    assert all(frames(n) > 5 for n in ports), {n: frames(n) for n in ports}  # each actor serves its own cameras
    for actor in actors.values():
        actor.stop.remote()
    results = {name: local_ray.get(ref, timeout=60) for name, ref in runs.items()}
    for name, result in results.items():
        s = result["summary"]
        assert result["errors"] == [] and s["source_id"] == f"{name}-cam" and s["frames_out"] > 5
        assert s["stopped_by"] == "SIGTERM"
    for actor in actors.values():
        local_ray.kill(actor)


def test_urls_are_listed_without_their_password(tmp_path):
    from fer_stream.commands.batch import expand_inputs, make_jobs

    listing = tmp_path / "cams.txt"
    listing.write_text("rtsp://admin:hunter2@10.0.0.7:554/recordings/day1.mp4\n")
    (job,) = make_jobs(expand_inputs([str(listing)]), {}, tmp_path / "out")
    assert job.spec.endswith("hunter2@10.0.0.7:554/recordings/day1.mp4")  # opened as given
    assert "hunter2" not in job.shown and "hunter2" not in job.name and "hunter2" not in job.key
    assert job.name.startswith("10.0.0.7")


def test_a_killed_ray_worker_s_video_is_run_again(local_ray, archive, single_runs, tiny_model, tmp_path):
    """SIGKILL the process running a video's task (as a lost node would): Ray runs it again, the batch completes."""
    import signal
    import subprocess

    from fer_stream.commands.batch import run_batch

    out = tmp_path / "out"
    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.append(run_batch(_cfg(tiny_model, **{"source.max_frames": FRAMES}), [str(archive)], str(out), ray="auto"))
    )
    t.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and t.is_alive():
        pids = subprocess.run(["pgrep", "-f", "ray::_video_task"], capture_output=True, text=True).stdout.split()
        if pids:
            killed = int(pids[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    t.join(300)
    assert killed is not None, "no video task was seen running"
    assert result == [0]
    latest = _latest(out)
    assert sorted(rec["status"] for rec in latest.values()) == ["done", "done"]
    for rec in latest.values():  # the re-run video's outputs are whole and right
        assert_same_events(_events(out / rec["name"] / "events.jsonl"), _events(single_runs[rec["name"]] / "e.jsonl"))
