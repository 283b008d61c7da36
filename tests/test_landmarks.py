"""MediaPipe's face landmark model: crops, decoding, presence, the next frame's crop, head pose, and its model file."""

import http.server
import math

import cv2
import numpy as np
import pytest
from conftest import DETECTOR, FACES, FULL_RANGE, LANDMARK, serving

from fer_stream.errors import ModelError
from fer_stream.frames import Box
from fer_stream.io.images import read_image
from fer_stream.model.blazeface import FULL_RANGE as FULL_SPEC
from fer_stream.model.blazeface import BlazeFace
from fer_stream.model.detector_files import DETECTOR_MODELS, download_detector, resolve_landmark_model
from fer_stream.model.landmarks import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    FaceLandmarker,
    Roi,
    crop_tensor,
    decode,
    head_axes,
    head_pose,
    roi_from_box,
    roi_from_landmarks,
)

PICTURES = ("one_face.jpg", "one_face_large.png")


@pytest.fixture(scope="module")
def landmarker():
    with FaceLandmarker(LANDMARK) as lm:
        yield lm


@pytest.fixture(scope="module")
def blazeface():
    with BlazeFace(FULL_RANGE, FULL_SPEC) as bf:
        yield bf


def _detect(blazeface: BlazeFace, rgb: np.ndarray) -> tuple[Box, np.ndarray]:
    """The best face's box and 6 keypoints."""
    boxes, keypoints, scores = blazeface.detect_keypoints([rgb])[0]
    assert len(scores) >= 1
    x0, y0, x1, y1 = boxes[0]
    return Box(round(x0), round(y0), round(x1 - x0), round(y1 - y0)), keypoints[0]


def test_the_crop_map_puts_the_roi_on_the_input():
    roi = Roi(100.0, 50.0, 40.0, math.radians(30))
    m = roi.matrix()
    corners = roi.corners() @ m[:, :2].T + m[:, 2]
    assert np.allclose(corners, [[0, 0], [192, 0], [192, 192], [0, 192]], atol=1e-6)
    assert np.allclose(m[:, :2] @ [100, 50] + m[:, 2], [96, 96])
    assert roi.contains(np.array([[100, 50], [100 + 19, 50], [100 + 25, 50]])).tolist() == [True, True, False]
    # Decoding is the inverse of the map, z scaled like x and y.
    raw = np.array([[96, 96, 10], [0, 0, 0], [192, 192, -4]], np.float32)
    back = decode(np.concatenate([raw, np.zeros((465, 3), np.float32)]), m)[:3]
    assert np.allclose(back[:, :2], [[100, 50], *roi.corners()[[0, 2]]], atol=1e-4)
    assert np.allclose(back[:, 2], raw[:, 2] * 40 / 192, atol=1e-5)


def test_the_crop_is_the_roi_cut_out():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[40:60, 140:160] = 255  # a white square centred on (150, 50)
    t = crop_tensor(rgb, Roi(150.0, 50.0, 40.0).matrix())
    assert t.shape == (192, 192, 3) and t.dtype == np.float32 and t.max() == pytest.approx(1.0)
    inside = t[:, :, 0] > 0.5
    ys, xs = np.nonzero(inside)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (48, 143, 48, 143)  # the square fills the middle half


def test_roi_from_box_is_square_enlarged_and_level_with_the_eyes():
    roi = roi_from_box(Box(10, 20, 100, 80))
    assert (roi.cx, roi.cy, roi.size, roi.angle) == (60.0, 60.0, 150.0, 0.0)
    tilted = roi_from_box(Box(10, 20, 100, 80), ((40.0, 50.0), (80.0, 90.0)))
    assert tilted.angle == pytest.approx(math.radians(45))


