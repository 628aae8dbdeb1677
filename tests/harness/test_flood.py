"""The flood actor (``wraplab.actors.flood``) stops as a whole when its first process is told to.

The harness signals the flood's first process; its flooder and waiter processes are forked
while it starts. A waiter forked after a stop, or never told of it, ran to the flood's
deadline and its parents waited for it: the stop took the full ``--seconds`` (seen as
30-second cells in reconnect-flood).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

DEADLINE = 60.0  # the flood's own bound; a stop must come long before it


@pytest.mark.parametrize("when", ["at-ready", "at-once"])
def test_sigterm_to_the_first_process_ends_every_process_of_the_flood(tmp_path, when):
    path = str(tmp_path / "target.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(4)  # never accepted: the backlog fills, the waiters block in connect
    ready = tmp_path / "running"
    flood = subprocess.Popen(
        [sys.executable, "-m", "wraplab.actors.flood", "--path", path, "--seconds",
         str(DEADLINE), "--procs", "2", "--waiters", "8", "--ready", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if when == "at-ready":  # as the harness does: once the flood says it runs
            while not ready.exists():
                assert flood.poll() is None, flood.communicate()
                time.sleep(0.005)  # polling a file the flood creates, not a timed order
        else:
            deadline = time.monotonic() + 10
            while not psutil.Process(flood.pid).children():
                assert time.monotonic() < deadline, "the flood forked no process in 10 s"
                time.sleep(0.001)  # polling for the first fork, not a timed order
        t0 = time.monotonic()
        os.kill(flood.pid, signal.SIGTERM)
        out, err = flood.communicate(timeout=DEADLINE / 2)
        took = time.monotonic() - t0
    finally:
        if flood.poll() is None:
            for child in psutil.Process(flood.pid).children(recursive=True):
                child.kill()
            flood.kill()
            flood.wait()
        listener.close()
    report = json.loads(out)
    assert flood.returncode == 0, err
    assert report["stopped"] is True
    if when == "at-ready":  # a stop at once may come before the first connect
        assert report["attempts"] >= 256, report
    assert took < 10, f"the flood took {took:.1f} s to stop (deadline {DEADLINE:g} s)"
