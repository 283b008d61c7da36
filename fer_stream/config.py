"""Settings: defaults, TOML loading, validation and command-line overrides.

Every setting lives in one table of ``config.toml`` and in one frozen dataclass below; the field's
metadata carries its one-line help and its check. ``config.toml`` at the repository root is the
same list, written out with every default (a test keeps the two equal).

>>> cfg = load_config(None, {"classifier.max_batch": 4})
>>> cfg.classifier.max_batch
4
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fer_stream.errors import ConfigError, SourceError

DEFAULT_MODEL = "trpakov/vit-face-expression"
DEVICES = ("auto", "npu", "cuda", "mps", "cpu")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
SMOOTHING = ("ema", "window", "off")
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)

Check = Callable[[Any], str | None]  # returns a description of what is expected, or None if fine


def _setting(
    default: Any, help: str, check: Check | None = None, *, off: str = "", flag_help: str = "", parse: Callable[[str], Any] | None = None
) -> Any:
    """A setting's field: its default, one-line help and check. ``off``: the help of the flag that
    turns a setting that defaults to true off (``--no-warmup``), in plain words; ``flag_help``: the
    command line's help where the file's would not read as one (``--display/--no-display``);
    ``parse``: how its flag's text becomes a value (default: the type of the default)."""
    return field(default=default, metadata={"help": help, "check": check, "off": off, "flag_help": flag_help, "parse": parse})


def _auto_or_fraction(v: Any) -> str | None:
    ok = v == "auto" or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0)
    return None if ok else "'auto' or a number from 0.0 to 1.0"


def _parse_auto_or_float(text: str) -> str | float:
    """A flag's ``auto`` or number (argparse reports a ValueError as an invalid value)."""
    return "auto" if text == "auto" else float(text)


