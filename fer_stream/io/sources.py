"""Video sources: files and network URLs through PyAV, webcams through OpenCV.

>>> from fer_stream.io.sources import open_source
>>> with open_source("talk.mp4") as source:           # doctest: +SKIP
...     for frame in source.frames():
...         print(frame.index, frame.time, frame.image.shape)
"""

from __future__ import annotations

import logging
import re
import time
import urllib.parse
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from fer_stream.errors import SourceError
from fer_stream.frames import Frame
from fer_stream.health import SourceHealth

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class FrameTooLarge(SourceError):
    """A frame over ``--max-pixels``: the source ends (a camera that reconnects would send it again)."""


def check_frame_size(name: str, width: int, height: int, max_pixels: int, index: int | None = None) -> None:
    """A :class:`FrameTooLarge` if ``width`` x ``height`` is over ``max_pixels`` (0 = any size).

    Checked on every decoded frame, before it is converted: a stream may change size mid-way.

    >>> try:
    ...     check_frame_size("cam", 9000, 9000, 7680 * 4320, index=12)
    ... except FrameTooLarge as e:
    ...     print(str(e).split(";")[0])
    'cam' frame 12 is 9000x9000, over --max-pixels 33177600 (33.2 MP)
    """
    if max_pixels and width * height > max_pixels:
        what = f"'{name}'" if index is None else f"'{name}' frame {index}"
        ended = "" if index is None else "the source ended; "
        raise FrameTooLarge(
            f"{what} is {width}x{height}, over --max-pixels {max_pixels} ({max_pixels / 1e6:.3g} MP); "
            f"{ended}raise --max-pixels if this machine has the memory for it"
        )


def transport_options(url: str, transport: str = "tcp") -> dict[str, str]:
    """FFmpeg options carrying the RTSP transport for ``url`` (none for other URLs and files).

    >>> transport_options("rtsp://cam/1"), transport_options("talk.mp4")
    ({'rtsp_transport': 'tcp'}, {})
    """
    return {"rtsp_transport": transport} if url.lower().startswith(("rtsp://", "rtsps://")) else {}


