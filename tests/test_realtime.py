"""Tracks, scheduling, smoothing, live playback and precision through the whole pipeline, on real video."""

import json
import time

import numpy as np
import pytest
from conftest import EXPRESSIONS, SHARED, media_file, run_cli

from fer_stream import EmotionClassifier, Pipeline, Smoother
from fer_stream.io.images import list_images, read_image
from fer_stream.io.sources import AVSource
from fer_stream.model.preprocess import TensorPreprocessor

VIDEO = media_file("436x384")

PORTRAIT = media_file("436x384")
TWO_PEOPLE = media_file("two_people")
WEBCAM = media_file("webcam")


def _run(clf, detector, video, **kw):
    p = Pipeline.for_source(str(video), clf, detector, annotate=False, **kw)
    with p as results:
        out = list(results)
    return out, p.stats


def test_one_person_keeps_one_track_through_a_real_video(clf, detector):
    out, stats = _run(clf, detector, WEBCAM, max_frames=120)
    assert all(len(r.faces) == 1 for r in out)
    assert {r.faces[0].track for r in out} == {1}
    assert [(t.id, t.frames, t.classified) for t in stats.tracks] == [(1, 120, 120)]
    assert stats.tracks[0].duration_s == pytest.approx(out[-1].frame.time - out[0].frame.time)


def test_the_near_face_keeps_its_track_while_a_far_one_comes_and_goes(clf, detector):
    out, stats = _run(clf, detector, TWO_PEOPLE)
    near = [max(r.faces, key=lambda f: f.box.area) for r in out if r.faces]
    assert len({f.track for f in near}) == 1
    longest = max(stats.tracks, key=lambda t: t.frames)
    assert longest.id == near[0].track and longest.frames >= 0.95 * len(out)


def test_classify_every_n_reuses_each_tracks_latest_result(clf, detector):
    out, stats = _run(clf, detector, PORTRAIT, max_frames=40, classify_every=5, smoother=Smoother("off"))
    faces = [r.faces[0] for r in out]
    fresh = [i for i, f in enumerate(faces) if f.fresh]
    assert fresh == list(range(0, 40, 5))
    assert stats.classified == 8 and stats.tracks[0].classified == 8
    for i, face in enumerate(faces):
        source = faces[i - i % 5]
        assert face.prediction == source.prediction  # carried over unchanged
    direct = clf.predict([faces[i].crop for i in fresh])
    for i, pred in zip(fresh, direct):
        assert faces[i].prediction.label == pred.label
        assert faces[i].prediction.confidence == pytest.approx(pred.confidence, abs=1e-5)


def test_ema_smoothing_equals_an_independent_ema_of_direct_results(clf, detector):
    alpha = 0.3
    out, _ = _run(clf, detector, PORTRAIT, max_frames=15, smoother=Smoother("ema", alpha=alpha))
    raw = clf.forward(clf.preprocess([r.faces[0].crop for r in out])).astype(np.float64)
    state = raw[0]
    for k, r in enumerate(out):
        if k:
            state = alpha * raw[k] + (1 - alpha) * state
        got = r.faces[0].prediction.as_dict()
        assert [got[label] for label in clf.labels] == pytest.approx(state.tolist(), abs=1e-5)
        assert r.faces[0].fresh


