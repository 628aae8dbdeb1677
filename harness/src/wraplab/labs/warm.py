"""Warm labs: a container kept after its cell, for the next cell that would make the same.

Inside :func:`reuse` (the matrix runner opens it around its cells), a DockerRun whose
container could serve another cell (same image, placement and seccomp
setting; no peer, no scratch wrapref) returns it here when it closes, but only after the
reuse check: the resident agent kills every process the cell left (all but docker-init,
``sleep infinity`` and itself), empties the temp base, the API directory and the log
directory, and then takes a :func:`snapshot <wraplab.actors.agent.snapshot>` of the whole
container (every path outside /proc, /sys and /dev with its kind, mode, owner, size,
mtime; the processes; System V IPC; bound Unix sockets). Only a snapshot equal to the one
taken when the container was new (the same digest, or, when the digests differ, no
difference in :func:`differences`) lets the container back into the pool; anything else
(a file planted in /var/tmp, a changed mode, a leftover IPC segment...) refuses it and the
container is removed. The next cell then starts its own server in the reused container.
The check runs in the background (:data:`RECYCLER`): the worker that closed the run goes on
with its next cell at once, in another idle container (or a new one) while this one is
checked; the end of :func:`reuse` waits for every check before it removes the idle ones.

``WRAPLAB_WARM=0`` turns reuse off (a fresh container per cell, as before); it needs the
resident agent (``WRAPLAB_AGENT``). Idle containers are removed at exit, on SIGTERM/SIGINT
(they are registered with :mod:`wraplab.labs.cleanup` like open runs), and by the stale
sweep of a later harness when this one was killed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from wraplab.labs import cleanup
from wraplab.labs.agent import AgentLink
from wraplab.labs.base import LabError

SWITCH = "WRAPLAB_WARM"
MAX_IDLE = 48  # idle containers kept in all (the oldest goes first): a -j N matrix over K
# kinds of container (placement, seccomp) needs 2 x N x K with the checks in the background
# (one container in a cell, one being checked, per worker); 48 covers -j auto on 2 cores
# (8) over the 3 placements


_active = 0
_active_lock = threading.Lock()


@contextlib.contextmanager
def reuse() -> Iterator[None]:
    """Within this block (the matrix runner's), closed Docker runs may keep their container
    for a later cell; at its end every idle container is removed. Outside it, ``close()``
    removes the container as always. Nested blocks share one pool."""
    global _active
    with _active_lock:
        _active += 1
    try:
        yield
    finally:
        with _active_lock:
            _active -= 1
            last = _active == 0
        if last:
            RECYCLER.drain()  # every reuse check done: its container is idle or removed
            POOL.close_all()


def active() -> bool:
    """Inside :func:`reuse` and not turned off by ``WRAPLAB_WARM=0``."""
    return _active > 0 and enabled()


def enabled() -> bool:
    """Whether Docker labs reuse checked-clean containers (``WRAPLAB_WARM``, default 1)."""
    value = os.environ.get(SWITCH, "1").strip().lower()
    if value in ("0", "no", "off", "false"):
        return False
    if value in ("", "1", "yes", "on", "true"):
        return True
    raise LabError(f"{SWITCH}={value!r}: want 1 (reuse checked-clean containers) or 0")


@dataclass(eq=False)
class WarmBox:
    """A running container with its agent, idle between cells."""

    key: tuple
    container: Any  # LabContainer
    container_id: str
    container_name: str
    docker: Any  # DockerClient (API calls)
    stream: Any  # DockerClient (the agent's and actors' streams)
    agent: AgentLink
    baseline: dict
    keep: list[int]
    cells: int = 0
    id: str = field(default_factory=lambda: "warm-" + uuid.uuid4().hex)

    def close(self) -> None:
        """Remove the container (idempotent); used at exit and when the check refuses."""
        POOL.forget(self)
        with cleanup.signals_deferred():
            try:
                self.agent.close()
                with contextlib.suppress(Exception):
                    self.container.get_wrapped_container().remove(force=True, v=True)
            finally:
                cleanup.unregister(self)
                for client in (self.docker, self.stream):
                    with contextlib.suppress(Exception):
                        client.close()
                with contextlib.suppress(Exception):
                    self.container.get_docker_client().client.close()


class WarmPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple, list[WarmBox]] = {}
        self._order: list[WarmBox] = []  # idle boxes, oldest first

    def take(self, key: tuple) -> WarmBox | None:
        while True:
            with self._lock:
                boxes = self._idle.get(key) or []
                if not boxes:
                    return None
                box = boxes.pop()
                self._order = [b for b in self._order if b is not box]
            cleanup.unregister(box)
            if box.agent.alive:
                return box
            box.close()

    def give(self, box: WarmBox) -> bool:
        evicted: list[WarmBox] = []
        with self._lock:
            self._order = [b for b in self._order if b is not box]
            self._idle.setdefault(box.key, []).append(box)
            self._order.append(box)
            while len(self._order) > MAX_IDLE:
                old = self._order.pop(0)
                self._idle[old.key].remove(old)
                evicted.append(old)
        cleanup.register(box)
        for old in evicted:
            old.close()
        return True

    def forget(self, box: WarmBox) -> None:
        with self._lock:
            boxes = self._idle.get(box.key) or []
            if box in boxes:
                boxes.remove(box)
            self._order = [b for b in self._order if b is not box]

    def idle(self) -> list[WarmBox]:
        with self._lock:
            return [b for boxes in self._idle.values() for b in boxes]

    def close_all(self) -> None:
        for box in self.idle():
            box.close()


POOL = WarmPool()


class Recycler:
    """Reuse checks (or removals) of closed runs, in the background: ``submit(check)``
    returns at once; :meth:`drain` waits until every check submitted has ended."""

    #: Checks at once (each is mostly the agent's snapshot inside its container).
    workers = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()

    def submit(self, check: Callable[[], None]) -> None:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.workers,
                                                    thread_name_prefix="wraplab-recycle")
            future = self._executor.submit(check)
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def drain(self) -> None:
        """Wait for every check submitted so far (their errors were the checks' own)."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            wait(pending)


RECYCLER = Recycler()


def differences(before: dict, after: dict, limit: int = 8) -> list[str]:
    """What changed between two snapshots, in words (empty when nothing did)."""
    out: list[str] = []
    files_a, files_b = before.get("files") or {}, after.get("files") or {}
    for path in sorted(set(files_a) | set(files_b)):
        a, b = files_a.get(path), files_b.get(path)
        if a == b:
            continue
        if a is None:
            out.append(f"new {path} {_fact(b)}")
        elif b is None:
            out.append(f"gone {path}")
        else:
            out.append(f"changed {path}: {_fact(a)} -> {_fact(b)}")
    procs_a, procs_b = before.get("procs") or {}, after.get("procs") or {}
    for pid in sorted(set(procs_a) ^ set(procs_b), key=int):
        what = procs_b.get(pid) or procs_a.get(pid)
        state = "left running" if pid in procs_b else "gone"
        out.append(f"process {pid} {state}: uid {what[0][0]} {' '.join(what[1]).strip()}")
    for kind in ("ipc", "unix"):
        if before.get(kind) != after.get(kind):
            out.append(f"{kind} differs: {before.get(kind)} -> {after.get(kind)}")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def _fact(fact: list) -> str:
    if not fact or not isinstance(fact[0], int):
        return str(fact)
    mode, uid, gid, *rest = fact
    return f"(mode {mode:o}, uid {uid}, gid {gid}{', ' + str(rest) if rest else ''})"


def idle_containers() -> list[str]:
    """Names of the containers waiting in the pool (for tests and `wraplab doctor`)."""
    return [box.container_name for box in POOL.idle()]


def close_idle() -> None:
    """Remove every idle container (the runner calls it when a matrix ends)."""
    POOL.close_all()
