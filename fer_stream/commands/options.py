"""What the commands' parsers share: flags made from the settings schema, the model flags, and the
settings a command line overrides (:func:`overrides`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fer_stream.config import FLAGS, check_unique_ids, default_id, setting, valid_id

# Settings every model-using command takes as flags (see config.FLAGS).
MODEL_SETTINGS = (
    "classifier.model",
    "classifier.device",
    "classifier.max_batch",
    "classifier.precision",
    "classifier.backend",
    "classifier.threads",
    "classifier.threshold",
    "classifier.tta",
    "detector.kind",
    "detector.model",
    "detector.full_model",
    "detector.tile_size",
    "quality.min_face_px",
    "quality.min_sharpness",
    "detector.min_confidence",
    "detector.crop_margin",
    "detector.landmark_model",
    "detector.verify",
    "detector.min_presence",
    "detector.rescan_every",
    "detector.align",
    "quality.max_yaw",
)
_DEST = "setting:"  # argparse destination prefix of a flag that sets "table.key"

T = TypeVar("T")


class _Adds(Protocol):
    """A parser or an argument group: what takes flags."""

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action: ...


def setting_flags(p: _Adds, names: Sequence[str]) -> None:
    """Add the flags of ``names`` ("table.key"), with the schema's help, default and choices."""
    for dotted in names:
        field = setting(dotted)
        spec = FLAGS[dotted].split(" ", 1)
        flags, metavar = spec[0].split("/"), (spec[1] if len(spec) > 1 else None)
        help_text = field.metadata.get("flag_help") or field.metadata["help"].replace(' ("" = none)', "").replace(' ("" = off)', "")
        default = field.default
        kw: dict[str, Any] = {"dest": _DEST + dotted, "default": None}
        if len(flags) == 2 and flags[1] == "--no-" + flags[0].removeprefix("--"):  # --x/--no-x: either way
            kw["action"] = argparse.BooleanOptionalAction
            flags = flags[:1]
        elif isinstance(default, bool):  # the flag turns the setting away from its default
            kw["action"] = "store_false" if default else "store_true"
            if default:  # says what it turns off, in its own words
                help_text = field.metadata.get("off") or ""
                if not help_text:
                    raise ValueError(f"setting {dotted} needs off= help for its flag {spec[0]}")
        else:
            kw["type"] = field.metadata.get("parse") or (type(default) if default is not None else str)
            choices = getattr(field.metadata["check"], "choices", None)
            if choices:
                kw["choices"] = choices
            elif metavar:
                kw["metavar"] = metavar
            if default not in ("", None):
                help_text += f" (default {default})"
        p.add_argument(*flags, help=help_text, **kw)


def model_flags(p: argparse.ArgumentParser) -> None:
    """The "models and settings" group: --config, every model setting, --debug."""
    g = p.add_argument_group("models and settings")
    g.add_argument("--config", metavar="PATH", help="settings file (TOML); flags override it")
    setting_flags(g, MODEL_SETTINGS)
    g.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def csv_list(kind: Callable[[str], T], choices: Sequence[T] | None = None) -> Callable[[str], list[T]]:
    """An argparse type: ``1,8`` -> ``[1, 8]``, each value one of ``choices`` if given."""

    def parse(text: str) -> list[T]:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, like 1,8 (got {text!r})") from None
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(map(str, choices or []))} (got {text!r})")
        return values

    return parse


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the command line gives: each setting flag's value, and the ``--source`` list."""
    out = {dest[len(_DEST) :]: value for dest, value in vars(args).items() if dest.startswith(_DEST) and value is not None}
    sources = getattr(args, "source", None)
    if sources:
        named = [named_source(text) for text in sources]
        if len(named) == 1 and named[0][0] is None:
            out["source.input"] = named[0][1]
        elif len(named) == 1:
            out["source.id"], out["source.input"] = named[0]
        else:
            ids = [sid or default_id(n) for n, (sid, _) in enumerate(named, 1)]
            check_unique_ids(ids, "--source")
            out["sources"] = [(sid, spec) for sid, (_, spec) in zip(ids, named)]
    return out


def named_source(text: str) -> tuple[str | None, str]:
    """``door=rtsp://...`` -> ("door", "rtsp://..."); a plain source has no name."""
    name, sep, rest = text.partition("=")
    if sep and valid_id(name) and not Path(text).exists():
        return name, rest
    return None, text