@pytest.mark.media
@pytest.mark.parametrize("name", PICTURES)
def test_landmarks_of_a_face(landmarker, blazeface, name):
    rgb = read_image(FACES / name)
    box, keypoints = _detect(blazeface, rgb)
    assert keypoints[0][0] < keypoints[1][0]  # keypoint 0 is the eye on the image's left
    [marks] = landmarker.run(rgb, [roi_from_box(box, (keypoints[0], keypoints[1]))])
    assert marks.presence > 0.9
    assert marks.points.shape == (468, 3) and marks.points.dtype == np.float32
    grown = box.expand(0.15)
    x, y = marks.points[:, 0], marks.points[:, 1]
    assert ((x >= grown.x) & (x <= grown.x + grown.w) & (y >= grown.y) & (y <= grown.y + grown.h)).all()
    left, right = marks.points[EYE_OUTER_LEFT, :2], marks.points[EYE_OUTER_RIGHT, :2]
    assert left[0] < right[0]
    # Each outer eye corner is nearer the detector's keypoint of the same eye than of the other one.
    assert np.linalg.norm(left - keypoints[0]) < np.linalg.norm(left - keypoints[1])
    assert np.linalg.norm(right - keypoints[1]) < np.linalg.norm(right - keypoints[0])
    pose = head_pose(marks.points)
    assert abs(pose.yaw) < 25 and abs(pose.pitch) < 25 and abs(pose.roll) < 10


@pytest.mark.media
def test_no_face_no_presence(landmarker):
    rgb = read_image(FACES / "no_face.jpg")
    h, w = rgb.shape[:2]
    large = read_image(FACES / "one_face_large.png")  # the face is at about (526, 226) 275x275
    [empty] = landmarker.run(rgb, [Roi(w / 2, h / 2, max(w, h))])
    [away] = landmarker.run(large, [Roi(150.0, 560.0, 300.0)])
    assert empty.presence < 0.1 and away.presence < 0.1


@pytest.mark.media
def test_several_crops_give_what_each_crop_gives_alone(landmarker, blazeface):
    rgb = read_image(FACES / "one_face_large.png")
    box, keypoints = _detect(blazeface, rgb)
    rois = [roi_from_box(box, (keypoints[0], keypoints[1])), Roi(150.0, 560.0, 300.0)]
    together = landmarker.run(rgb, rois)
    alone = [landmarker.run(rgb, [r])[0] for r in rois]
    for a, b in zip(together, alone):
        assert np.allclose(a.points, b.points, atol=1e-2) and a.presence == pytest.approx(b.presence, abs=1e-4)