def _int_range(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"an integer from {lo} to {hi}"

    return check


def _float_range(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi
        return None if ok else f"a number from {lo} to {hi}"

    return check


def _choice(*choices: Any) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    check.choices = choices  # type: ignore[attr-defined]  # the command line offers them
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def _str(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def _device(v: Any) -> str | None:
    if isinstance(v, str):
        kind, _, index = v.partition(":")
        if kind in DEVICES and (not index or (kind in ("npu", "cuda") and index.isascii() and index.isdigit())):
            return None
    return "one of 'auto', 'npu', 'cuda', 'mps', 'cpu' (or 'cuda:N' / 'npu:N')"


def _display(v: Any) -> str | None:
    return None if v == "auto" or isinstance(v, bool) else "'auto', true or false"


def _suffix(*suffixes: str) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, str) and (not v or Path(v).suffix.lower() in suffixes):
            return None
        return "a path ending in " + " or ".join(suffixes) + ' (or "" for none)'

    return check


@dataclass(frozen=True)
class SourceConfig:
    input: str = _setting("", 'webcam index ("0"), video file, or URL; --source overrides', _str)
    max_frames: int = _setting(0, "stop after this many frames (0 = the whole stream)", _int_range(0, 2**62))
    live: bool = _setting(False, "play a file at its own frame rate, as a camera (newest frame wins; cameras are always live)", _bool)
    id: str = _setting("", 'source id in events, metrics and file names ("" = cam1, cam2, ... in order)', _str)
    transport: str = _setting("tcp", "RTSP transport: tcp | udp | http", _choice("tcp", "udp", "http"))
    open_timeout_s: float = _setting(10.0, "network sources: longest wait for a camera to answer", _float_range(0.5, 3600.0))
    stall_timeout_s: float = _setting(10.0, "network sources: no frame for this long is an outage", _float_range(0.5, 3600.0))
    reconnect_initial_s: float = _setting(1.0, "first pause before reconnecting; doubles after each failure", _float_range(0.1, 3600.0))
    reconnect_max_s: float = _setting(30.0, "longest pause between reconnection attempts", _float_range(0.1, 86400.0))
    max_pixels: int = _setting(
        7680 * 4320, "refuse frames larger than this many pixels (7680*4320, 8K UHD; 0 = any size)", _int_range(0, 2**40)
    )
    max_reconnects: int = _setting(-1, "failed attempts in a row before giving up (-1 = never give up)", _int_range(-1, 2**31))
    max_outage_s: float = _setting(
        0.0, "network sources: give up once an outage has lasted this long, seconds (0 = never)", _float_range(0.0, 10**9)
    )
    batch_max_reconnects: int = _setting(
        3, "batch: max_reconnects for URL inputs; one that still fails is recorded as failed (-1 = never give up)", _int_range(-1, 2**31)
    )
    batch_max_outage_s: float = _setting(60.0, "batch: max_outage_s for URL inputs (0 = never)", _float_range(0.0, 10**9))


@dataclass(frozen=True)
class ClassifierConfig:
    model: str = _setting(DEFAULT_MODEL, "Hugging Face hub id or local folder (safetensors weights)", _str)
    device: str = _setting("auto", "auto | npu | cuda | mps | cpu (auto tries them in that order)", _device)
    max_batch: int = _setting(8, "most faces per classifier batch (above 8 risks NPU out-of-memory)", _int_range(1, 256))
    batch_wait_ms: int = _setting(50, "longest wait for more faces before a partial batch runs", _int_range(0, 10_000))
    threshold: float | str = _setting(
        "auto",
        "predictions under this confidence are flagged (auto = the model's own, from its config.json, else 0.7)",
        _auto_or_fraction,
        parse=_parse_auto_or_float,
    )
    tta: str = _setting("none", "test-time augmentation: none | flip (each face and its mirror image, averaged)", _choice("none", "flip"))
    warmup: bool = _setting(
        True,
        "run one full batch before the first frame (compiles NPU kernels)",
        _bool,
        off="skip the warm-up batch before the first frame (an NPU then compiles on the first faces)",
    )
    backend: str = _setting(
        "auto",
        "auto | torch | onnxruntime (auto: ONNX Runtime on the CPU when the model is, or its folder ships, an exported .onnx file)",
        _choice("auto", "torch", "onnxruntime"),
    )
    precision: str = _setting(
        "fp32",
        "fp32 | fp16 | bf16 | int8 (int8, CPU only: the folder's model_int8.onnx through ONNX Runtime, else torch's dynamic quantization)",
        _choice(*PRECISIONS),
    )
    threads: int = _setting(0, "CPU threads for the classifier (0 = auto: all cores; live, all but one)", _int_range(0, 1024))
    tensor_preprocess: bool = _setting(True, "resize and normalize crops as torch tensors (false = the model's own processor)", _bool)
    classify_every: int = _setting(
        1, "files: classify each track on every Nth frame, reusing the result between (1 = every frame)", _int_range(1, 10_000)
    )
    live_max_hz: float = _setting(
        5.0, "live: most classifications per track per second (0 = as fast as the device goes)", _float_range(0.0, 1000.0)
    )


@dataclass(frozen=True)
class TrackingConfig:
    iou_threshold: float = _setting(0.3, "least box overlap (IoU) that continues a track", _float_range(0.01, 1.0))
    max_missed: int = _setting(15, "frames a track survives without its face being detected", _int_range(0, 100_000))
    smoothing: str = _setting("ema", "per-track smoothing of probabilities: ema | window | off (raw results)", _choice(*SMOOTHING))
    ema_alpha: float = _setting(0.5, "ema: weight of the newest classification (1 = no smoothing)", _float_range(0.01, 1.0))
    window: int = _setting(5, "window: number of recent classifications averaged", _int_range(1, 1000))


@dataclass(frozen=True)
class DetectorConfig:
    kind: str = _setting(
        "auto",
        "short | full | tiled | auto (short for webcams, tiled for files, cameras and images)",
        _choice("auto", "short", "full", "tiled"),
    )
    model: str = _setting("", 'blaze_face_short_range.tflite path ("" = $FER_STREAM_DETECTOR_MODEL or the cached download)', _str)
    full_model: str = _setting(
        "", 'face_detection_full_range_sparse.tflite path ("" = $FER_STREAM_FULL_RANGE_MODEL or the cached download)', _str
    )
    landmark_model: str = _setting("", 'face_landmark.tflite path ("" = $FER_STREAM_LANDMARK_MODEL or the cached download)', _str)
    min_confidence: float = _setting(0.5, "minimum face-detection score of the short-range model", _float_range(0.0, 1.0))
    full_min_confidence: float = _setting(
        0.6, "minimum face-detection score of the full-range model (full and tiled)", _float_range(0.0, 1.0)
    )
    crop_margin: float = _setting(0.1, "grow each face box by this fraction on every side before cropping", _float_range(0.0, 1.0))
    tile_size: int = _setting(640, "tiled: tile side in frame pixels (smaller finds smaller faces, costs more)", _int_range(64, 8192))
    tile_overlap: float = _setting(0.2, "tiled: overlap of neighbouring tiles, as a fraction of a tile", _float_range(0.0, 0.9))
    verify: bool = _setting(
        True,
        "check every box with MediaPipe's face landmark model and follow faces by their landmarks",
        _bool,
        off="no face landmark model: the detector's boxes as they are, the detector on every frame",
    )
    min_presence: float = _setting(
        0.5, "least face-presence score (face landmark model) of a box; boxes under it are dropped", _float_range(0.0, 1.0)
    )
    rescan_every: int = _setting(
        10, "frames between detector runs while faces are followed by their landmarks (1 = every frame)", _int_range(1, 100_000)
    )
    align: bool = _setting(
        True,
        "cut the classifier's crop along the eye line, sized by the landmarks",
        _bool,
        off="no alignment: crops cut along the frame's axes",
    )
    threads: int = _setting(1, "LiteRT threads of the full-range and face landmark models", _int_range(1, 64))


@dataclass(frozen=True)
class QualityConfig:
    min_face_px: int = _setting(
        20, "faces whose box is narrower or shorter than this are unusable (not classified)", _int_range(0, 100_000)
    )
    min_sharpness: float = _setting(
        10.0, "faces less sharp than this (variance of the Laplacian at 64x64) are unusable", _float_range(0.0, 1e6)
    )
    min_score: float = _setting(0.0, "faces the detector scored under this are unusable (0 = all it reports)", _float_range(0.0, 1.0))
    max_yaw: float = _setting(
        45.0, "faces turned further than this (degrees, from the landmarks) are unusable: profile (0 = no check)", _float_range(0.0, 180.0)
    )


@dataclass(frozen=True)
class QueuesConfig:
    max_mb: int = _setting(
        1024, "most megabytes of frames all queues of one source hold; big frames get shorter queues", _int_range(16, 1 << 20)
    )
    frames: int = _setting(8, "decoded frames waiting for detection", _int_range(1, 1024))
    faces: int = _setting(16, "detected frames waiting for classification", _int_range(1, 1024))
    results: int = _setting(8, "classified frames waiting for overlay and output", _int_range(1, 1024))


@dataclass(frozen=True)
class DisplayConfig:
    enabled: Any = _setting(
        "auto",
        'on-screen window: "auto" (on for webcams with a screen), true or false',
        _display,
        flag_help="show the video in a window; --no-display: never (default: for webcams, when there is a screen)",
    )
    title: str = _setting("fer-stream", "window title", _str)


@dataclass(frozen=True)
class OutputConfig:
    video: str = _setting("", 'annotated MP4 to write ("" = none)', _suffix(".mp4", ".m4v", ".mov", ".mkv"))
    events: str = _setting("", 'per-face event log, .jsonl or .csv ("" = none)', _suffix(".jsonl", ".csv"))
    episodes: str = _setting(
        "", 'expression episodes and alerts, one JSON line each: start, update, end, alert ("" = none)', _suffix(".jsonl")
    )
    summary: str = _setting("", 'summary JSON written at the end ("" = none)', _suffix(".json"))
    report: str = _setting(
        "", 'self-contained HTML report: timelines per track, flagged moments, settings ("" = none)', _suffix(".html", ".htm")
    )
    timeline: str = _setting(
        "", 'CSV with each track\'s mean probabilities and dominant label per time bucket ("" = none)', _suffix(".csv")
    )
    timeline_seconds: float = _setting(1.0, "length of a timeline bucket, seconds", _float_range(0.04, 86400.0))
    overwrite: bool = _setting(False, "replace outputs that already exist (otherwise an existing output is an error)", _bool)
    audio: bool = _setting(
        True, "copy the input's audio stream into the annotated MP4", _bool, off="leave the input's audio out of the annotated MP4"
    )
    crf: int = _setting(20, "H.264 quality: lower is better and larger (0-51)", _int_range(0, 51))
    preset: str = _setting("veryfast", "x264 speed preset (ultrafast ... veryslow)", _choice(*X264_PRESETS))
    progress: bool = _setting(True, "progress bar for files", _bool, off="no progress bar")
    segment_seconds: float = _setting(
        0.0, "cut the MP4 into segments of this length, named by source and start time (0 = one file)", _float_range(0.0, 10**7)
    )
    landmarks: bool = _setting(False, "put each face's 468 landmarks in the event log (large)", _bool)
    draw_rejected: bool = _setting(False, "draw the boxes the face landmark model rejected (dashed red)", _bool)
    privacy: str = _setting(
        "off",
        "hide faces in every picture made (MP4, preview, dashboard, report, review): off | blur | pixelate",
        _choice("off", "blur", "pixelate"),
    )
    face_images: bool = _setting(
        True,
        "keep face pictures; false: faces painted grey everywhere and no face crop kept",
        _bool,
        off="no face picture anywhere: faces painted grey in every picture, no thumbnails, no review store",
    )


def _address(v: Any) -> str | None:
    if isinstance(v, str):
        port = v.rpartition(":")[2]
        if v == "" or (port.isascii() and port.isdigit() and int(port) <= 65535):
            return None
    return 'PORT or HOST:PORT, e.g. 9108 or 0.0.0.0:9108 ("" = off)'


def _hosts(v: Any) -> str | None:
    if isinstance(v, str) and all(re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?", h) for h in re.split(r"[\s,]+", v) if h):
        return None
    return 'host names or addresses separated by commas, e.g. "cams.example.com, 10.0.0.21" '


@dataclass(frozen=True)
class ServeConfig:
    address: str = _setting("", 'serve /healthz, /metrics and /sources/<id>/mjpeg on HOST:PORT ("" = off)', _address)
    token: str = _setting("", 'require this token (Authorization: Bearer or ?token=); "" = $FER_STREAM_SERVE_TOKEN or none', _str)
    max_clients: int = _setting(32, "most connections served at once; more are turned away", _int_range(1, 4096))
    max_viewers: int = _setting(8, "most MJPEG previews watched at once", _int_range(0, 1024))
    allowed_hosts: str = _setting(
        "", 'more names the Host header may give, comma-separated (e.g. behind a proxy; "" = this machine\'s)', _hosts
    )


@dataclass(frozen=True)
class ReviewConfig:
    dir: str = _setting("", 'keep flagged faces for people to review in this folder (a review store; "" = off)', _str)
    every_s: float = _setting(2.0, "keep at most one face per track every this many seconds of the stream", _float_range(0.0, 86400.0))
    max_faces: int = _setting(
        200, "most unreviewed faces a run keeps; when full, its oldest unreviewed face is dropped", _int_range(1, 1_000_000)
    )


@dataclass(frozen=True)
class EpisodesConfig:
    min_faces: int = _setting(3, "classifications of a track before its label can be agreed", _int_range(1, 1000))
    agreement: float = _setting(0.6, "least share of a track's weighted vote (face size and sharpness) for a label", _float_range(0.0, 1.0))
    min_s: float = _setting(1.5, "a new label must hold this many seconds of the stream to change an episode", _float_range(0.0, 3600.0))
    gone_s: float = _setting(1.0, "a track not seen for this many seconds has ended (its episode's end)", _float_range(0.0, 3600.0))
    window: int = _setting(15, "the vote: each track's last this many classifications", _int_range(1, 10_000))


def _mqtt_url(v: Any) -> str | None:
    ok = isinstance(v, str) and (not v or re.match(r"mqtts?://[^/\s]+", v) is not None)
    return None if ok else "an mqtt://[user:pass@]host[:port][/prefix] URL (mqtts:// for TLS)"


def _http_url(v: Any) -> str | None:
    ok = isinstance(v, str) and (not v or re.match(r"https?://[^/\s]+", v) is not None)
    return None if ok else "an http:// or https:// URL"


@dataclass(frozen=True)
class PublishConfig:
    mqtt: str = _setting("", 'publish episodes, alerts and state to this MQTT broker ("" = off; $FER_STREAM_MQTT_URL)', _mqtt_url)
    mqtt_discovery: bool = _setting(False, "announce each camera's expression and face count to Home Assistant (MQTT discovery)", _bool)
    webhook: str = _setting("", 'POST episodes and alerts as JSON to this URL ("" = off)', _http_url)
    webhook_secret: str = _setting(
        "", 'sign each POST: X-Fer-Stream-Signature: sha256=HMAC of the body ("" = $FER_STREAM_WEBHOOK_SECRET or unsigned)', _str
    )
    queue: int = _setting(
        1000, "records each publisher holds while its receiver is away; beyond, new ones are dropped", _int_range(1, 1_000_000)
    )


# The command-line flag of each setting that has one, "FLAG METAVAR"; the help text, the default
# and the choices come from the setting above (fer_stream.cli builds the flags from both). A
# true/false setting's plain flag sets it true, a "--no-..." flag false, "--x/--no-x" either; a
# "-q/--quiet" pair is a short and a long name for one flag.
FLAGS: dict[str, str] = {
    "source.max_frames": "--max-frames N",
    "source.max_pixels": "--max-pixels N",
    "source.live": "--live",
    "source.transport": "--transport",
    "source.stall_timeout_s": "--stall-timeout S",
    "source.max_reconnects": "--max-reconnects N",
    "classifier.model": "--model MODEL",
    "classifier.device": "--device DEVICE",
    "classifier.max_batch": "--max-batch N",
    "classifier.batch_wait_ms": "--batch-wait-ms MS",
    "classifier.threshold": "--threshold P",
    "classifier.tta": "--tta",
    "classifier.warmup": "--no-warmup",
    "classifier.backend": "--backend",
    "classifier.precision": "--precision",
    "classifier.threads": "--threads N",
    "classifier.classify_every": "--classify-every N",
    "classifier.live_max_hz": "--live-max-hz HZ",
    "tracking.smoothing": "--smoothing",
    "detector.kind": "--detector",
    "detector.model": "--detector-model PATH",
    "detector.full_model": "--full-range-model PATH",
    "detector.min_confidence": "--min-detection-confidence P",
    "detector.crop_margin": "--crop-margin F",
    "detector.tile_size": "--tile-size PX",
    "detector.landmark_model": "--landmark-model PATH",
    "detector.verify": "--no-verify",
    "detector.min_presence": "--min-presence P",
    "detector.rescan_every": "--rescan-every N",
    "detector.align": "--no-align",
    "quality.min_face_px": "--min-face-px PX",
    "quality.min_sharpness": "--min-sharpness S",
    "quality.max_yaw": "--max-yaw DEG",
    "display.enabled": "--display/--no-display",
    "output.video": "--output OUT.mp4",
    "output.events": "--events OUT.jsonl",
    "output.summary": "--summary OUT.json",
    "output.episodes": "--episodes OUT.jsonl",
    "output.report": "--report OUT.html",
    "output.timeline": "--timeline OUT.csv",
    "output.timeline_seconds": "--timeline-seconds S",
    "output.overwrite": "--overwrite",
    "output.audio": "--no-audio",
    "output.crf": "--crf Q",
    "output.preset": "--preset",
    "output.progress": "-q/--quiet",
    "output.segment_seconds": "--segment-seconds S",
    "output.landmarks": "--landmarks",
    "output.draw_rejected": "--draw-rejected",
    "output.privacy": "--privacy",
    "output.face_images": "--no-face-images",
    "serve.address": "--serve [HOST:]PORT",
    "serve.token": "--serve-token TOKEN",
    "review.dir": "--review DIR",
    "publish.mqtt": "--mqtt URL",
    "publish.mqtt_discovery": "--mqtt-discovery",
    "publish.webhook": "--webhook URL",
    "publish.webhook_secret": "--webhook-secret SECRET",
}


def setting(dotted: str) -> dataclasses.Field[Any]:
    """The schema field of ``"table.key"`` (its default, and its help and check in ``metadata``)."""
    table, _, key = dotted.partition(".")
    return {f.name: f for f in dataclasses.fields(_sections()[table])}[key]


@dataclass(frozen=True)
class Config:
    """All settings, one attribute per ``config.toml`` table."""

    source: SourceConfig = field(default_factory=SourceConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    episodes: EpisodesConfig = field(default_factory=EpisodesConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    sources: tuple[tuple[str, str], ...] = ()  # [[sources]] tables: (id, input) for each camera
    alerts: tuple[AlertRule, ...] = ()  # [[alerts]] tables


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config) if f.name not in ("sources", "alerts")}  # type: ignore[misc]


def settings() -> list[tuple[str, Any, str]]:
    """Every setting as ``("table.key", default, help)``, in file order."""
    out = []
    for name, cls in _sections().items():
        for f in dataclasses.fields(cls):
            out.append((f"{name}.{f.name}", f.default, f.metadata["help"]))
    return out


def _validate(section: type, key: str, value: Any, origin: str, named: str = "") -> Any:
    """``value`` if the setting's check passes; the error names ``named`` (the flag and the setting)
    when the value came from a flag, else ``origin`` and the key."""
    fields = {f.name: f for f in dataclasses.fields(section)}
    f = fields[key]
    if isinstance(value, int) and not isinstance(value, bool) and isinstance(f.default, float):
        value = float(value)
    expected = f.metadata["check"](value) if f.metadata["check"] else None
    if expected:
        where = named or f"{origin}: '{key}'"
        shown = _masked(value) if isinstance(value, str) else value
        raise ConfigError(f"{where} must be {expected}, not {shown!r}")
    return value


def _masked(text: str) -> str:
    """``text`` with a URL's password and query values as ``***`` (a rejected value is shown to the user).

    >>> _masked("tcp://u:hunter2@broker/x?token=abc&a=1")
    'tcp://u:***@broker/x?token=***&a=***'
    """
    text = re.sub(r"(//[^/:@\s]*:)[^@/\s]*@", r"\1***@", text)
    return re.sub(r"([?&][^=&#\s]+=)[^&#\s]*", r"\1***", text)


def flag_name(dotted: str) -> str:
    """The long command-line flag of setting ``"table.key"`` ("" if it has none).

    >>> flag_name("output.video"), flag_name("output.progress"), flag_name("queues.frames")
    ('--output', '--quiet', '')
    """
    names = FLAGS.get(dotted, "").split(" ")[0].split("/")
    return next((n for n in names if n.startswith("--")), "")


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` ("table.key" -> value)."""
    values: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
    streams: list[tuple[str, str]] = []
    alerts: tuple[AlertRule, ...] = ()
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file '{p}' does not exist; check the --config path") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config file '{p}': {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file '{p}' is not valid TOML: {e}") from None
        streams = _streams(data.pop("sources", None), str(p))
        alerts = _alerts(data.pop("alerts", None), str(p))
        _merge(values, data, str(p))
    for dotted, value in (overrides or {}).items():
        if dotted == "sources":  # several --source flags replace the file's [[sources]]
            streams = list(value)
            continue
        table, _, key = dotted.partition(".")
        _merge(values, {table: {key: value}}, "command line", flag=flag_name(dotted))
    sections = _sections()
    return Config(**{name: sections[name](**kv) for name, kv in values.items()}, sources=tuple(streams), alerts=alerts)


def _streams(tables: Any, origin: str) -> list[tuple[str, str]]:
    """``[[sources]]`` tables -> ``(id, input)`` pairs; ids default to cam1, cam2, ..."""
    if tables is None:
        return []
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise ConfigError(f'{origin}: \'sources\' must be an array of tables: [[sources]] with id = "..." and input = "..."')
    out = []
    for n, t in enumerate(tables, 1):
        unknown = set(t) - {"id", "input"}
        if unknown:
            raise ConfigError(f"{origin}: [[sources]] number {n} has unknown key '{sorted(unknown)[0]}'; it knows id and input")
        sid, spec = t.get("id", default_id(n)), t.get("input")
        if not isinstance(spec, str) or not spec or not isinstance(sid, str) or not valid_id(sid):
            raise ConfigError(
                f'{origin}: [[sources]] number {n} needs input = "URL, file or webcam index" and an id of letters, digits, - and _'
            )
        out.append((sid, spec))
    check_unique_ids([sid for sid, _ in out], f"{origin}: [[sources]]")
    return out


@dataclass(frozen=True)
class AlertRule:
    """One ``[[alerts]]`` table (see :mod:`fer_stream.stream.alerts`)."""

    label: str
    min_seconds: float = 0.0
    min_confidence: float = 0.0
    min_faces: int = 1
    sources: tuple[str, ...] = ()
    cooldown_s: float = 60.0
    name: str = ""

    @property
    def title(self) -> str:
        return self.name or f"{self.label} for {self.min_seconds:g} s"


ALERT_KEYS: dict[str, tuple[Any, str]] = {
    "label": (str, 'a label of the model, or "*" for any'),
    "name": (str, "a name for the alert"),
    "min_seconds": ((int, float), "seconds the label has held"),
    "min_confidence": ((int, float), "a confidence from 0 to 1"),
    "min_faces": (int, "a count of classifications"),
    "sources": (list, "a list of source ids"),
    "cooldown_s": ((int, float), "seconds before the rule fires again on a source"),
}


def _alerts(tables: Any, origin: str) -> tuple[AlertRule, ...]:
    """``[[alerts]]`` tables -> rules, every key checked."""
    if tables is None:
        return ()
    if not isinstance(tables, list) or not all(isinstance(t, Mapping) for t in tables):
        raise ConfigError(f"{origin}: 'alerts' must be an array of tables: [[alerts]] with label = \"angry\", min_seconds = 5, ...")
    rules = []
    for n, t in enumerate(tables, 1):
        for key, value in t.items():
            kind, what = ALERT_KEYS.get(key, (None, ""))
            if kind is None:
                raise ConfigError(f"{origin}: [[alerts]] number {n} has unknown key '{key}'; it knows {', '.join(ALERT_KEYS)}")
            bad = not isinstance(value, kind) or isinstance(value, bool)
            bad = bad or (key == "sources" and not all(isinstance(v, str) for v in value))
            bad = bad or (key == "min_confidence" and not 0 <= value <= 1) or (not bad and isinstance(value, (int, float)) and value < 0)
            if bad:
                raise ConfigError(f"{origin}: [[alerts]] number {n}: '{key}' must be {what}, not {value!r}")
        if not t.get("label"):
            raise ConfigError(f'{origin}: [[alerts]] number {n} needs label = "..." (a label of the model, or "*" for any)')
        rules.append(AlertRule(**{**t, "sources": tuple(t.get("sources", ()))}))
    return tuple(rules)


def default_id(n: int) -> str:
    """The id of the ``n``-th source (from 1) when none is given: cam1, cam2, ..."""
    return f"cam{n}"


def check_unique_ids(ids: list[str], origin: str) -> None:
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{origin} ids must differ; got {', '.join(ids)}")


def source_ids(cfg: Config) -> list[tuple[str, str]]:
    """``(id, input)`` for every source: ``[[sources]]`` / repeated ``--source``, else ``[source].input``."""
    if cfg.sources:
        return list(cfg.sources)
    if not cfg.source.input:
        raise SourceError("no source given; use --source 0 for a webcam, --source FILE for a video, or --source rtsp://...")
    sid = cfg.source.id or default_id(1)
    if not valid_id(sid):
        raise ConfigError(f"source id '{sid}' must be letters, digits, - and _ (it names files and metrics)")
    return [(sid, cfg.source.input)]


def output_path(template: str, sid: str, several: bool, what: str) -> str:
    """An output path for source ``sid``: ``{source}`` replaced; with several sources it must be there.

    >>> output_path("out/{source}.mp4", "door", True, "--output")
    'out/door.mp4'
    """
    if not template:
        return ""
    if several and "{source}" not in template:
        raise ConfigError(f"with several sources, put {{source}} in the {what} path (e.g. out/{{source}}.mp4) so each camera has its own")
    return template.replace("{source}", sid)


def valid_id(text: str) -> bool:
    """Source ids go into file names, metric labels and URLs: letters, digits, ``-`` and ``_``."""
    return bool(text) and len(text) <= 64 and all(c.isalnum() or c in "-_" for c in text)


def _merge(values: dict[str, dict[str, Any]], data: Mapping[str, Any], origin: str, flag: str = "") -> None:
    sections = _sections()
    for table, content in data.items():
        if table not in sections:
            known = ", ".join(f"[{t}]" for t in sections)
            raise ConfigError(f"{origin}: unknown table [{table}]; known tables: {known}")
        if not isinstance(content, Mapping):
            raise ConfigError(f"{origin}: '{table}' must be a table like [{table}]")
        names = [f.name for f in dataclasses.fields(sections[table])]
        for key, value in content.items():
            if key not in names:
                raise ConfigError(f"{origin}: unknown key '{table}.{key}'; [{table}] knows: {', '.join(names)}")
            named = f"{flag} ({table}.{key})" if flag else ""
            values[table][key] = _validate(sections[table], key, value, f"{origin} [{table}]", named)


def render(cfg: Config | None = None) -> str:
    """Settings as commented TOML; with no argument, the defaults (what ``config.toml`` holds)."""
    cfg = cfg or Config()
    lines = [
        "# fer-stream settings: every key with its default. Load another file with",
        "# `fer-stream --config PATH`; command-line flags override what a file says.",
        "# Several cameras in one process: add one table per camera (ids name their outputs),",
        "#   [[sources]]",
        '#   id = "door"',
        '#   input = "rtsp://10.0.0.7/stream1"',
        "# and put {source} in output.video and output.events.",
    ]
    current = None
    for dotted, _default, help in settings():
        table, key = dotted.split(".")
        if table != current:
            lines += ["", f"[{table}]"]
            current = table
        lines.append(f"{key} = {_toml_value(getattr(getattr(cfg, table), key))}  # {help}")
    lines += [
        "",
        "# Alerts: one table per rule; an alert record when an episode's label has held long enough",
        "# (keys: label, name, min_seconds, min_confidence, min_faces, sources, cooldown_s), e.g.",
        "#   [[alerts]]",
        '#   label = "angry"',
        "#   min_seconds = 5",
        "#   min_confidence = 0.6",
        '#   sources = ["door"]',
        "#   cooldown_s = 300",
    ]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def with_settings(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """``cfg`` with some settings changed ("table.key" -> value, checked as a file's would be).

    >>> with_settings(Config(), {"output.crf": 30}).output.crf
    30
    """
    sections = _sections()
    changed: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        table, _, key = dotted.partition(".")
        if table not in sections or key not in {f.name for f in dataclasses.fields(sections[table])}:
            raise ConfigError(f"unknown setting '{dotted}'")
        changed.setdefault(table, {})[key] = _validate(sections[table], key, value, f"[{table}]")
    return dataclasses.replace(cfg, **{t: dataclasses.replace(getattr(cfg, t), **kv) for t, kv in changed.items()})


def reference_markdown() -> str:
    """The settings reference of ``docs/configuration.md``: a Markdown table per ``config.toml``
    table, each setting with its default, its flag and its help (``docs/make_config_reference.py``
    writes it into the page; ``tests/test_docs.py`` checks the page holds it).

    >>> print(reference_markdown().splitlines()[4])
    | `source.input` | `""` | `--source [ID=]SRC` | webcam index ("0"), video file, or URL; --source overrides |
    """
    blocks = []
    for table, cls in _sections().items():
        rows = [f"### `[{table}]`", "", "| setting | default | flag | what it does |", "| --- | --- | --- | --- |"]
        for f in dataclasses.fields(cls):
            dotted = f"{table}.{f.name}"
            default, help = _toml_value(f.default), _markdown_text(f.metadata["help"])
            rows.append(f"| `{dotted}` | `{default}` | {_flag_cell(dotted, f)} | {help} |")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


def _flag_cell(dotted: str, f: dataclasses.Field[Any]) -> str:
    """A setting's flags as the command line spells them: ``--max-frames N``, ``--transport {tcp,udp,http}``."""
    if dotted in ("source.input", "source.id"):  # the command line's own --source, repeatable, not in FLAGS
        return "`--source [ID=]SRC`"
    names, _, metavar = FLAGS.get(dotted, "").partition(" ")
    if not names:
        return "file only"
    choices = getattr(f.metadata["check"], "choices", None)
    arg = metavar or ("{" + ",".join(map(str, choices)) + "}" if choices else "")
    return " / ".join(f"`{n} {arg}`" if arg else f"`{n}`" for n in names.split("/"))


def _markdown_text(text: str) -> str:
    """``text`` safe in a Markdown table cell: no column breaks, HTML tags or emphasis."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")