class Source:
    """A stream of :class:`Frame` objects. ``live`` sources (cameras) run in real time and may drop."""

    name: str = ""
    live: bool = False
    fps: float = 30.0
    frame_count: int | None = None
    width: int = 0
    height: int = 0
    time_base: Fraction | None = None  # of Frame.pts; None when frames carry no decoder timestamps
    audio_path: str | None = None  # a file whose audio stream the annotated output may copy
    reconnects: int = 0  # network sources: times streaming resumed after an outage
    attempts: int = 0  # network sources: failed connections and lost streams

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def health(self) -> SourceHealth | None:
        """The source's own health (network sources); ``None``: the pipeline's counts say it all."""
        return None

    def interrupt(self) -> None:
        """Stop waiting (between reconnection attempts); nothing to do for most sources."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AVSource(Source):
    """A video file or network stream decoded by PyAV (FFmpeg).

    ``live=True`` on a file plays it at its own frame rate, as a camera would deliver it: each
    frame is released at its presentation time (a decoder that falls behind releases late frames
    at once), and the pipeline treats it as a live source.
    """

    def __init__(
        self,
        url: str,
        *,
        live: bool | None = None,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        options: dict[str, str] | None = None,
        max_pixels: int = 0,
    ) -> None:
        import av

        self.url = url  # opened, never shown: self.name is what messages and outputs carry
        self.name = redact(url)
        self.max_pixels = max_pixels
        is_network = url.lower().startswith(NETWORK_SCHEMES)
        self.live = is_network if live is None else live
        self._paced = self.live and not is_network
        if not is_network:
            p = Path(url)
            if not p.exists():
                raise SourceError(f"video file '{self.name}' does not exist; check the path (webcams are given by index, e.g. --source 0)")
            if p.is_dir():
                raise SourceError(f"'{self.name}' is a folder, not a video; for images use `fer-stream image --dir {self.name}`")
        options = {**transport_options(url), **(options or {})}
        started = time.monotonic()
        try:
            self._container = av.open(url, options=options, timeout=(open_timeout, read_timeout))
        except av.error.FFmpegError as e:
            if not is_network:
                raise SourceError(f"cannot open video file '{self.name}': {_ffmpeg_reason(e, url)}") from None
            if time.monotonic() - started >= open_timeout:
                raise SourceError(
                    f"cannot open stream '{self.name}': no answer within {open_timeout:g} s "
                    "(camera down, wrong address or port, or a firewall in between)"
                ) from None
            raise SourceError(f"cannot open stream '{self.name}': {_ffmpeg_reason(e, url)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"'{self.name}' has no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "SLICE" if self.live else "AUTO"  # frame threading adds latency
        ctx = stream.codec_context
        self.width, self.height = int(ctx.width), int(ctx.height)
        try:
            check_frame_size(self.name, self.width, self.height, max_pixels)
        except FrameTooLarge:
            self._container.close()
            raise
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 30.0
        self.time_base = stream.time_base
        self._start = stream.start_time or 0
        if stream.frames:
            self.frame_count = int(stream.frames)
        elif stream.duration and stream.time_base:
            self.frame_count = round(float(stream.duration * stream.time_base) * self.fps) or None
        if not is_network and self._container.streams.audio:
            self.audio_path = url

    def frames(self) -> Iterator[Frame]:
        import av

        index = 0
        last_pts: int | None = None
        errors = 0
        clock = time.monotonic()
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as e:
                raise SourceError(f"reading '{self.name}' failed: {_ffmpeg_reason(e, self.url)}") from None
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError as e:
                errors += 1
                if errors == 1:
                    log.warning("skipping undecodable data in '%s' (%s)", self.name, _ffmpeg_reason(e, self.url))
                if index == 0 and errors >= 50:
                    raise SourceError(f"'{self.name}' is not a video PyAV can decode: {_ffmpeg_reason(e, self.url)}") from None
                continue
            for vf in decoded:
                check_frame_size(self.name, vf.width, vf.height, self.max_pixels, index)  # before the RGB copy is made
                pts = vf.pts
                if pts is None or (last_pts is not None and pts <= last_pts):
                    # Missing or repeated timestamps: continue the sequence so the output stays valid.
                    step = round(1 / (self.fps * self.time_base)) if self.time_base else 1
                    pts = (last_pts + max(1, step)) if last_pts is not None else self._start
                last_pts = pts
                t = float((pts - self._start) * self.time_base) if self.time_base else index / self.fps
                # to_ndarray returns row-padded views for many widths; downstream needs contiguous RGB.
                image = np.ascontiguousarray(vf.to_ndarray(format="rgb24"))
                if self._paced and (ahead := clock + t - time.monotonic()) > 0:
                    if ahead > MAX_PACE_WAIT_S:  # a jump in the timestamps: play on instead of sleeping it out
                        clock -= ahead
                    else:
                        time.sleep(ahead)
                yield Frame(index=index, time=t, image=image, pts=pts, captured=time.monotonic())
                index += 1

    def close(self) -> None:
        self._container.close()


MAX_PACE_WAIT_S = 1.0  # --live never sleeps longer than this between frames (so stopping stays prompt)


class WebcamSource(Source):
    """A local camera by index, read with OpenCV."""

    live = True

    def __init__(self, index: int, max_pixels: int = 0) -> None:
        import cv2

        self.name = f"webcam {index}"
        self.max_pixels = max_pixels
        # OpenCV logs every backend it tries for a missing camera; our error says it once.
        log_utils = getattr(getattr(cv2, "utils", None), "logging", None)
        previous = log_utils.getLogLevel() if log_utils else None
        if log_utils:
            log_utils.setLogLevel(log_utils.LOG_LEVEL_SILENT)
        try:
            self._cap = cv2.VideoCapture(index)
        finally:
            if log_utils and previous is not None:
                log_utils.setLogLevel(previous)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(
                f"cannot open webcam {index}: no camera at that index or no permission "
                "(list cameras with `ls /dev/video*`; on Linux add yourself to the 'video' group)"
            )
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self._cv2 = cv2

    def frames(self) -> Iterator[Frame]:
        start = time.monotonic()
        index = 0
        failures = 0
        while True:
            ok, bgr = self._cap.read()
            now = time.monotonic()
            if not ok:
                failures += 1
                if failures >= 30:
                    raise SourceError(f"{self.name} stopped delivering frames (unplugged or in use by another program)")
                time.sleep(0.01)
                continue
            failures = 0
            check_frame_size(self.name, bgr.shape[1], bgr.shape[0], self.max_pixels, index)
            rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
            yield Frame(index=index, time=now - start, image=rgb, captured=now)
            index += 1

    def close(self) -> None:
        self._cap.release()


def open_source(spec: str | int, *, live: bool | None = None, max_pixels: int = 0) -> Source:
    """A webcam index (``0`` or ``"0"``), a video file path, or a URL FFmpeg can open (frames
    larger than ``max_pixels`` refused; 0 = any size)."""
    text = str(spec).strip()
    if not text:
        raise SourceError("no source given; use --source 0 for a webcam, --source FILE for a video, or --source rtsp://...")
    # str.isdigit() is true of '²' and '٣' too, which int() refuses: only 0-9 number a camera.
    if text.isascii() and text.isdigit() and int(text) <= MAX_WEBCAM_INDEX:
        return WebcamSource(int(text), max_pixels=max_pixels)
    if text.isdigit() and not Path(text).exists():
        raise SourceError(
            f"'{text}' is neither a webcam index nor an existing file; webcams are numbered 0, 1, 2, ... "
            f"in the digits 0-9, up to {MAX_WEBCAM_INDEX} (e.g. --source 0)"
        )
    return AVSource(text, live=live, max_pixels=max_pixels)


MAX_WEBCAM_INDEX = 2**31 - 1  # OpenCV takes a C int


def _ffmpeg_reason(e: Exception, url: str = "") -> str:
    reason = getattr(e, "strerror", None) or str(e)
    reason = reason.strip().rstrip(".").split(";")[0] or type(e).__name__
    return redact_text(reason, url) if url else reason


# A query key naming any of these holds a secret: password, passwd, pwd, token, api_key, access_token,
# X-Amz-Signature, auth, secret, passphrase (SRT), credentials, session ids.
SECRET_KEY_PARTS = ("pass", "pwd", "token", "key", "secret", "auth", "sig", "cred", "session")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SHORTEST_LOOSE_SECRET = 4  # shorter secrets are hidden inside URLs only: replacing "ab" everywhere garbles a message


def secret_key(name: str) -> bool:
    """Whether a query key names a secret.

    >>> [k for k in ("user", "password", "api_key", "X-Amz-Signature", "channel", "streamid") if secret_key(k)]
    ['password', 'api_key', 'X-Amz-Signature']
    """
    key = urllib.parse.unquote_plus(name).lower()
    return any(part in key for part in SECRET_KEY_PARTS)


def _split_url(url: str) -> tuple[str, str, str] | None:
    """``(scheme://, userinfo, rest)`` of a URL (``userinfo`` without its ``@``); ``None``: not a URL.

    The userinfo ends at the last ``@`` of the authority (as FFmpeg reads it); a password with a
    bare ``/`` in it (``rtsp://admin:pa/ss@cam``) is taken to end at the ``@`` after it as well.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or not scheme[0].isalpha():
        return None
    head_end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority_end = min((i for i in (rest.find("/"), head_end) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, authority_end)
    if at < 0:
        authority = rest[:authority_end]
        port = authority.rpartition(":")[2] if ":" in authority and not authority.endswith("]") else ""
        later = rest.rfind("@", 0, head_end)
        if later >= 0 and port and not port.isdigit():  # 'user:pa/ss@host': a broken password is still one
            at = later
    if at < 0:
        return scheme + sep, "", rest
    return scheme + sep, rest[:at], rest[at + 1 :]


def _redact_params(text: str) -> str:
    """``a=1&password=x;token=y`` -> ``a=1&password=***;token=***``."""
    parts = re.split(r"([&;])", text)
    for i in range(0, len(parts), 2):
        key, eq, value = parts[i].partition("=")
        if eq and value and secret_key(key):
            parts[i] = f"{key}=***"
    return "".join(parts)


def redact(url: str) -> str:
    """``url`` as it may be shown or stored: its secrets become ``***``.

    The password of the userinfo (the user name stays), a userinfo without a password (a token:
    ``http://TOKEN@host``) whole, and the values of query and fragment keys that name a secret
    (:data:`SECRET_KEY_PARTS`). Any scheme; file paths and webcam indices come back as they are.

    >>> redact("rtsp://admin:S3cret@cam/s1?channel=1&password=S3cret")
    'rtsp://admin:***@cam/s1?channel=1&password=***'
    >>> redact("http://0123abcd@cam/live.ts"), redact("talk.mp4")
    ('http://***@cam/live.ts', 'talk.mp4')
    """
    split = _split_url(url)
    if split is None:
        return url
    scheme, userinfo, rest = split
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***@" if colon and user else "***@"
    path, hash_, fragment = rest.partition("#")
    path, q, query = path.partition("?")
    return f"{scheme}{userinfo}{path}{q}{_redact_params(query)}{hash_}{_redact_params(fragment)}"


def secrets_of(url: str) -> set[str]:
    """The secret parts of ``url`` (password or token, secret query values), as written and decoded."""
    split = _split_url(url)
    if split is None:
        return set()
    _, userinfo, rest = split
    found = []
    if userinfo:
        _, colon, password = userinfo.partition(":")
        found.append(password if colon else userinfo)
    path, _, fragment = rest.partition("#")
    for params in (path.partition("?")[2], fragment):
        for part in re.split(r"[&;]", params):
            key, eq, value = part.partition("=")
            if eq and value and secret_key(key):
                found.append(value)
    forms = {f for s in found for f in (s, urllib.parse.unquote(s), urllib.parse.unquote_plus(s))}
    return {f for f in forms if f}


def redact_text(text: str, url: str = "") -> str:
    """``text`` (an error message, say) with every URL in it redacted, and ``url``'s secrets
    replaced by ``***`` wherever they appear (FFmpeg may quote them apart from the URL).

    >>> url = "http://cam/live.ts?user=admin&password=S3cret"
    >>> redact_text(f"HTTP error 401 for {url} (password S3cret)", url)
    'HTTP error 401 for http://cam/live.ts?user=admin&password=*** (password ***)'
    """
    if url:
        text = text.replace(url, redact(url))
    text = _URL_IN_TEXT.sub(lambda m: redact(m.group(0)), text)
    for secret in sorted(secrets_of(url), key=len, reverse=True):
        if len(secret) >= _SHORTEST_LOOSE_SECRET:
            text = text.replace(secret, "***")
    return text
