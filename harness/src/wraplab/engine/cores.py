"""The machine's cores, held by one exclusive cell at a time while it attacks.

An ``EXCLUSIVE`` scenario (floods, races, leak counts) needs the CPU to itself while its
attack runs: its rates, and the timing guards of its verdicts, assume so. Its cells hold
this lock -- a file lock in wraplab's cache, so it holds across the threads of one run,
pytest-xdist's worker processes and separate runs on the machine -- from their start
until the scenario says its attack is over (:meth:`Context.attack_over
<wraplab.engine.context.Context.attack_over>`: what is left is waiting for accept windows
to end and for the server to clean up) or the cell ends. So exclusive cells may run side
by side, one attacking and the others waiting; never two attacks at once. Cells of the
other scenarios do not take it: they run in their own pass, before the exclusive ones.
"""

from __future__ import annotations

import time

from filelock import FileLock

from wraplab import paths

__all__ = ["Cores"]


class Cores:
    """``Cores().hold()`` ... ``release()`` (idempotent; also a context manager)."""

    #: Seconds to wait for the cores at most (a cell that attacks holds them for seconds;
    #: a whole pass of exclusive cells waits behind one another for minutes).
    timeout = 3600.0
    #: The lock file's name in :func:`wraplab.paths.cache_dir`.
    name = "cores.lock"

    def __init__(self, path: str | None = None):
        self._lock = FileLock(path or str(paths.cache_dir() / self.name), timeout=self.timeout)
        self._held = False
        self._since = 0.0
        #: Seconds the cores were held, once released (a cell's ``cores_held_s`` timing).
        self.held_s: float | None = None

    def hold(self) -> Cores:
        """Wait until no other exclusive cell attacks, then take the cores."""
        if not self._held:
            self._lock.acquire()
            self._held = True
            self._since = time.monotonic()
        return self

    def release(self) -> None:
        """Let the next exclusive cell attack (nothing if not held)."""
        if self._held:
            self._held = False
            self.held_s = round(time.monotonic() - self._since, 3)
            self._lock.release()

    @property
    def held(self) -> bool:
        return self._held

    def __enter__(self) -> Cores:
        return self.hold()

    def __exit__(self, *exc) -> None:
        self.release()
