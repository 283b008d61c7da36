"""``fer-stream batch`` against a hostile output folder and inputs, and on Ray clusters it must not trust.

A crafted manifest cannot make the batch write or delete outside ``--out``; manifest keys reveal
no password; names with control characters cannot forge output lines; a URL that never answers
and a missing list entry fail alone; ``--ray auto`` never joins the cluster named in Ray's shared
temporary folder, a cluster that does not answer is one line, and a two-node cluster on loopback
is joined and used on both nodes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DETECTOR, FULL_RANGE, media_file, run_cli

from fer_stream.analysis.archive import OUTPUTS, Job, plain_name, prepare_folder, remove_outputs
from fer_stream.errors import ConfigError, SourceError, printable

PORTRAIT = media_file("portrait")  # the smallest of ../shared's videos
FRAMES = 12


def _latest(out: Path) -> dict[str, dict]:
    return {rec["key"]: rec for rec in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}


def _by_stem(out: Path) -> dict[str, dict]:
    return {Path(rec["input"]).stem: rec for rec in _latest(out).values()}


def _videos(folder: Path, names: str) -> Path:
    """Copies (not links: links resolve to one input) of the portrait video, one per letter of ``names``."""
    folder.mkdir()
    for n in names:
        shutil.copyfile(PORTRAIT, folder / f"{n}.mp4")
    return folder


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


# -- the manifest cannot be turned against the disk -------------------------------------------------


def test_a_crafted_manifest_never_writes_outside_out(tiny_model, cli_env, tmp_path):
    """The attack as reported: ``../victim``, an absolute name, a link planted at out/<name>, and
    ``done`` with no outputs; the victim's files stay as they were and every video runs again in a
    fresh folder of its own."""
    vids = _videos(tmp_path / "vids", "abcd")
    out = tmp_path / "out"
    args = ["batch", str(vids), "--out", str(out), "--model", str(tiny_model), "--max-frames", "5", "--no-video", "-q"]
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    first = _by_stem(out)
    assert sorted(rec["name"] for rec in first.values()) == ["a", "b", "c", "d"]

    victim = tmp_path / "victim"
    victim.mkdir()
    precious = {name: f"precious {name}" for name in OUTPUTS.values()}
    for name, text in precious.items():
        (victim / name).write_text(text)
    shutil.rmtree(out / "c")
    (out / "c").symlink_to(victim, target_is_directory=True)  # planted at the name the manifest gives c
    shutil.rmtree(out / "d")  # d's folder is gone, and its record says done with nothing
    forged = [
        {**first["a"], "name": "../victim", "status": "failed"},
        {**first["b"], "name": str(victim), "status": "failed"},
        {**first["c"], "status": "failed"},
        {**first["d"], "status": "done", "outputs": {}},
    ]
    with open(out / "manifest.jsonl", "a") as f:
        f.writelines(json.dumps(rec) + "\n" for rec in forged)

    r = run_cli(args, cli_env)
    assert {p.name: p.read_text() for p in victim.iterdir()} == precious  # untouched, nothing added or removed
    assert os.readlink(out / "c") == str(victim)
    assert r.returncode == 0, r.stderr
    assert "4 inputs: 4 to run, 0 skipped" in r.stderr  # d's empty "done" is not done
    warnings = [line for line in r.stderr.splitlines() if "running it again in" in line]
    assert len(warnings) == 3 and all(line.startswith("fer-stream: warning: manifest names the folder") for line in warnings)
    latest = _by_stem(out)
    for rec in latest.values():
        assert rec["status"] == "done" and plain_name(rec["name"]), rec
        folder = out / rec["name"]
        assert not folder.is_symlink() and folder.resolve().parent == out.resolve()
        assert rec["outputs"] and all((out / p).is_file() for p in rec["outputs"].values())
        assert json.loads((folder / "summary.json").read_text())["frames_out"] == 5
    for stem in "abc":  # fresh names: the forged ones refused, c's link left alone
        assert latest[stem]["name"].startswith(f"{stem}-"), latest[stem]
    assert latest["d"]["name"] == "d"  # a plain name whose folder is free is kept


def test_done_counts_only_with_its_own_outputs_in_its_own_folder(tmp_path):
    """``done`` whose outputs are listed outside its folder, or not there, or not listed, is run again."""
    from fer_stream.commands.batch import make_jobs, plan

    out = tmp_path / "out"
    (out / "e").mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "events.jsonl").write_text("{}")
    (out / "e" / "events.jsonl").write_text("{}")
    video = tmp_path / "e.mp4"
    video.write_bytes(b"x")
    st = video.stat()
    base = {"input": str(video), "name": "e", "size": st.st_size, "mtime_ns": st.st_mtime_ns, "settings": "S", "status": "done"}
    (job,) = make_jobs([str(video)], {}, out)
    cases = {
        "outside": {"events": "../victim/events.jsonl"},
        "absolute": {"events": str(tmp_path / "victim" / "events.jsonl")},
        "none": {},
        "missing": {"events": "e/events.jsonl", "summary": "e/summary.json"},
    }
    for why, outputs in cases.items():
        known = {job.key: {**base, "key": job.key, "outputs": outputs}}
        (j,) = make_jobs([str(video)], known, out)
        todo, skipped = plan([j], known, out, "S", force=False, retry_failed=False)
        assert todo == [j] and not skipped, why
    known = {job.key: {**base, "key": job.key, "outputs": {"events": "e/events.jsonl"}}}
    (j,) = make_jobs([str(video)], known, out)
    assert plan([j], known, out, "S", force=False, retry_failed=False) == ([], [j])  # truly there: skipped


def test_outputs_are_never_removed_or_written_through_a_link(tmp_path):
    out, victim = tmp_path / "out", tmp_path / "victim"
    out.mkdir()
    victim.mkdir()
    for name in OUTPUTS.values():
        (victim / name).write_text("precious")
    (out / "linked").symlink_to(victim, target_is_directory=True)
    remove_outputs(out / "linked")  # a folder that is a link: left alone
    assert prepare_folder(out / "linked") == f"the output folder '{out / 'linked'}' is a link; nothing was written there"
    (out / "own").mkdir()
    (out / "own" / "events.jsonl").symlink_to(victim / "events.jsonl")  # a link named like an output
    (out / "own" / "notes.txt").write_text("mine")
    assert prepare_folder(out / "own") is None
    assert sorted(p.name for p in (out / "own").iterdir()) == ["notes.txt"]  # the link itself went
    assert all((victim / name).read_text() == "precious" for name in OUTPUTS.values())


# -- manifest keys ---------------------------------------------------------------------------------


def test_manifest_keys_of_urls_reveal_no_password(tmp_path, capsys):
    from fer_stream.commands.batch import _report, adopt_legacy_keys, make_jobs, plan
    from fer_stream.io.manifest import Manifest, input_key, legacy_key

    url = "rtsp://admin:hunter2@10.0.0.7:554/recordings/day1.mp4"
    key = input_key(url)
    assert key == input_key("rtsp://admin:letmein@10.0.0.7:554/recordings/day1.mp4")  # the password takes no part
    dictionary = ["123456", "admin", "password", "hunter2", "letmein"]
    guesses = {hashlib.sha256(url.replace("hunter2", w).encode()).hexdigest()[:20] for w in dictionary}
    assert key not in guesses  # a dictionary recovers nothing
    assert input_key("rtsp://10.0.0.7/s1") != input_key("rtsp://10.0.0.8/s1")
    # Files keep the key they always had, so existing manifests of files resume as they are.
    assert input_key("/data/talk.mp4") == hashlib.sha256(b"/data/talk.mp4").hexdigest()[:20]
    # A manifest written before (keyed on the full URL) still resumes its URLs, under the new key.
    out = tmp_path / "out"
    (out / "cam-day1").mkdir(parents=True)
    (out / "cam-day1" / "events.jsonl").write_text("{}")
    old = legacy_key(url)
    manifest = Manifest(out / "manifest.jsonl")
    manifest.append({"key": old, "input": url, "name": "cam-day1", "status": "done", "settings": "S", "size": None,
                     "mtime_ns": None, "outputs": {"events": "cam-day1/events.jsonl"}, "faces": 3})  # fmt: skip
    known = adopt_legacy_keys([url], manifest.latest())
    (job,) = make_jobs([url], known, out)
    assert job.key == key and job.name == "cam-day1" and "hunter2" not in json.dumps(job.identity())
    assert plan([job], known, out, "S", force=False, retry_failed=False) == ([], [job])  # finished: skipped
    assert _report(manifest, [job], 0.0) == 0
    assert "1 of 1 video done, 0 failed; 3 faces" in capsys.readouterr().out


# -- names that could forge lines ------------------------------------------------------------------


def test_names_with_control_characters_are_printed_escaped(tiny_model, cli_env, tmp_path):
    vids = tmp_path / "vids"
    vids.mkdir()
    bad = vids / "bad\nFORGED bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    good = vids / "good\x1b[2J\nFORGED good.mp4"
    shutil.copyfile(PORTRAIT, good)
    args = ["batch", str(vids), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--max-frames", "5", "--no-video"]
    r = run_cli(args, cli_env)
    assert r.returncode == 1, r.stderr  # the bad one failed
    lines = re.split(r"[\r\n]", r.stdout + r.stderr)
    assert not [line for line in lines if line.startswith("FORGED")]
    assert "\x1b" not in r.stdout + r.stderr
    shown = printable(str(bad))
    assert f"  failed: {shown}: " in r.stdout  # the summary's line
    assert f"fer-stream: warning: {shown}: " in r.stderr  # the warning as it failed
    assert "1 of 2 videos done, 1 failed" in r.stdout
    r = run_cli(["--source", str(bad), "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and shown in r.stderr  # the run command's error line
    assert printable("a\nb\tc\x1b\u202ed") == "a\\nb\\tc\\x1b\\u202ed" and printable("café") == "café"


# -- inputs that never answer, or are not there ----------------------------------------------------


def test_a_url_that_never_connects_and_a_missing_entry_fail_alone(tiny_model, cli_env, tmp_path):
    """A list with a camera that refuses, a file that does not exist and a real video, one at a time:
    the first two are recorded as failed (the camera after its reconnect budget), the video runs."""
    listing = tmp_path / "list.txt"
    listing.write_text(f"rtsp://127.0.0.1:1/cam\nmissing.mp4\n{PORTRAIT}\n")
    out = tmp_path / "out"
    args = ["batch", str(listing), "--out", str(out), "--model", str(tiny_model), "--max-frames", "5", "--no-video", "--jobs", "1", "-q"]
    r = run_cli(args, cli_env)
    assert r.returncode == 1, r.stderr
    assert "1 of 3 videos done, 2 failed" in r.stdout
    latest = {rec["input"]: rec for rec in _latest(out).values()}
    cam, missing, video = latest["rtsp://127.0.0.1:1/cam"], latest[str(tmp_path / "missing.mp4")], latest[str(PORTRAIT)]
    assert cam["status"] == "failed" and "gave up after 3 reconnect attempts" in cam["error"]
    assert missing["status"] == "failed" and "No such file" in missing["error"] and not (out / missing["name"]).exists()
    assert video["status"] == "done" and video["frames"] == 5
    r = run_cli(["batch", str(tmp_path / "nothing-here"), "--out", str(out), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and "does not exist" in r.stderr  # a missing argument (not a list entry) is still an error


def test_an_outage_longer_than_max_outage_s_gives_up():
    from fer_stream.io.reconnect import ReconnectingSource

    opened = []

    def refuse(url, **kwargs):
        opened.append(url)
        raise SourceError("connection refused")

    src = ReconnectingSource("rtsp://127.0.0.1:1/cam", opener=refuse, backoff_initial=0.05, backoff_max=0.2, max_outage_s=0.5)
    with pytest.raises(SourceError, match=r"gave up after 0\.5 s without a frame: connection refused"):
        list(src.frames())
    assert len(opened) >= 2 and src.state == "failed"


def test_batch_configs_give_urls_a_reconnect_budget(tmp_path):
    from fer_stream.analysis.archive import video_config
    from fer_stream.config import load_config

    job = Job("rtsp://127.0.0.1:1/cam", "k", "rtsp://127.0.0.1:1/cam", name="cam")
    cfg = video_config(load_config(None, {"source.max_reconnects": -1}), job, tmp_path, video=False)
    assert (cfg.source.max_reconnects, cfg.source.max_outage_s) == (3, 60.0)  # never "for ever" in a batch
    settings = {"source.batch_max_reconnects": 7, "source.batch_max_outage_s": 5.0}
    custom = video_config(load_config(None, settings), job, tmp_path, video=False)
    assert (custom.source.max_reconnects, custom.source.max_outage_s) == (7, 5.0)


# -- progress --------------------------------------------------------------------------------------


def test_batch_shows_each_video_s_frames(tiny_model, cli_env, tmp_path):
    vids = _videos(tmp_path / "vids", "ab")
    args = ["batch", str(vids), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--max-frames", str(FRAMES), "--no-video"]
    r = run_cli(args, cli_env)
    assert r.returncode == 0, r.stderr
    shown = re.split(r"[\r\n]", r.stderr)
    for name in "ab":  # a log keeps each video's last count
        assert any(re.match(rf"{name}: .*\b{FRAMES}/{FRAMES}\b.*frame", line) for line in shown), r.stderr
    assert any(re.match(r"videos: .*\b2/2\b", line) for line in shown), r.stderr


# -- Ray -------------------------------------------------------------------------------------------


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
        env = {**cli_env, "RAY_TMPDIR": str(ray_tmp)}
        # First in a child process: without a deadline Ray waits on such an address for many minutes.
        r = run_cli(["batch", str(PORTRAIT), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--ray", address], env)
        assert r.returncode == 2
        assert r.stderr.splitlines()[1:] == [  # after the line saying what is to run, one error line
            f"fer-stream: error: the Ray cluster at '{address}' did not answer in 30 s; check the address "
            "(`ray status` on its head node) or leave --ray out"
        ]
        with pytest.raises(ConfigError, match=r"did not answer in 2 s"):
            connect(address, timeout=2)
        with pytest.raises(ConfigError, match=r"cannot be reached \(Connection refused\)"):
            connect(f"127.0.0.1:{_closed_port()}", timeout=2)
    finally:
        listener.close()


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
    for k in ("FER_STREAM_DETECTOR_MODEL", "FER_STREAM_FULL_RANGE_MODEL", "FER_STREAM_CACHE", "HF_HUB_OFFLINE"):
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


def test_malformed_manifest_records_are_refused_not_crashed_on(tmp_path, capsys):
    from fer_stream.commands.batch import _report, make_jobs
    from fer_stream.io.manifest import Manifest, input_key

    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    key = input_key(str(video))
    manifest = Manifest(tmp_path / "manifest.jsonl")
    manifest.append({"key": "other", "name": ["a", "list"], "status": "done"})
    manifest.append({"key": key, "name": {"not": "a name"}, "status": "done", "faces": "many", "outputs": "none"})
    (job,) = make_jobs([str(video)], manifest.latest(), tmp_path)
    assert job.name == "v"
    assert _report(manifest, [job], 0.0) == 0
    assert "1 of 1 video done, 0 failed; 0 faces" in capsys.readouterr().out


def test_the_manifest_is_never_appended_through_a_link(tmp_path):
    """A link planted at DIR/manifest.jsonl is refused (O_NOFOLLOW): the file it names is untouched."""
    from fer_stream.io.manifest import Manifest

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").symlink_to(victim)
    manifest = Manifest(out / "manifest.jsonl")
    with pytest.raises(OSError):
        manifest.append({"key": "k", "status": "done"})
    assert victim.read_text() == "precious\n"
    assert (out / "manifest.jsonl").is_symlink()
