"""The overlay: boxes and labels drawn on a copy, in the palette's colours for each face state."""

from __future__ import annotations

import numpy as np
from conftest import labelled_face as _face

from fer_stream.frames import Box
from fer_stream.stream.overlay import Overlay


def test_overlay_draws_on_a_copy_and_styles_flagged_and_unusable_faces():
    image = np.zeros((240, 320, 3), np.uint8)
    overlay = Overlay()
    drawn = overlay.draw(image, [_face(1, "happy", box=Box(20, 60, 80, 80)), _face(2, "sad", 0.4, box=Box(200, 60, 80, 80))])
    assert not image.any()  # the frame itself is untouched
    confident, flagged = drawn[:, :160], drawn[:, 160:]
    assert (np.abs(confident.astype(int) - overlay.confident).sum(-1) < 30).sum() > 100
    assert (np.abs(flagged.astype(int) - overlay.flagged).sum(-1) < 30).sum() > 100
    grey = overlay.draw(image, [_face(3, None, usable=False, box=Box(100, 60, 80, 80))])
    ys, xs = np.nonzero(grey.any(-1))
    assert ys.size and xs.min() >= 90 and np.allclose(grey[ys, xs, 0], grey[ys, xs, 1], atol=40)  # grey, inside its box
    assert overlay.draw(image, []).tobytes() == image.tobytes()


def test_overlay_draws_in_the_palette_s_state_colours():
    from fer_stream import palette
    from fer_stream.stream import overlay

    assert overlay.CONFIDENT == (46, 204, 64) == palette.rgb(palette.CONFIDENT)  # the colours the videos always had
    assert overlay.FLAGGED == (255, 176, 0) == palette.rgb(palette.FLAGGED)
    assert (overlay.UNCLASSIFIED, overlay.UNUSABLE) == ((160, 160, 160), (128, 128, 128))
