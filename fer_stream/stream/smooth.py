"""Per-track temporal smoothing of class probabilities.

A face's expression changes over a second, not from one frame to the next, while a classifier's
answer flickers with pose, blur and light. Smoothing each track's probabilities steadies the label
on screen and in the log:

* ``ema``: exponential moving average, ``s = alpha * p + (1 - alpha) * s``;
* ``window``: the mean of the track's last ``window`` classifications;
* ``off``: each classification as the model gave it.

>>> sm = Smoother("ema", alpha=0.5)
>>> sm.update(1, np.array([1.0, 0.0])).tolist()
[1.0, 0.0]
>>> sm.update(1, np.array([0.0, 1.0])).tolist()
[0.5, 0.5]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence

import numpy as np

MODES = ("ema", "window", "off")


class Smoother:
    """Keeps each track's smoothed probability vector; ``update`` adds a classification."""

    def __init__(self, mode: str = "ema", *, alpha: float = 0.5, window: int = 5) -> None:
        if mode not in MODES:
            raise ValueError(f"smoothing must be one of {', '.join(MODES)}, not {mode!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if window < 1:
            raise ValueError("window must be at least 1")
        self.mode = mode
        self.alpha = alpha
        self.window = window
        self._state: dict[Hashable, np.ndarray] = {}
        self._history: dict[Hashable, deque[np.ndarray]] = {}

    def update(self, track: Hashable, probs: np.ndarray) -> np.ndarray:
        """Fold one classification of ``track`` in and return its smoothed probabilities."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.mode == "ema":
            prev = self._state.get(track)
            out = probs if prev is None else self.alpha * probs + (1.0 - self.alpha) * prev
        elif self.mode == "window":
            hist = self._history.setdefault(track, deque(maxlen=self.window))
            hist.append(probs)
            out = np.mean(hist, axis=0)
        else:
            out = probs
        self._state[track] = out
        return out

    def get(self, track: Hashable) -> np.ndarray | None:
        """The track's current smoothed probabilities, or ``None`` before its first classification."""
        return self._state.get(track)

    def forget(self, tracks: Sequence[Hashable]) -> None:
        """Drop the state of tracks that ended."""
        for t in tracks:
            self._state.pop(t, None)
            self._history.pop(t, None)
