"""The batch manifest: a crafted or malformed one never writes, deletes or appends outside ``--out``, and its keys reveal no password."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from conftest import manifest_by_stem as _by_stem
from conftest import run_cli
from conftest import video_copies as _videos

from fer_stream.analysis.archive import OUTPUTS, plain_name, prepare_folder, remove_outputs

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
