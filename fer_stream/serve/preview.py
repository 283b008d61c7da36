"""The live picture of ``--serve``: each source's newest annotated frame, as JPEG when someone watches."""

from __future__ import annotations

import threading

import numpy as np

from fer_stream.frames import FrameResult
from fer_stream.io.sinks import Sink


class PreviewSink(Sink):
    """Keeps each source's newest annotated frame for the MJPEG endpoint; encodes only when watched."""

    def __init__(self, quality: int = 80, max_fps: float = 15.0) -> None:
        self.quality = quality
        self.min_interval = 1.0 / max_fps
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._encode = threading.Lock()  # one encode per frame, however many viewers ask
        self.encodes = 0

    def write(self, result: FrameResult) -> None:
        image = result.picture
        with self._cond:
            self._image, self._seq = image, self._seq + 1
            self._cond.notify_all()

    def jpeg(self, after: int = -1, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The newest frame as JPEG once one newer than ``after`` exists (``None`` on timeout)."""
        import cv2  # heavy (OpenCV): only once a viewer asks

        with self._cond:
            if not self._cond.wait_for(lambda: self._image is not None and self._seq > after, timeout):
                return None
            seq, image, cached = self._seq, self._image, self._jpeg
        if cached is not None and cached[0] >= seq:
            return cached
        with self._encode:
            cached = self._jpeg
            if cached is not None and cached[0] >= seq:  # another viewer encoded it meanwhile
                return cached
            assert image is not None  # waited for above
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            self.encodes += 1
            self._jpeg = (seq, buf.tobytes())
            return self._jpeg


class Both(Sink):
    """Hands each result to every sink given (a source's preview and its dashboard view)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def write(self, result: FrameResult) -> None:
        for sink in self.sinks:
            sink.write(result)
