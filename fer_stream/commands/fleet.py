"""``fer-stream fleet GROUP.toml...``: camera groups across a Ray cluster, each group one actor
(:class:`fer_stream.analysis.ray.CameraGroup`) serving its own /healthz and /metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fer_stream.analysis.ray import connect, start_groups
from fer_stream.analysis.signals import StopOnSignal
from fer_stream.config import Config, load_config
from fer_stream.errors import ConfigError, counted, first_line, printable
from fer_stream.serve.monitor import check_token


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-stream fleet",
        description="Run camera groups across a Ray cluster: each GROUP.toml (its [[sources]], outputs and [serve] "
        "address) becomes one Ray actor that analyses its cameras and serves its own /healthz and /metrics. "
        "Ctrl-C stops every group; outputs are finalized.",
    )
    p.add_argument("groups", nargs="+", metavar="GROUP.toml", help="one settings file per camera group (its name: the file name)")
    p.add_argument(
        "--ray",
        default="auto",
        metavar="auto|ADDRESS",
        help="the cluster: auto (a Ray of this machine's own, or the one $RAY_ADDRESS names), HOST:PORT or ray://HOST:10001",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


def handle(cfg: Config, args: argparse.Namespace) -> int:
    return run_fleet(args.groups, args.ray)


def run_fleet(paths: list[str], address: str) -> int:
    """``fer-stream fleet``: every group config as an actor until they end or Ctrl-C; exit 1 if any failed."""
    cfgs = {}
    for p in paths:
        name = Path(p).stem
        if name in cfgs:
            raise ConfigError(f"two group configs are named '{name}'; group names come from the file names")
        cfgs[name] = load_config(p)
        if not cfgs[name].sources and not cfgs[name].source.input:
            raise ConfigError(f"group config '{p}' names no cameras; add [[sources]] tables")
        if not cfgs[name].serve.address:
            raise ConfigError(f"group config '{p}' has no [serve] address; give each group its own, e.g. \"0.0.0.0:9108\"")
        try:
            check_token(cfgs[name].serve.token)  # a weak token fails here, not on some node later
        except ConfigError as e:
            raise ConfigError(f"group config '{p}': {e}") from None
    ray = connect(address)
    actors = start_groups(cfgs, address)
    runs = {actors[name].run.remote(): name for name in cfgs}
    for name, actor in actors.items():
        print(f"group {printable(name)}: /healthz and /metrics at {ray.get(actor.where.remote())}", flush=True)
    failed = 0
    with StopOnSignal() as signals:
        stopping = False
        while runs:
            if signals.signum is not None and not stopping:
                stopping = True
                for actor in actors.values():
                    actor.stop.remote()
            done, _ = ray.wait(list(runs), num_returns=1, timeout=0.5)
            for ref in done:
                name = runs.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as e:
                    failed += 1
                    print(f"fer-stream: error: group {printable(name)}: {printable(first_line(e, last=True))}", file=sys.stderr)
                    continue
                s = result["summary"]
                frames, faces = counted(s["frames_out"], "frame"), counted(s["faces"], "face")
                print(f"group {printable(name)}: {frames}, {faces}, {s['flagged']} flagged", flush=True)
                for err in result["errors"]:
                    failed += 1
                    print(f"fer-stream: error: group {printable(name)}: {printable(err)}", file=sys.stderr)
    for actor in actors.values():
        ray.kill(actor)
    if signals.signum is not None:
        return 128 + signals.signum
    return 1 if failed else 0
