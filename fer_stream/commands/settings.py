"""``fer-stream config``: the effective settings (defaults, ``--config`` file, flags) printed as TOML."""

from __future__ import annotations

import argparse
import sys

from fer_stream.commands.options import model_flags
from fer_stream.config import Config, render


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream config", description="Print the effective settings (defaults, --config file, flags) as TOML."
    )
    model_flags(p)
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    sys.stdout.write(render(cfg))
    return 0
