"""Shared by every suite: how many xdist workers ``-n auto`` starts."""

from __future__ import annotations

import os

#: Workers per core for ``pytest -n auto``: most tests wait (on a server's deadline, a
#: window, a container), not on the CPU. Two, not the matrix's four cells per core
#: (wraplab.engine.runner.CELLS_PER_CORE, which the unit tests cannot import): the labs
#: suite took 77 s with 4 workers on 2 cores and 89 s with 8 (2026-12-01).
WORKERS_PER_CORE = 2


def pytest_xdist_auto_num_workers(config):
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores) * WORKERS_PER_CORE
