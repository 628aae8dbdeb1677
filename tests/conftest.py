"""Shared by every suite: how many xdist workers ``-n auto`` starts."""

from __future__ import annotations

import os

#: Workers per core for ``pytest -n auto``: most tests wait (on a server's deadline, a
#: window, a container), not on the CPU, as ``wraplab matrix -j auto``'s cells do
#: (wraplab.engine.runner.CELLS_PER_CORE; this suite's unit tests run without wraplab).
WORKERS_PER_CORE = 2


def pytest_xdist_auto_num_workers(config):
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores) * WORKERS_PER_CORE