def test_a_file_played_live_runs_at_its_own_rate_and_caps_reclassification(clf, detector):
    src = AVSource(str(PORTRAIT), live=True)
    assert src.live
    start = time.monotonic()
    p = Pipeline.for_source(src, clf, detector, max_frames=75, live_max_hz=4.0)
    with p as results:
        out = list(results)
    wall = time.monotonic() - start
    src.close()
    s = p.stats
    assert wall >= 74 / 25 * 0.95  # 75 frames of a 25 fps video take about 3 s when played live
    assert len(out) + s.dropped == 75
    track = max(s.tracks, key=lambda t: t.frames)
    assert 2 <= track.classified <= 4 * track.duration_s + 2  # at most 4 per second, plus the first
    assert sum(f.fresh for r in out for f in r.faces) <= s.classified
    assert all(r.faces[0].prediction is not None for r in out[len(out) // 2 :] if r.faces)


def test_int8_and_bf16_agree_with_fp32(tiny_model):
    images = [read_image(p) for p in list_images(EXPRESSIONS / "happy")[:16] + list_images(EXPRESSIONS / "sad")[:16]]
    ref = EmotionClassifier(str(tiny_model), device="cpu")
    p32 = ref.forward(ref.preprocess(images))
    for precision, min_cos in (("int8", 0.99), ("bf16", 0.99)):
        other = EmotionClassifier(str(tiny_model), device="cpu", precision=precision)
        assert other.precision == precision and other.labels == ref.labels
        p = other.forward(other.preprocess(images))
        cos = (p32 * p).sum(1) / (np.linalg.norm(p32, axis=1) * np.linalg.norm(p, axis=1))
        assert cos.mean() >= min_cos, precision
        assert (p32.argmax(1) == p.argmax(1)).mean() >= 0.85, precision
    int8 = EmotionClassifier(str(tiny_model), device="cpu", precision="int8")
    assert any("quantized" in type(m).__module__ for m in int8.net.modules())


def test_tensor_preprocessing_matches_the_models_processor(tiny_model, detector):
    ref = EmotionClassifier(str(tiny_model), device="cpu", fast_preprocess=False)
    fast = TensorPreprocessor.from_processor(ref.processor)
    assert fast is not None
    images = [read_image(p) for p in list_images(EXPRESSIONS / "angry")[:4]]  # 48x48 grey: upscaled
    for name in ("one_face.jpg", "one_face_large.png"):  # real crops: down- and upscaled
        images += [f.crop for f in detector.detect(read_image(SHARED / "faces" / name))]
    images.append(np.random.default_rng(0).integers(0, 256, (300, 260, 3), dtype=np.uint8))
    expected = ref.processor(images=images, return_tensors="pt")["pixel_values"].numpy()
    got = fast(images).numpy()
    assert got.shape == expected.shape
    # One grey level of difference at most (rounding of the resampled pixels); normalized, 2/255.
    assert np.abs(got - expected).max() <= 2 / 255 + 1e-6


def test_processors_that_crop_keep_the_transformers_path():
    class CropProcessor:
        do_resize, do_center_crop = True, True
        size = {"shortest_edge": 256}
        resample = 2

    assert TensorPreprocessor.from_processor(CropProcessor()) is None


def test_cli_classify_every_live_and_summary_tracks(tiny_model, cli_env, tmp_path):
    summary, events = tmp_path / "s.json", tmp_path / "e.jsonl"
    r = run_cli(
        [
            "--source",
            str(PORTRAIT),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--classify-every",
            "3",
            "--events",
            str(events),
            "--summary",
            str(summary),
            "-q",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(summary.read_text())
    assert s["tracks"] == [{"id": 1, "frames": 270, "classified": 90, "duration_s": pytest.approx(269 / 25, abs=0.01)}]
    assert s["classified"] == 90 and s["frames_out"] == 270 and not s["live"]
    assert set(s["latency_s"]) == {"p50", "p95", "p99"} and s["latency_s"]["p50"] <= s["latency_s"]["p99"]
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [rec["fresh"] for rec in records[:6]] == [True, False, False, True, False, False]
    assert {rec["track"] for rec in records} == {1}
    assert "in 1 track, 90 classified" in r.stdout and "latency (capture to output): p50" in r.stdout

    live = tmp_path / "live.json"
    r = run_cli(
        [
            "--source",
            str(PORTRAIT),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--live",
            "--max-frames",
            "50",
            "--summary",
            str(live),
            "--precision",
            "int8",
            "-q",
        ],
        cli_env,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads(live.read_text())
    assert s["live"] and s["precision"] == "int8"
    assert s["frames_out"] + s["dropped"] == s["frames_in"] == 50
    assert s["elapsed_s"] >= 49 / 25 * 0.95


def test_bench_reports_every_part_as_json(tiny_model, cli_env):
    r = run_cli(
        [
            "bench",
            "--video",
            str(PORTRAIT),
            "--model",
            str(tiny_model),
            "--device",
            "cpu",
            "--json",
            "--frames",
            "16",
            "--naive-frames",
            "4",
            "--live-seconds",
            "2",
            "--min-time",
            "0.2",
            "--batches",
            "1,4",
            "--devices",
            "cpu",
            "--images",
            str(EXPRESSIONS),
        ],
        cli_env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["decoder"]["fps"] > 0 and rep["detector"]["fps"] > 0 and rep["detector"]["faces_per_frame"] == 1
    rows = {(row["precision"], row["batch"]): row["faces_per_s"] for row in rep["classifier"]}
    assert set(rows) == {("fp32", 1), ("fp32", 4), ("int8", 1), ("int8", 4)} and min(rows.values()) > 0
    (agree,) = rep["agreement"]
    assert agree["precision"] == "int8" and agree["images"] == 7 * 40
    assert 0 <= agree["top1_agreement"] <= 1 and 0.9 < agree["mean_cosine"] <= 1.0 + 1e-6
    assert rep["pipeline"]["frames_out"] == 16 and rep["pipeline"]["faces_per_s"] > 0
    live = rep["live"]
    assert live["frames_out"] + live["dropped"] == live["frames_in"] == 50 and live["source_fps"] == 25
    assert set(live["latency_s"]) == {"p50", "p95", "p99"} and live["fps_ratio"] > 0
    assert rep["naive"]["frames"] == 4 and rep["naive"]["fps"] > 0
    assert set(rep["ratios"]) == {"pipeline_vs_naive_fps", "live_vs_naive_fps", "int8_vs_fp32_classifier"}


def test_bench_and_precision_mistakes_are_one_line_errors(tiny_model, cli_env, tmp_path):
    r = run_cli(["bench", "--video", str(tmp_path / "missing.mp4"), "--model", str(tiny_model)], cli_env)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("fer-stream: error: video file")
    r = run_cli(["bench", "--video", str(PORTRAIT), "--precisions", "fp32,int4"], cli_env)
    assert r.returncode == 2 and "int4" in r.stderr
    r = run_cli(["bench", "--video", str(PORTRAIT), "--model", str(tiny_model), "--devices", "cpu,gpu"], cli_env)
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("fer-stream: error:") and "gpu" in r.stderr
    r = run_cli(["bench", "--video", str(PORTRAIT), "--model", str(tiny_model), "--images", str(tmp_path)], cli_env)
    assert r.returncode != 0 and "holds no images" in r.stderr and "Traceback" not in r.stderr


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
