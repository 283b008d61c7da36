"""``fer-stream batch`` on Ray clusters it must not trust: ``--ray auto``, a silent cluster, addresses, two nodes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DETECTOR, FULL_RANGE, WORKER_VARS, media_file, run_cli
from conftest import SMALLEST_VIDEO as PORTRAIT
from conftest import manifest_by_key as _latest
from conftest import manifest_by_stem as _by_stem

from fer_stream.errors import ConfigError

FRAMES = 12


def _silent_listener() -> socket.socket:
    """A TCP port that accepts connections and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_processes_under(folder: Path) -> None:
    """SIGKILL every process whose command line names ``folder`` (Ray's, started with its temp dir there)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if str(folder).encode() in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short private folder for Ray's temp dir (RAY_TMPDIR): nothing shared in /tmp/ray is read or
    written, and every Ray process started with it is killed at the end, pass or fail."""
    pytest.importorskip("ray")
    folder = Path(tempfile.mkdtemp(prefix="fsr", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    try:
        yield folder
    finally:
        _kill_processes_under(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_ray_auto_starts_its_own_ray_not_the_cluster_named_in_ray_s_temp_folder(ray_tmp, tiny_model, cli_env, tmp_path):
    listener = _silent_listener()
    try:
        (ray_tmp / "ray").mkdir()
        (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{listener.getsockname()[1]}")  # anyone could write it
        env = {**cli_env, "RAY_TMPDIR": str(ray_tmp)}
        env.pop("RAY_ADDRESS", None)
        out = tmp_path / "out"
        args = ["batch", str(PORTRAIT), "--out", str(out), "--model", str(tiny_model), "--max-frames", "5", "--no-video", "-q"]
        r = run_cli([*args, "--ray", "auto"], env, timeout=600)
        assert r.returncode == 0, r.stderr
        (rec,) = _latest(out).values()
        assert rec["status"] == "done" and rec["node"]
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody ever knocked at the address in the file
    finally:
        listener.close()


def test_a_ray_cluster_that_does_not_answer_is_one_error_line(ray_tmp, tiny_model, cli_env, tmp_path):
    from fer_stream.analysis.ray import connect

    listener = _silent_listener()
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        # The wait is $FER_STREAM_RAY_TIMEOUT's (30 s unless set; 3 s here, so the test does not sit out the default).
        env = {**cli_env, "RAY_TMPDIR": str(ray_tmp), "FER_STREAM_RAY_TIMEOUT": "3"}
        # First in a child process: without a deadline Ray waits on such an address for many minutes.
        r = run_cli(["batch", str(PORTRAIT), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--ray", address], env)
        assert r.returncode == 2
        assert r.stderr.splitlines()[1:] == [  # after the line saying what is to run, one error line
            f"fer-stream: error: the Ray cluster at '{address}' did not answer in 3 s; check the address "
            "(`ray status` on its head node) or leave --ray out"
        ]
        with pytest.raises(ConfigError, match=r"did not answer in 2 s"):
            connect(address, timeout=2)
        with pytest.raises(ConfigError, match=r"cannot be reached \(Connection refused\)"):
            connect(f"127.0.0.1:{_closed_port()}", timeout=2)
    finally:
        listener.close()


def test_the_wait_for_a_cluster_is_30_s_unless_the_environment_says_otherwise(monkeypatch):
    from fer_stream.analysis.ray import join_timeout

    monkeypatch.delenv("FER_STREAM_RAY_TIMEOUT", raising=False)
    assert join_timeout() == 30.0
    monkeypatch.setenv("FER_STREAM_RAY_TIMEOUT", "7.5")
    assert join_timeout() == 7.5
    for bad in ("soon", "0", "-1", "3601", "nan"):
        monkeypatch.setenv("FER_STREAM_RAY_TIMEOUT", bad)
        with pytest.raises(ConfigError, match="FER_STREAM_RAY_TIMEOUT must be a number of seconds from 0 to 3600"):
            join_timeout()


def test_ray_addresses_resolve_as_documented(monkeypatch):
    from fer_stream.analysis.ray import init_options

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    auto = init_options("auto")
    assert auto["address"] == "local" and auto["_node_ip_address"] == "127.0.0.1"  # our own, on loopback
    assert init_options("localhost:6379")["_node_ip_address"] == "127.0.0.1"
    assert "_node_ip_address" not in init_options("ray://127.0.0.1:10001")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert init_options("auto")["address"] == "10.0.0.5:6379" and "_node_ip_address" not in init_options("auto")


@pytest.fixture
def two_nodes(ray_tmp, cli_env, monkeypatch):
    """A Ray cluster of two nodes on 127.0.0.1, one CPU each; shut down at the end, pass or fail."""
    from ray.cluster_utils import Cluster
    from rtsp import free_port

    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    for k in WORKER_VARS:
        monkeypatch.setenv(k, cli_env[k])  # the nodes' workers see the tests' models and offline hub
    cluster = None
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1", "gcs_server_port": free_port(), "include_dashboard": False},
        )
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes(120)
        yield cluster
    finally:
        if cluster is not None:
            cluster.shutdown()


def test_batch_on_a_two_node_cluster_on_loopback(two_nodes, tiny_model, cli_env, tmp_path):
    """Joined with --ray 127.0.0.1:PORT: a classifier on each node, videos on both, outputs those of one process."""
    from test_batch import assert_same_events

    vids = tmp_path / "vids"
    vids.mkdir()
    for part in ("portrait", "two_people"):
        (vids / media_file(part).name).symlink_to(media_file(part))
    models = ["--model", str(tiny_model), "--detector-model", str(DETECTOR), "--full-range-model", str(FULL_RANGE)]
    common = ["--max-frames", str(FRAMES), "-q", *models]
    ref, out = tmp_path / "ref", tmp_path / "out"
    r = run_cli(["batch", str(vids), "--out", str(ref), "--jobs", "1", *common], cli_env)
    assert r.returncode == 0, r.stderr
    env = {**cli_env, "RAY_TMPDIR": os.environ["RAY_TMPDIR"]}
    env.pop("RAY_ADDRESS", None)
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):  # the cluster's token rules (an earlier Ray may have set them)
        env.pop(k, None)
        if k in os.environ:
            env[k] = os.environ[k]
    r = run_cli(["batch", str(vids), "--out", str(out), "--ray", two_nodes.address, *common], env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "2 of 2 videos done, 0 failed" in r.stdout
    assert "Failed to connect" not in r.stderr
    latest, want = _by_stem(out), _by_stem(ref)
    assert len({rec["node"] for rec in latest.values()}) == 2  # a video on each node
    assert all(rec["classifier_node"] == rec["node"] for rec in latest.values())  # each node's own classifier
    for stem, rec in latest.items():
        got_dir, want_dir = out / rec["name"], ref / want[stem]["name"]
        events = [json.loads(line) for line in (got_dir / "events.jsonl").read_text().splitlines()]
        ref_events = [json.loads(line) for line in (want_dir / "events.jsonl").read_text().splitlines()]
        assert events and len(events) == len(ref_events)
        assert_same_events(events, ref_events)
        s, w = json.loads((got_dir / "summary.json").read_text()), json.loads((want_dir / "summary.json").read_text())
        assert (s["frames_out"], s["faces"], s["labels"], s["flagged"]) == (w["frames_out"], w["faces"], w["labels"], w["flagged"])
        assert (got_dir / "annotated.mp4").stat().st_size > 0