@pytest.mark.media
def test_rotating_the_image_moves_the_landmarks_with_it(landmarker, blazeface):
    rgb = read_image(FACES / "one_face_large.png")
    box, keypoints = _detect(blazeface, rgb)
    roi = roi_from_box(box, (keypoints[0], keypoints[1]))
    [upright] = landmarker.run(rgb, [roi])
    turn = cv2.getRotationMatrix2D((roi.cx, roi.cy), 30, 1.0)  # 30 degrees anticlockwise on screen
    turned = cv2.warpAffine(rgb, turn, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    expected = upright.points[:, :2] @ turn[:, :2].T + turn[:, 2]
    # The same crop, turned with the image: the same input, so the same landmarks, moved.
    same = Roi(roi.cx, roi.cy, roi.size, roi.angle + math.atan2(turn[1, 0], turn[0, 0]))
    [follow] = landmarker.run(turned, [same])
    assert np.abs(follow.points[:, :2] - expected).max() < 2.0
    # Found afresh in the turned image: the detector's eyes set the crop's angle.
    box2, keypoints2 = _detect(blazeface, turned)
    [found] = landmarker.run(turned, [roi_from_box(box2, (keypoints2[0], keypoints2[1]))])
    assert found.presence > 0.9
    assert np.linalg.norm(found.points[:, :2] - expected, axis=1).mean() < 0.025 * box.w  # 4.4 px at 275 px here
    assert head_pose(found.points).roll == pytest.approx(head_pose(upright.points).roll - 30, abs=3)


@pytest.mark.media
@pytest.mark.parametrize("name", PICTURES)
def test_the_next_crop_from_the_landmarks_holds_the_face(landmarker, blazeface, name):
    rgb = read_image(FACES / name)
    box, keypoints = _detect(blazeface, rgb)
    [first] = landmarker.run(rgb, [roi_from_box(box, (keypoints[0], keypoints[1]))])
    roi = roi_from_landmarks(first.points)
    assert roi.contains(first.points).all()
    corners = np.array([[box.x, box.y], [box.x + box.w, box.y], [box.x, box.y + box.h], [box.x + box.w, box.y + box.h]])
    assert roi.contains(corners).all()
    # Followed from its own landmarks, the face stays put.
    [again] = landmarker.run(rgb, [roi])
    assert again.presence > 0.9
    assert np.linalg.norm(again.points[:, :2] - first.points[:, :2], axis=1).mean() < 0.03 * box.w


def _turned(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The rotation that turns a head facing the camera by ``yaw`` about its vertical axis (nose to
    the image's right), then ``pitch`` (face up), then ``roll`` in the image (clockwise on screen);
    degrees, frame axes x right, y down, z away from the camera."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


TURNS = [(yaw, 0, 0) for yaw in range(10, 90, 10)] + [(60, 15, 0), (60, -20, 0), (50, 0, 25), (45, 20, 25), (-70, -15, -30), (0, 30, 0)]


def test_head_pose_of_four_points_turned_by_known_angles():
    # A head facing the camera: eyes' outer corners level, forehead above the chin, the line between
    # them off the middle of the eyes (as on a real face): only the eye line's direction sets "right".
    face = np.zeros((468, 3))
    face[[EYE_OUTER_LEFT, EYE_OUTER_RIGHT, 10, 152]] = [[-45, 0, 5], [45, 0, 5], [3, -70, -10], [-2, 110, -5]]
    p = head_pose(face)
    assert abs(p.yaw) < 1e-9 and abs(p.roll) < 1e-9
    level = head_pose(face * [1, 1, 0])  # the same face drawn flat: chin and forehead at one depth
    assert abs(level.pitch) < 1e-9 and abs(p.pitch + math.degrees(math.atan2(5, 180))) < 1e-9
    for turn in TURNS:
        q = head_pose((face * [1, 1, 0]) @ _turned(*turn).T + [300, 200, 0])
        assert (q.yaw, q.pitch, q.roll) == pytest.approx(turn, abs=1e-6), turn
    assert head_pose(face @ _turned(0, 0, 90).T).roll == pytest.approx(90)  # past 45 degrees too


@pytest.mark.media
def test_head_pose_gives_back_known_turns_of_a_real_face(landmarker, blazeface):
    rgb = read_image(FACES / "one_face_large.png")
    box, keypoints = _detect(blazeface, rgb)
    [marks] = landmarker.run(rgb, [roi_from_box(box, (keypoints[0], keypoints[1]))])
    points = marks.points.astype(np.float64)
    axes = head_axes(points)
    assert np.allclose(axes.T @ axes, np.eye(3), atol=1e-9) and np.linalg.det(axes) == pytest.approx(1)
    centre = points.mean(axis=0)
    frontal = (points - centre) @ axes  # the face in its own axes: upright, facing the camera
    p = head_pose(frontal)
    assert max(abs(p.yaw), abs(p.pitch), abs(p.roll)) < 1e-6
    for turn in TURNS:
        q = head_pose(frontal @ _turned(*turn).T + centre)
        assert (q.yaw, q.pitch, q.roll) == pytest.approx(turn, abs=1e-6), turn


@pytest.mark.media
def test_a_mirrored_face_has_the_opposite_yaw_and_roll(landmarker, blazeface):
    rgb = read_image(FACES / "one_face_large.png")
    poses = []
    for image in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
        box, keypoints = _detect(blazeface, image)
        [marks] = landmarker.run(image, [roi_from_box(box, (keypoints[0], keypoints[1]))])
        poses.append(head_pose(marks.points))
    seen, mirrored = poses
    assert abs(seen.yaw) > 5 and abs(seen.roll) > 3  # turned and tilted: the signs are tested
    assert mirrored.yaw == pytest.approx(-seen.yaw, abs=2)
    assert mirrored.roll == pytest.approx(-seen.roll, abs=1.5)
    assert mirrored.pitch == pytest.approx(seen.pitch, abs=2)


# The model file: found, cached, downloaded and refused as the detectors' are.


@pytest.fixture
def landmark_server():
    """Serves the shared landmark model (and a tampered copy, a wrong model, an endless file) on loopback."""
    good = LANDMARK.read_bytes()
    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 0xFF
    bodies = {"face_landmark.tflite": good, "tampered.tflite": bytes(tampered), "detector.tflite": DETECTOR.read_bytes()}
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            self.send_response(200)
            if name == "endless.tflite":  # no length, more than the published file
                self.end_headers()
                try:
                    self.wfile.write(b"\0" * (len(good) + (1 << 16)))
                except OSError:
                    pass
                return
            body = bodies[name]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with serving(Handler) as url:
        yield url, hits


def test_the_published_file_is_pinned():
    m = DETECTOR_MODELS["landmark"]
    assert m.url == "https://storage.googleapis.com/mediapipe-assets/face_landmark.tflite"
    assert m.sha256 == "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814" and m.max_bytes == 1242398


def test_a_missing_landmark_model_is_one_line_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_STREAM_CACHE", str(tmp_path))
    monkeypatch.setenv("FER_STREAM_LANDMARK_URL", "http://127.0.0.1:9/face_landmark.tflite")
    monkeypatch.setenv("FER_STREAM_TRUST_MIRROR", "1")
    monkeypatch.delenv("FER_STREAM_LANDMARK_MODEL", raising=False)
    with pytest.raises(ModelError) as e:
        resolve_landmark_model()
    message = str(e.value)
    assert "\n" not in message and "face_landmark.tflite" in message
    assert "FER_STREAM_LANDMARK_MODEL" in message and "fer-stream models pull" in message
    monkeypatch.setenv("FER_STREAM_LANDMARK_MODEL", str(tmp_path / "nowhere.tflite"))
    with pytest.raises(ModelError, match=r"landmark model '.*nowhere.tflite' \(from \$FER_STREAM_LANDMARK_MODEL\) does not exist"):
        resolve_landmark_model()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.media
def test_the_landmark_model_is_downloaded_once_into_the_cache(landmark_server, tmp_path, monkeypatch):
    url, hits = landmark_server
    monkeypatch.setenv("FER_STREAM_CACHE", str(tmp_path))
    monkeypatch.setenv("FER_STREAM_LANDMARK_URL", url + "/face_landmark.tflite")
    monkeypatch.setenv("FER_STREAM_TRUST_MIRROR", "1")
    monkeypatch.delenv("FER_STREAM_LANDMARK_MODEL", raising=False)
    path = resolve_landmark_model()
    assert path == tmp_path / "face_landmark.tflite" and path.read_bytes() == LANDMARK.read_bytes()
    assert resolve_landmark_model() == path and len(hits) == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    monkeypatch.setenv("FER_STREAM_LANDMARK_MODEL", str(LANDMARK))  # the environment wins over the cache
    assert resolve_landmark_model() == LANDMARK


@pytest.mark.media
def test_a_download_that_is_not_the_published_landmark_model_is_refused(landmark_server, tmp_path, monkeypatch):
    url, _ = landmark_server
    monkeypatch.setenv("FER_STREAM_TRUST_MIRROR", "1")
    for name in ("tampered.tflite", "detector.tflite"):
        with pytest.raises(ModelError, match="not MediaPipe's published file"):
            download_detector(tmp_path / "m.tflite", f"{url}/{name}", kind="landmark")
    with pytest.raises(ModelError, match="more than 1242398 bytes, the published file is 1242398 bytes"):
        download_detector(tmp_path / "m.tflite", url + "/endless.tflite", kind="landmark")
    monkeypatch.delenv("FER_STREAM_TRUST_MIRROR")
    with pytest.raises(ModelError, match="not https; set FER_STREAM_TRUST_MIRROR=1"):
        download_detector(tmp_path / "m.tflite", url + "/face_landmark.tflite", kind="landmark")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.media
def test_a_file_that_is_not_a_landmark_model_does_not_load():
    with pytest.raises(ModelError, match="not a face landmark model"):
        FaceLandmarker(FULL_RANGE)
