"""Issue 10's attacks and accidents, each reproduced: outputs, images, pacing, settings, checkpoints."""

import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from conftest import FACES, media_file, run_cli

VIDEO = media_file("436x384")


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims ``width`` x ``height`` (a decompression bomb's shape)."""
    ok, buf = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


def test_outputs_never_replace_the_input_or_an_existing_file(tiny_model, cli_env, tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(VIDEO.read_bytes())
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    before = video.read_bytes()
    for args in (
        ["--source", str(video), "--output", str(video), "--overwrite"],
        ["--source", str(link), "--output", str(video), "--overwrite"],
        ["--source", str(video), "--events", str(video.with_suffix(".jsonl")), "--output", str(link), "--overwrite"],
    ):
        r = run_cli(args + ["--model", str(tiny_model), "-q"], cli_env)
        assert r.returncode == 1 and "is the input" in r.stderr and r.stderr.count("\n") == 1
    assert video.read_bytes() == before
    events = tmp_path / "e.jsonl"
    events.write_text("yesterday's log\n")
    r = run_cli(["--source", str(video), "--events", str(events), "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode == 1 and "already exists; pass --overwrite" in r.stderr
    assert events.read_text() == "yesterday's log\n"  # untouched: refused before anything ran
    r = run_cli(
        ["--source", str(video), "--events", str(events), "--max-frames", "5", "--overwrite", "--model", str(tiny_model), "-q"], cli_env
    )
    assert r.returncode == 0, r.stderr
    assert len(events.read_text().splitlines()) == 5 and not list(tmp_path.glob("*.partial.*"))


def test_broken_and_oversized_images_are_one_line_each_and_the_others_go_on(tiny_model, cli_env, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a_empty.jpg").write_bytes(b"")
    _png_declaring(folder / "b_bomb.png", 50000, 50000)
    _png_declaring(folder / "c_huge.png", 30000, 30000)
    (folder / "d_junk.jpg").write_bytes(b"not a jpeg at all" * 10)
    cv2.imwrite(str(folder / "e_face.jpg"), cv2.imread(str(FACES / "one_face.jpg")))
    r = run_cli(["image", "--dir", str(folder), "--model", str(tiny_model), "--json"], cli_env, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr  # some failed: non-zero, but all were tried
    doc = {Path(d["image"]).name: d for d in json.loads(r.stdout)}
    assert "empty" in doc["a_empty.jpg"]["error"]
    assert "too large" in doc["b_bomb.png"]["error"] or "over the" in doc["b_bomb.png"]["error"]
    assert "30000x30000" in doc["c_huge.png"]["error"] or "too large" in doc["c_huge.png"]["error"]
    assert "not an image" in doc["d_junk.jpg"]["error"]
    assert len(doc["e_face.jpg"]["faces"]) == 1  # the good one after four bad ones
    assert r.stderr.count("fer-stream: warning: skipped") == 4


def test_a_big_photo_is_scaled_down_for_detection_and_boxes_map_back(tiny_model, cli_env, tmp_path):
    big = tmp_path / "big.png"
    cv2.imwrite(str(big), cv2.resize(cv2.imread(str(FACES / "one_face_large.png")), (5120, 2880)))
    r = run_cli(["image", str(big), "--detector", "short", "--model", str(tiny_model), "--json"], cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    faces = json.loads(r.stdout)[0]["faces"]
    assert len(faces) == 1
    x, y, w, h = faces[0]["box"]
    assert abs(x - 526 * 4) < 60 and abs(y - 226 * 4) < 60 and abs(w - 275 * 4) < 120  # original pixels


def test_live_playback_does_not_sleep_through_a_timestamp_jump(tiny_model, cli_env, tmp_path):
    import av

    jumpy = tmp_path / "jumpy.mp4"
    frames = [f.to_ndarray(format="rgb24") for f, _ in zip(av.open(str(VIDEO)).decode(video=0), range(40))]
    with av.open(str(jumpy), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 436, 384, "yuv420p"
        s.codec_context.time_base = s.time_base = __import__("fractions").Fraction(1, 1000)
        for i, image in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts = i * 40 + (3_600_000 if i >= 20 else 0)  # an hour's gap after frame 20
            out.mux(s.encode(vf))
        out.mux(s.encode(None))
    started = time.monotonic()
    r = run_cli(["--source", str(jumpy), "--live", "--model", str(tiny_model), "-q"], cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - started < 60  # not an hour


def test_a_reconnect_pause_of_zero_is_refused(cli_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[source]\nreconnect_initial_s = 0\n")
    r = run_cli(["--config", str(cfg), "--source", "rtsp://127.0.0.1:9/x"], cli_env)
    assert r.returncode == 2 and "reconnect_initial_s" in r.stderr and "0.1" in r.stderr


def test_a_checkpoint_interrupted_between_renames_is_recovered(tmp_path):
    from fer_stream.commands.train import _recover

    old = tmp_path / "last.old"
    old.mkdir()
    (old / "training_state.pt").write_bytes(b"x")
    _recover(tmp_path / "last")
    assert (tmp_path / "last" / "training_state.pt").read_bytes() == b"x" and not old.exists()


def test_a_full_disk_ends_the_run_with_one_line_and_whole_records(tiny_model, cli_env, tmp_path, procs):
    """Files may not grow past 64 KB here (RLIMIT_FSIZE, as a full disk would stop them)."""
    import resource
    import signal
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    events, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    r = procs.run(
        [
            sys.executable,
            "-m",
            "fer_stream",
            "--source",
            str(VIDEO),
            "--model",
            str(tiny_model),
            "--events",
            str(events),
            "--summary",
            str(summary),
            "-q",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer-stream: error: writing event log") and str(events) in lines[0]
    records = events.read_text().splitlines()  # kept, complete up to the failure, every line a whole record
    assert records and all(json.loads(line)["frame"] >= 0 for line in records)
    assert not list(tmp_path.glob("*.partial.*")) and not list(tmp_path.glob(".*.tmp"))
    s = json.loads(summary.read_text())  # the summary (small) still made it, with what was done
    assert 0 < s["frames_out"] < 270 and "error" in s


def test_a_planted_partial_file_link_is_replaced_not_written_through(tiny_model, cli_env, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (tmp_path / "e.partial.jsonl").symlink_to(victim)
    r = run_cli(
        ["--source", str(VIDEO), "--events", str(tmp_path / "e.jsonl"), "--max-frames", "3", "--model", str(tiny_model), "-q"], cli_env
    )
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me\n" and len((tmp_path / "e.jsonl").read_text().splitlines()) == 3


def test_with_several_sources_a_failing_output_stops_the_run_non_zero(tiny_model, cli_env, tmp_path, procs):
    import resource
    import signal
    import sys

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    r = procs.run(
        [
            sys.executable,
            "-m",
            "fer_stream",
            "--source",
            f"a={VIDEO}",
            "--source",
            f"b={VIDEO}",
            "--model",
            str(tiny_model),
            "--events",
            str(tmp_path / "{source}.jsonl"),
            "-q",
        ],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("fer-stream: error:")]
    assert 1 <= len(errors) <= 2 and all("writing event log" in e for e in errors)
    wrote = [p.strip() for line in r.stdout.splitlines() if line.startswith("wrote: ") for p in line[7:].split(",")]
    assert all(Path(p).is_file() for p in wrote)  # only what is there
    assert " 179 frames out of 179" not in r.stdout  # both cameras stopped early


def test_frames_beyond_max_pixels_are_refused_and_queues_shrink_for_big_frames(tiny_model, cli_env):
    from fer_stream.build import queue_sizes
    from fer_stream.config import load_config

    r = run_cli(["--source", str(VIDEO), "--max-pixels", "100000", "--model", str(tiny_model), "-q"], cli_env)
    assert r.returncode == 1 and "436x384, over --max-pixels 100000" in r.stderr and r.stderr.count("\n") == 1
    cfg = load_config()
    assert queue_sizes(cfg, 1920 * 1080 * 3) == (8, 16, 8)  # ordinary frames: the configured lengths
    for side in (3840, 7680, 16000):
        sizes = queue_sizes(cfg, side * side * 9 // 16 * 3)
        frames_held = sizes[0] + sizes[1] + 4 * sizes[2]
        assert min(sizes) >= 2 and (frames_held * side * side * 9 // 16 * 3 <= 1024 << 20 or sizes == (2, 2, 2))
