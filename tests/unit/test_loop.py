"""The event loop (wrapref.loop): what the server's tasks rely on."""

from __future__ import annotations

import threading
import time

from wrapref.loop import EventLoop

from .helpers import wait_for


def test_a_task_spawned_by_a_task_runs_without_a_wake_up():
    """spawn() from the loop's own thread does not write the wake-up pipe: the loop must
    start such a task before it waits again, also when the spawn happens in a task's very
    first step (the API's handler starts the accept loops before it ever waits)."""
    loop = EventLoop()
    ran = {}

    def grandchild():
        ran["grandchild"] = threading.get_ident()
        yield (None, time.monotonic())

    def child():
        ran["child"] = threading.get_ident()
        loop.spawn(grandchild())
        yield (None, time.monotonic() + 60)

    def parent():
        loop.spawn(child())  # the first step: nothing woke the loop for it
        yield (None, time.monotonic() + 60)

    try:
        loop.spawn(parent())
        wait_for(lambda: len(ran) == 2, 5, what="the tasks spawned by tasks")
        assert ran["child"] == ran["grandchild"] != threading.get_ident()
    finally:
        loop.stop(5)
