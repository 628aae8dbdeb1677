"""Who owns a lab: the sweep at every lab's start removes the labs (containers, volumes,
local directories) whose owner process is gone, so "gone" must never be said of a live
owner. A CI run saw it said: a worker's local lab swept in the middle of a cell, its lib/
removed under the server, after the boot time Linux derives from the wall clock had moved
by a second."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
from wraplab.labs import cleanup


@pytest.fixture
def step_clock(monkeypatch):
    """``step_clock(seconds)``: as if NTP had stepped the wall clock. /proc/stat's btime
    (wall clock minus uptime, recomputed on every read) and so psutil's create_time move."""
    from psutil import _pslinux

    real = _pslinux.boot_time()

    def step(seconds: float) -> None:
        monkeypatch.setattr(_pslinux, "boot_time", lambda: real + seconds)
        monkeypatch.setattr(psutil, "boot_time", lambda: real + seconds)
    return step


@pytest.mark.parametrize("seconds", [1.0, -1.0, 3600.0])
def test_a_live_owner_stays_alive_when_the_clock_steps(tmp_path, step_clock, seconds):
    labels = cleanup.owner_labels("run-a")
    cleanup.write_local_owner(tmp_path, "run-a")
    step_clock(seconds)
    owner = json.loads((tmp_path / cleanup.LOCAL_OWNER_FILE).read_text())
    assert cleanup.owner_alive(labels[cleanup.LABEL_OWNER_PID],
                               labels[cleanup.LABEL_OWNER_STARTED])
    assert cleanup.owner_alive(owner["pid"], owner["started"])


def test_a_live_local_lab_is_not_swept_when_the_clock_steps(tmp_path, step_clock):
    labdir = tmp_path / f"{cleanup.LOCAL_PREFIX}live"
    labdir.mkdir()
    cleanup.write_local_owner(labdir, "run-live")
    step_clock(1.0)
    assert cleanup.sweep_stale_local(tmp_path) == 0
    assert labdir.is_dir()


def test_a_gone_owner_and_a_reused_pid_are_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        ticks = cleanup.start_ticks(child.pid)
        assert ticks is not None and ticks >= cleanup.start_ticks(os.getpid())
        assert cleanup.owner_alive(child.pid, ticks)
        assert cleanup.owner_alive(str(child.pid), str(ticks))
        # the same pid with another start: another process that got the number
        assert not cleanup.owner_alive(child.pid, ticks + 1)
    finally:
        child.communicate(b"")
    assert cleanup.start_ticks(child.pid) is None
    assert not cleanup.owner_alive(child.pid, ticks)
    assert not cleanup.owner_alive(None, ticks)
    assert not cleanup.owner_alive("not a pid", ticks)


def test_a_dead_owners_local_lab_is_swept(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    labdir = tmp_path / f"{cleanup.LOCAL_PREFIX}dead"
    labdir.mkdir()
    (labdir / cleanup.LOCAL_OWNER_FILE).write_text(json.dumps(
        {"run": "run-dead", "pid": child.pid, "started": 1, "host": os.uname().nodename}))
    assert cleanup.sweep_stale_local(tmp_path) == 1
    assert not labdir.exists()
