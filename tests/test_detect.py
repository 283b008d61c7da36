"""The short-range face detector on real photos: a face found, none in an empty picture, padded rows."""

import numpy as np
import pytest
from conftest import FACES, media_file

from fer_stream.frames import Box
from fer_stream.io.images import read_image


def _iou(a: Box, b: Box) -> float:
    x0, y0 = max(a.x, b.x), max(a.y, b.y)
    x1, y1 = min(a.x + a.w, b.x + b.w), min(a.y + a.h, b.y + b.h)
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a.area + b.area - inter)


@pytest.mark.parametrize("name, expected", [("one_face.jpg", Box(97, 116, 175, 175)), ("one_face_large.png", Box(526, 226, 275, 275))])
def test_finds_the_face(detector, name, expected):
    faces = detector.detect(read_image(FACES / name))
    assert len(faces) == 1
    assert _iou(faces[0].box, expected) > 0.8
    assert faces[0].score > 0.5
    crop = faces[0].crop
    assert crop.flags["C_CONTIGUOUS"] and crop.shape[2] == 3
    assert crop.shape[0] > faces[0].box.h  # margin applied


def test_no_face(detector):
    assert detector.detect(read_image(FACES / "no_face.jpg")) == []


def test_row_padded_frames_still_find_faces(detector):
    """PyAV returns row-padded arrays for widths like 436; MediaPipe alone finds nothing in them."""
    import av

    portrait = media_file("436x384")
    with av.open(str(portrait)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert not frame.flags["C_CONTIGUOUS"]
    assert len(detector.detect(frame)) == 1
    # and any odd size works
    image = read_image(FACES / "one_face.jpg")[:383, :381]
    padded = np.zeros((383, 384, 3), np.uint8)[:, :381]
    padded[:] = image
    assert len(detector.detect(padded)) == 1
