"""The overlay: boxes and labels drawn on a copy, in the palette's colours for each face state."""

from __future__ import annotations

import numpy as np
from conftest import labelled_face as _face

from fer_stream.frames import Box
from fer_stream.stream.overlay import REJECTED, Overlay


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


def test_rejected_boxes_are_drawn_dashed_red_only_when_asked():
    image = np.full((240, 320, 3), 90, np.uint8)
    box, face = Box(40, 100, 120, 100), _face(1, "happy", box=Box(220, 60, 80, 80))
    drawn = Overlay(draw_rejected=True).draw(image, [face], [box])
    red = np.abs(drawn.astype(int) - REJECTED).sum(-1) < 60
    bottom, left = red[box.y + box.h - 1, box.x : box.x + box.w], red[box.y + 20 : box.y + box.h, box.x]
    assert 0.3 < bottom.mean() < 0.8 and 0.3 < left.mean() < 0.8  # dashed: red with gaps
    assert not red[box.y + 5 : box.y + box.h - 5, box.x + 5 : box.x + box.w - 5].any()  # an outline
    assert red[: box.y, box.x : box.x + box.w].sum() > 100  # its "no face" label, above it
    assert not red[:, 200:].any()  # the face keeps its own colour
    plain = Overlay().draw(image, [face], [box])
    assert plain.tobytes() == Overlay().draw(image, [face]).tobytes()  # not asked: not drawn
    assert Overlay(draw_rejected=True).draw(image, [], []).tobytes() == image.tobytes()
    alone = Overlay(draw_rejected=True).draw(image, [], [box])
    assert (np.abs(alone.astype(int) - REJECTED).sum(-1) < 60).sum() == red.sum()  # drawn with no face in the frame too
