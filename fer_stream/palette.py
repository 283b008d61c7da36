"""The colours fer-stream draws with, in one place: the video overlay, the HTML report and the dashboard.

Two kinds: a colour per label (the report's plots, the dashboard's label mix), and the colours of a
face's state (the overlay's boxes, the report's flagged strip, the dashboard's flagged faces):
confident green, flagged amber, grey for a face not yet classified or unusable. Labels the table
does not know (a model trained on other expressions) take the :data:`FALLBACK` colours in sorted
order, so the same label set gets the same colours in every output, whatever the order it comes in.

>>> label_colors(["sad", "happy"])
{'sad': '#1f77b4', 'happy': '#2ca02c'}
>>> rgb(FLAGGED)
(255, 176, 0)
"""

from __future__ import annotations

from collections.abc import Iterable

# The usual expressions (FER2013's seven, and FER+'s contempt): matplotlib's tab10 colours.
LABEL_COLORS = {
    "angry": "#d62728",
    "disgust": "#8c564b",
    "fear": "#9467bd",
    "happy": "#2ca02c",
    "neutral": "#7f7f7f",
    "sad": "#1f77b4",
    "surprise": "#ff7f0e",
    "contempt": "#e377c2",
}

# Labels without a colour of their own take these, cycling, in sorted label order.
FALLBACK = (
    "#17becf",
    "#bcbd22",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)

# A face's state.
CONFIDENT = "#2ecc40"
FLAGGED = "#ffb000"  # under the confidence threshold: for a person to review
FLAGGED_TEXT = "#b45309"  # the flagged amber, darker: text on white stays readable
UNCLASSIFIED = "#a0a0a0"  # a new track, not classified yet
UNUSABLE = "#808080"  # too small, blurry or unsure to classify


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour for every label, in the order given: its own for the usual expressions, else the
    next of :data:`FALLBACK` in sorted label order (cycling), so any model's labels get distinct
    colours, the same ones every time and in every output.

    >>> label_colors(["happy", "bored", "sad", "awake"])
    {'happy': '#2ca02c', 'bored': '#bcbd22', 'sad': '#1f77b4', 'awake': '#17becf'}
    """
    order = list(dict.fromkeys(labels))
    others = sorted(label for label in order if label not in LABEL_COLORS)
    fallback = {label: FALLBACK[i % len(FALLBACK)] for i, label in enumerate(others)}
    return {label: LABEL_COLORS.get(label) or fallback[label] for label in order}


def rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as an (r, g, b) tuple of 0-255, for drawing on frames."""
    value = int(color.removeprefix("#"), 16)
    return (value >> 16) & 255, (value >> 8) & 255, value & 255
