"""The engine process exits when its parent (the Node host) dies, so no orphan keeps memory or a GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYTHON_DIR = str(Path(__file__).resolve().parents[1])

# The parent starts the engine child, reports the child's pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import sys, time
import arc_ttft.entry
print("ready", flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): fall back to signal 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process model")
@pytest.mark.parametrize("mode", ["1", "poll"])
def test_child_exits_when_parent_is_killed(mode: str) -> None:
    env = {**os.environ, "ARC_TTFT_WATCHDOG": mode, "PYTHONPATH": PYTHON_DIR}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], stdout=subprocess.PIPE, text=True, env=env)
    try:
        child_pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "ready"  # the child shares the parent's stdout
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10  # generous: the watchdog polls every 0.5 s, this box is shared
        while _alive(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child_pid), f"engine child {child_pid} outlived its parent (mode {mode})"
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        try:
            os.kill(child_pid, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass


def test_watchdog_can_be_turned_off() -> None:
    env = {**os.environ, "ARC_TTFT_WATCHDOG": "0", "PYTHONPATH": PYTHON_DIR}
    code = "import threading, arc_ttft.entry; print([t.name for t in threading.enumerate()])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "arc-ttft-watchdog" not in out.stdout
    env["ARC_TTFT_WATCHDOG"] = "poll"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert "arc-ttft-watchdog" in out.stdout
