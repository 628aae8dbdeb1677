"""The machine's cores (``wraplab.engine.cores``): one exclusive cell attacks at a time,
across threads and processes; a cell that says its attack is over lets the next one in
while it waits for its windows; a cell that never says so holds them to its end."""

from __future__ import annotations

import subprocess
import sys
import threading

from wraplab.engine.cores import Cores


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path):
    path = str(tmp_path / "cores.lock")
    first = Cores(path).hold()
    order = []
    second_has_them = threading.Event()

    def second():
        with Cores(path):
            order.append("second attacks")
            second_has_them.set()

    t = threading.Thread(target=second)
    t.start()
    assert not second_has_them.wait(0.5)  # still the first's: the second waits
    order.append("first's attack is over")
    first.release()
    assert second_has_them.wait(10)
    t.join(10)
    assert order == ["first's attack is over", "second attacks"]
    held = first.held_s
    assert held is not None and held >= 0.5  # from hold() to release(): the cell's timing
    first.release()  # idempotent: nothing happens
    assert not first.held and first.held_s == held


def test_another_process_waits_too(tmp_path):
    path = str(tmp_path / "cores.lock")
    probe = ("import sys; from filelock import FileLock, Timeout\n"
             f"l = FileLock({path!r}, timeout=0.2)\n"
             "try:\n    l.acquire()\nexcept Timeout:\n    print('busy')\n"
             "else:\n    print('free')\n")
    with Cores(path):
        busy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                              check=True, timeout=30).stdout.strip()
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    assert (busy, free) == ("busy", "free")
