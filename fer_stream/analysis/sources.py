"""The sources of a run: each configured spec opened (network URLs reconnect), and whether to show a window."""

from __future__ import annotations

from fer_stream.config import Config
from fer_stream.io.reconnect import ReconnectingSource
from fer_stream.io.sinks import display_available
from fer_stream.io.sources import NETWORK_SCHEMES, Source, WebcamSource, open_source


def open_spec(cfg: Config, sid: str, spec: str) -> Source:
    """A source for ``spec``; network URLs reconnect after outages."""
    s = cfg.source
    if spec.strip().lower().startswith(NETWORK_SCHEMES):
        src = ReconnectingSource(
            spec.strip(),
            source_id=sid,
            transport=s.transport,
            open_timeout=s.open_timeout_s,
            stall_timeout=s.stall_timeout_s,
            backoff_initial=s.reconnect_initial_s,
            backoff_max=s.reconnect_max_s,
            max_reconnects=None if s.max_reconnects < 0 else s.max_reconnects,
            max_outage_s=s.max_outage_s or None,
            max_pixels=s.max_pixels,
        )
        return src  # connects on its reading thread, once the models are loaded (no stale burst of frames)
    return open_source(spec, live=True if s.live else None, max_pixels=s.max_pixels)


def want_display(cfg: Config, source: Source) -> bool:
    """Whether to show ``source`` in a window: as the settings say, or ``auto``: a webcam, where a screen is."""
    setting = cfg.display.enabled
    if setting == "auto":
        return isinstance(source, WebcamSource) and display_available()
    return bool(setting)
