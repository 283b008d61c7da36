"""Where results go: annotated MP4, per-face event log, on-screen window, and the run's tally.

Every sink is a context manager with ``write(result)``; closing finalizes what it wrote.

>>> with VideoSink("out.mp4", width=1280, height=720, fps=30) as video, EventSink("out.jsonl") as events:
...     for result in results:                   # doctest: +SKIP
...         video.write(result); events.write(result)
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO, TypeVar, runtime_checkable

from fer_stream.errors import SinkError, first_line
from fer_stream.frames import FrameResult

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer, OutputContainer
    from av.packet import Packet
    from av.video.stream import VideoStream

log = logging.getLogger("fer_stream")


def writable_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or a SinkError if a file cannot be created there."""
    p = Path(path)
    if p.is_dir():
        raise SinkError(f"output '{p}' is a folder; give a file name")
    if not p.parent.exists():
        raise SinkError(f"cannot write '{p}': folder '{p.parent}' does not exist")
    if not os.access(p.parent, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write '{p}': folder '{p.parent}' is not writable")
    return p


def check_output(path: str | os.PathLike[str], *, inputs: tuple[str, ...] = (), overwrite: bool = False) -> Path:
    """An output the run may write: creatable, never one of ``inputs`` (also through links), and
    not an existing file unless ``overwrite``. Called before any model loads."""
    p = writable_path(path)
    for source in inputs:
        src = Path(source)
        if (src.exists() and p.exists() and os.path.samefile(src, p)) or p.resolve() == src.resolve():
            raise SinkError(f"output '{p}' is the input '{source}'; write the result to another file")
    if os.path.lexists(p) and not overwrite:  # a link there counts, even one pointing nowhere
        raise SinkError(f"output '{p}' already exists; pass --overwrite (or output.overwrite = true) to replace it")
    return p


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete: ``talk.mp4`` -> ``talk.partial.mp4``.

    What a killed run left there is kept, never deleted: renamed to
    ``talk.recovered-<time>.mp4`` (the time it was last written; a name that exists is never
    replaced) with one warning line. An empty leftover holds nothing and is removed; so is a
    link planted there (removed, never followed). Callers then create the partial exclusively
    (``O_CREAT | O_EXCL``), so nothing planted after this call is written through either.
    """
    p = path.with_name(f"{path.stem}.partial{path.suffix}")
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return p
    except OSError as e:
        raise SinkError(f"cannot check the unfinished '{p}': {e.strerror}") from None
    try:
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            kept = _keep_leftover(p, path, st.st_mtime)
            log.warning("an interrupted run left '%s'; kept it as '%s'", p, kept)
        else:
            p.unlink()
            if stat.S_ISLNK(st.st_mode):
                log.warning("removed a link planted at '%s' (never written through)", p)
    except OSError as e:
        raise SinkError(f"cannot move the unfinished '{p}' aside: {e.strerror}") from None
    return p


def _keep_leftover(partial: Path, path: Path, mtime: float) -> Path:
    """Rename ``partial`` to ``STEM.recovered-<mtime>[-N]SUFFIX`` beside ``path``, replacing nothing."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(mtime))
    for n in range(1, 10_000):
        kept = path.with_name(f"{path.stem}.recovered-{stamp}{'' if n == 1 else f'-{n}'}{path.suffix}")
        try:
            os.link(partial, kept, follow_symlinks=False)  # fails if ``kept`` exists: never replaces
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: rename, having checked the name is free
            if os.path.lexists(kept):
                continue
            os.rename(partial, kept)
            return kept
        partial.unlink()
        return kept
    raise SinkError(f"cannot keep the unfinished '{partial}': too many recovered files beside it; move them away")


@runtime_checkable
class Sink(Protocol):
    """Where results go: ``write`` each :class:`FrameResult` in frame order, ``close`` once (a
    context manager does it). Anything with these two methods is a sink; subclassing gives the
    context manager."""

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None:
        return None  # most sinks hold nothing to release

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoSink(Sink):
    """H.264 MP4 of the annotated frames: same size, one output frame per input frame, same timestamps.

    With ``audio_from`` (the input file), its first audio stream is copied packet for packet,
    interleaved by time. If the run stops early, audio is cut where the video ends; after
    :meth:`end_of_input` all of it is kept.

    The file is written as ``NAME.partial.mp4`` and renamed to ``path`` when closed, so a finished
    name always holds a finished video. That partial file is created exclusively when the sink is
    made (before the first frame of a camera not yet connected) and PyAV writes to the open file,
    so a link planted at its name is never written through. It is a fragmented MP4 with a fragment about every
    ``fragment_s`` seconds: if the process is killed (out of memory, SIGKILL, power), the partial
    file still plays up to its last fragment.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        width: int,
        height: int,
        fps: float,
        time_base: Fraction | None = None,
        audio_from: str | None = None,
        crf: int = 20,
        preset: str = "veryfast",
        fragment_s: float = 2.0,
    ) -> None:
        self.path = writable_path(path)
        self.partial = partial_path(self.path)
        # Created now, exclusively (never through a link), even when the first frame comes later.
        self._file: io.BufferedWriter | None = _create_exclusive(self.partial, f"cannot write video '{self.path}'")
        self._identity = _identity(self._file)
        self._fragment_s = fragment_s
        self._fps, self._time_base, self._audio_from = fps, time_base, audio_from
        self._crf, self._preset = crf, preset
        self._tb = time_base or Fraction(1, 90_000)
        self._use_source_pts = time_base is not None
        self._out: OutputContainer | None = None
        self._stream: VideoStream | None = None
        self._last_pts: int | None = None
        self._in_audio: InputContainer | None = None
        self._audio_stream: AudioStream | None = None
        self._audio_packets: Iterator[Packet] | None = None
        self._pending_audio: Packet | None = None
        self._copy_all_audio = False
        self._time_offset: float | None = None
        self._failed = False
        self.frames = 0
        if width > 0 and height > 0:  # otherwise the first frame gives the size (a camera not yet connected)
            self._open(width, height)

    def _open(self, width: int, height: int) -> None:
        import av

        # Fragmented: a killed process leaves a file that plays up to its last fragment.
        movflags = {"movflags": "frag_keyframe+delay_moov+default_base_moof"} if self._fragment_s > 0 else {}
        container = "mp4" if movflags else _CONTAINERS.get(self.path.suffix.lower(), "mp4")
        try:
            self._out = av.open(self._file, "w", format=container, options=movflags)
        except (av.error.FFmpegError, OSError) as e:
            raise SinkError(f"cannot write video '{self.path}': {e}") from None
        fps = self._fps
        rate = Fraction(fps).limit_denominator(1001 * 1000) if fps > 0 else Fraction(30)
        self._stream = stream = self._out.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        # 4:2:0 needs even sizes; odd-sized inputs keep their size in 4:4:4.
        stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.options = {"crf": str(self._crf), "preset": self._preset}
        if self._fragment_s > 0:  # a keyframe, hence a fragment, every fragment_s seconds
            stream.options["g"] = str(max(1, round(float(rate) * self._fragment_s)))
        stream.codec_context.time_base = self._tb
        stream.time_base = self._tb
        self._frame_step = max(1, round(1 / (rate * self._tb)))
        if self._audio_from:
            self._open_audio(self._audio_from, self._out)

    def _open_audio(self, path: str, out: OutputContainer) -> None:
        import av

        container = av.open(path)
        if not container.streams.audio:
            container.close()
            return
        self._in_audio = container
        src = container.streams.audio[0]
        self._audio_stream = out.add_stream_from_template(src)
        self._audio_packets = container.demux(src)

    def end_of_input(self) -> None:
        """The whole input was written: keep all of its audio, not just up to the last frame."""
        self._copy_all_audio = True

    def write(self, result: FrameResult) -> None:
        import av

        frame = result.frame
        image = result.picture
        if self._out is None:
            self._open(image.shape[1], image.shape[0])
        out, stream = self._out, self._stream
        assert out is not None and stream is not None  # opened above
        if (image.shape[1], image.shape[0]) != (stream.width, stream.height):
            import cv2  # a camera that came back at another resolution

            image = cv2.resize(image, (stream.width, stream.height), interpolation=cv2.INTER_AREA)
        vf = av.VideoFrame.from_ndarray(image, format="rgb24")
        if self._use_source_pts and frame.pts is not None:
            pts = frame.pts
        else:
            if self._time_offset is None:  # live: the file starts at its first frame
                self._time_offset = frame.time
            pts = round((frame.time - self._time_offset) / self._tb)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # the encoder needs strictly increasing timestamps
        self._last_pts = pts
        vf.pts = pts
        vf.time_base = self._tb
        try:
            self._mux_audio_until(float(pts * self._tb))
            out.mux(stream.encode(vf))
        except (av.error.FFmpegError, OSError) as e:
            self._failed = True
            raise SinkError(f"writing video '{self.path}' failed: {getattr(e, 'strerror', None) or e}") from None
        self.frames += 1

    def _mux_audio_until(self, t: float | None) -> None:
        """Copy audio packets whose time is at most ``t`` seconds (all of them if ``t`` is None)."""
        if self._audio_packets is None:
            return
        assert self._out is not None  # audio is read once the video is open
        while True:
            packet = self._pending_audio
            if packet is None:
                packet = next(self._audio_packets, None)
                if packet is None:
                    self._audio_packets = None
                    return
                if packet.dts is None:  # demuxer flush packet
                    continue
            if t is not None and packet.pts is not None and float(packet.pts * packet.time_base) > t:
                self._pending_audio = packet
                return
            self._pending_audio = None
            packet.stream = self._audio_stream
            self._out.mux(packet)

    def close(self) -> None:
        import av

        if self._out is None:
            if self._file is not None:  # no frame ever came: no video, and no empty partial left behind
                file, self._file = self._file, None
                file.close()
                if _same_file(self.partial, self._identity):
                    self.partial.unlink(missing_ok=True)
            return
        try:
            if not self._failed:
                assert self._stream is not None  # opened with the container
                self._out.mux(self._stream.encode(None))
                if self._copy_all_audio:
                    self._mux_audio_until(None)
                elif self._last_pts is not None:
                    self._mux_audio_until(float((self._last_pts + self._frame_step) * self._tb))
        except (av.error.FFmpegError, OSError) as e:
            self._failed = True
            raise SinkError(f"finishing video '{self.path}' failed: {getattr(e, 'strerror', None) or e}") from None
        finally:
            try:
                self._out.close()
            except (av.error.FFmpegError, OSError):
                self._failed = True  # what reached the disk stays playable up to its last fragment
            self._out = None
            if self._in_audio is not None:
                self._in_audio.close()
            written, self._file = self._file, None
            assert written is not None
            try:
                written.close()
            except OSError:
                self._failed = True
            _rename_if_ours(self.partial, self.path, self._identity, f"video '{self.path}'")  # the real name appears when done


class SegmentedVideoSink(Sink):
    """An annotated MP4 cut into segments of ``seconds`` each, for recordings that run for weeks.

    ``path`` names the series: ``out/door.mp4`` gives ``out/door-20261122-130501.mp4``, ... (the
    wall-clock start of each segment; ``{source}`` in ``path`` is replaced by ``source_id``, which
    is otherwise added to the name). A segment is finalized as soon as the next one starts, so a
    crash loses at most the open one, and every closed segment plays on its own.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, source_id: str, seconds: float, fps: float, crf: int = 20, preset: str = "veryfast"
    ) -> None:
        template = str(path)
        tagged = "{source}" in template
        self._base = Path(template.replace("{source}", source_id))
        self._tag = "" if tagged else f"-{source_id}"
        writable_path(self._base)
        self.seconds = seconds
        self._fps, self._crf, self._preset = fps, crf, preset
        self._current: VideoSink | None = None
        self._started_at = 0.0
        self.closed_segments: list[Path] = []

    @property
    def current_path(self) -> Path | None:
        return self._current.path if self._current is not None else None

    def _next_path(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
        p = self._base.with_name(f"{self._base.stem}{self._tag}-{stamp}{self._base.suffix}")
        n = 1
        while p.exists() or (self._current is not None and p == self._current.path):
            n += 1
            p = self._base.with_name(f"{self._base.stem}{self._tag}-{stamp}-{n}{self._base.suffix}")
        return p

    def write(self, result: FrameResult) -> None:
        t = result.frame.time
        if self._current is None or t - self._started_at >= self.seconds:
            self._rotate()
            self._started_at = t
        assert self._current is not None
        self._current.write(result)

    def _rotate(self) -> None:
        old, self._current = self._current, None
        if old is not None:
            old.close()
            self.closed_segments.append(old.path)
        self._current = VideoSink(self._next_path(), width=0, height=0, fps=self._fps, crf=self._crf, preset=self._preset)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            if self._current.frames:
                self.closed_segments.append(self._current.path)
            self._current = None


class EventSink(Sink):
    """One record per face per frame, as JSON Lines (``.jsonl``) or CSV (``.csv``).

    Keys: ``frame``, ``time`` (s), ``face`` (index in the frame), ``track`` (track id), ``box``
    ([x, y, w, h] px), ``score`` (detector), ``fresh`` (classified on this frame, not carried over),
    ``label``, ``confidence``, ``flagged``, ``probs`` (label -> probability); the prediction is the
    track's smoothed one when smoothing is on; ``quality`` (size, sharpness, usable, reason and,
    where the face landmark model ran, ``yaw``, ``pitch``, ``roll`` in degrees). With ``source_id``
    (several cameras), records start with ``source``; with ``landmarks``, they end with the face's
    468 ``landmarks`` (``[x, y, z]`` rows, frame pixels).
    In CSV, ``box``, ``quality``, ``probs`` and ``landmarks`` cells hold the same values JSON-encoded.
    """

    FIELDS = ("frame", "time", "face", "track", "box", "score", "quality", "fresh", "label", "confidence", "flagged", "probs")

    def __init__(
        self, path: str | os.PathLike[str], *, flush_every_s: float = 1.0, source_id: str | None = None, landmarks: bool = False
    ) -> None:
        self.path = writable_path(path)
        self.source_id = source_id
        self.landmarks = landmarks
        self.format = self.path.suffix.lower().lstrip(".")
        if self.format not in ("jsonl", "csv"):
            raise SinkError(f"event log '{self.path}' must end in .jsonl or .csv")
        self.partial = partial_path(self.path)  # renamed to path when closed
        self._failed = False
        try:
            self._file: io.TextIOWrapper | None = open(self.partial, "x", encoding="utf-8", newline="")
        except OSError as e:
            raise SinkError(f"cannot write event log '{self.path}': {e.strerror}") from None
        self._identity = _identity(self._file)
        fields = (("source",) if source_id is not None else ()) + self.FIELDS + (("landmarks",) if landmarks else ())
        self._csv = csv.DictWriter(self._file, fieldnames=fields) if self.format == "csv" else None
        if self._csv:
            self._csv.writeheader()
        self._flush_every = flush_every_s
        self._last_flush = time.monotonic()
        self.records = 0

    def write(self, result: FrameResult) -> None:
        try:
            self._write(result)
        except OSError as e:
            self._failed = True
            raise SinkError(f"writing event log '{self.path}' failed: {e.strerror or e}") from None

    def _write(self, result: FrameResult) -> None:
        assert self._file is not None
        for i, face in enumerate(result.faces):
            record = {"frame": result.frame.index, "time": round(result.frame.time, 6), "face": i, **face.record(self.landmarks)}
            if self.source_id is not None:
                record = {"source": self.source_id, **record}
            if self._csv:
                record = {k: spreadsheet_safe(json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in record.items()}
                self._csv.writerow(record)
            else:
                self._file.write(json.dumps(record) + "\n")
            self.records += 1
        now = time.monotonic()
        if now - self._last_flush >= self._flush_every:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError:
            self._failed = True
        if self._failed and _same_file(self.partial, self._identity):
            _trim_to_last_line(self.partial)  # the log ends on a whole record
        _rename_if_ours(self.partial, self.path, self._identity, f"event log '{self.path}'")


_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def _create_exclusive(path: Path, what: str) -> io.BufferedWriter:
    """``path`` created for writing, failing if anything (a file, a link) is there: never written through."""
    try:
        return open(path, "xb")
    except OSError as e:
        raise SinkError(f"{what}: {e.strerror or e} ('{path.name}')") from None


def _identity(file: io.IOBase) -> tuple[int, int]:
    st = os.fstat(file.fileno())
    return st.st_dev, st.st_ino


def _same_file(path: Path, identity: tuple[int, int]) -> bool:
    """Whether ``path`` still names the file created with ``identity`` (not swapped for another file or a link)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == identity


def _rename_if_ours(partial: Path, path: Path, identity: tuple[int, int], what: str) -> None:
    """Rename ``partial`` to ``path`` if it is still the file this sink wrote; a SinkError if it was swapped."""
    if not os.path.lexists(partial):
        return  # its folder is gone: nothing to name
    if not _same_file(partial, identity):
        raise SinkError(f"'{partial}' was replaced by something else while {what} was written; it was not renamed to '{path.name}'")
    try:
        os.replace(partial, path)
    except OSError as e:
        raise SinkError(f"cannot rename '{partial}' to '{path.name}': {e.strerror or e}") from None


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


T = TypeVar("T")


def spreadsheet_safe(value: T) -> T | str:
    """A CSV cell a spreadsheet shows as text: a text cell starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` so it is never run as a formula (labels and source ids
    are text others wrote). Numbers (``-0.5``) are not text cells and stay as they are.

    >>> spreadsheet_safe("=1+2"), spreadsheet_safe("-sad"), spreadsheet_safe(-0.5), spreadsheet_safe("happy")
    ("'=1+2", "'-sad", -0.5, 'happy')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _trim_to_last_line(path: Path) -> None:
    """Cut a file after its last newline (a record half-written when the disk filled up)."""
    try:
        with open(path, "rb+") as f:
            data = f.read()
            f.truncate(data.rfind(b"\n") + 1)
    except OSError:
        pass


def display_available() -> bool:
    """Whether a window can be shown here (Linux needs an X11 or Wayland session)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class DisplaySink(Sink):
    """An OpenCV window showing the annotated frames; ``q``, Esc or closing the window sets ``quit``."""

    def __init__(self, title: str = "fer-stream") -> None:
        import cv2

        if not display_available():
            raise SinkError("no screen to show a window on (DISPLAY is not set); use --no-display on headless machines")
        self.title = title
        self.quit = False
        self._cv2 = cv2
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as e:
            raise SinkError(f"cannot open a window ({first_line(e, last=True)}); use --no-display") from None
        self._shown = False

    def write(self, result: FrameResult) -> None:
        cv2 = self._cv2
        image = result.picture
        cv2.imshow(self.title, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.quit = True
        elif self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.quit = True  # the user closed the window
        self._shown = True

    def close(self) -> None:
        try:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)
        except self._cv2.error:
            pass


class Tally(Sink):
    """Counts what came out: frames, faces, flagged and unusable faces, and faces per label."""

    def __init__(self) -> None:
        self.frames_out = 0
        self.faces = 0
        self.flagged = 0
        self.unusable = 0
        self.labels: Counter[str] = Counter()

    def write(self, result: FrameResult) -> None:
        self.frames_out += 1
        for face in result.faces:
            self.faces += 1
            if not face.usable:
                self.unusable += 1
            elif face.prediction is not None:
                self.labels[face.prediction.label] += 1
                self.flagged += face.prediction.flagged


def write_atomic(path: str | os.PathLike[str], write: Callable[[TextIO], object] | bytes, what: str = "") -> Path:
    """Write a whole file through ``write(f)`` (a text file) or from ``bytes`` to its partial name,
    created exclusively, then rename it into place; any failure leaves no partial file behind, and
    an OSError is one SinkError naming the file."""
    p = writable_path(path)
    label = f"{what + ' ' if what else ''}'{p}'"
    tmp = partial_path(p)
    identity: tuple[int, int] | None = None
    try:
        if isinstance(write, bytes):
            with open(tmp, "xb") as b:
                identity = _identity(b)
                b.write(write)
        else:
            with open(tmp, "x", encoding="utf-8", newline="") as f:
                identity = _identity(f)
                write(f)
    except BaseException as e:
        if identity is not None and _same_file(tmp, identity):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise SinkError(f"cannot write {label}: {e.strerror or e}") from None
        raise
    assert identity is not None
    _rename_if_ours(tmp, p, identity, label)
    return p


def write_json(path: str | os.PathLike[str], data: object) -> None:
    """Write ``data`` as indented JSON, atomically."""
    write_atomic(path, lambda f: f.write(json.dumps(data, indent=2) + "\n"))


__all__ = [
    "DisplaySink",
    "EventSink",
    "SegmentedVideoSink",
    "Sink",
    "Tally",
    "VideoSink",
    "check_output",
    "display_available",
    "partial_path",
    "spreadsheet_safe",
    "writable_path",
    "write_atomic",
    "write_json",
]
