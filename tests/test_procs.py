"""The tests' own process handling (conftest.Procs): nothing a test starts outlives it."""

from __future__ import annotations

import os
import signal
import sys

import pytest
from conftest import Procs, run_cli, wait_until

# A parent that starts a child in the background and ignores SIGTERM, as a stuck program would.
FAMILY = (
    "import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(c.pid, flush=True); time.sleep(600)"
)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")  # a zombie is dead, waiting for its (new) parent to reap it
    except FileNotFoundError:
        return True


def test_a_failing_test_leaves_no_process_behind():
    import subprocess

    with pytest.raises(RuntimeError), Procs(grace=1.0) as procs:
        parent = procs.start([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, text=True)
        child = int(parent.stdout.readline())
        assert not _gone(parent.pid) and not _gone(child)
        raise RuntimeError("the test fails here")
    assert parent.returncode == -signal.SIGKILL  # SIGTERM ignored: killed after the grace period, and reaped
    wait_until(lambda: _gone(child), 60, "the child in the same group to die")
    assert not procs.started and parent.stdout.closed


def test_run_kills_the_whole_group_on_timeout():
    import subprocess

    with Procs(grace=1.0) as procs:
        with pytest.raises(subprocess.TimeoutExpired) as e:
            procs.run([sys.executable, "-c", FAMILY], timeout=15, capture_output=True, text=True)
        child = int(e.value.stdout.split()[0])  # what it printed before the timeout comes with the error
    wait_until(lambda: _gone(child), 60, "the child to die with its parent")


def test_run_cli_returns_what_the_command_printed():
    r = run_cli(["--version"], dict(os.environ), timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("fer-stream ")


def test_the_procs_fixture_stops_what_a_test_left_running(procs):
    proc = procs.start([sys.executable, "-c", "import time; time.sleep(600)"])
    assert procs.started == [proc] and proc.poll() is None  # the fixture's teardown stops it
