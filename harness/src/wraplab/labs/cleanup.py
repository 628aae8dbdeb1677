"""Nothing of ours is left behind: run registry, signal handling, labels, sweeping.

* Every open run is registered here. On SIGTERM (while a run is open, in the main thread)
  the harness raises KeyboardInterrupt, like SIGINT, so ``with`` blocks and pytest unwind
  and every run closes; an ``atexit`` hook closes whatever is still open.
* Every container carries ``wraplab=1``, ``wraplab.run=<uuid>``,
  ``wraplab.owner-pid=<pid>``, ``wraplab.owner-started=<start in clock ticks since boot>``
  and ``wraplab.host=<hostname>``. Containers of this host whose owner process is gone are
  removed at the next start (``sweep_stale_containers``) and by ``wraplab clean``, which
  keeps live runs' containers unless ``--force``.
  The per-run volumes of a run with a peer container carry the same labels and are swept
  the same way, after the containers that use them (``sweep_stale_volumes``).
* A LocalLab keeps everything under one private directory with an owner file; dead
  owners' directories and processes are swept likewise (``sweep_stale_local``). So is
  the ``lib`` tree the labs of one process share (``wraplab-lib-*``), which the ``atexit``
  hook removes after the runs (``remove_at_exit``).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

LABEL = "wraplab"
LABEL_RUN = "wraplab.run"
LABEL_OWNER_PID = "wraplab.owner-pid"
LABEL_OWNER_STARTED = "wraplab.owner-started"
LABEL_HOST = "wraplab.host"
LABEL_KEEP = "wraplab.keep"  # kept on purpose (wraplab run --keep): only `wraplab clean` removes
LOCAL_PREFIX = "wraplab-"
LOCAL_LIB_PREFIX = LOCAL_PREFIX + "lib-"  # a lib tree shared by one process's local labs
LOCAL_OWNER_FILE = ".wraplab-owner.json"
RUN_ENV = "WRAPLAB_RUN"

_lock = threading.RLock()
_open: dict[str, Any] = {}  # run id -> LabRun
_at_exit: dict[Path, int] = {}  # directory -> pid of the process that made it
_previous_sigterm: Any = None
_handler_installed = False


def start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since boot (``/proc/<pid>/stat`` field 22);
    None when there is no such process.

    This, not ``psutil.Process.create_time()``, identifies an owner: create_time adds the
    boot time, which Linux recomputes on every read as "wall clock minus uptime", so it
    moves when NTP adjusts the clock (giampaolo/psutil#2526): a sweep then takes a live
    owner's lab (a CI run lost a worker's local lab in the middle of a cell, the only way
    we know it could). The ticks never move.
    """
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def owner_labels(run_id: str) -> dict[str, str]:
    me = os.getpid()
    return {
        LABEL: "1",
        LABEL_RUN: run_id,
        LABEL_OWNER_PID: str(me),
        LABEL_OWNER_STARTED: str(start_ticks(me)),
        LABEL_HOST: socket.gethostname(),
    }


def owner_alive(pid: str | int | None, started: str | int | None) -> bool:
    """Is the process that made a lab still the same running process (same pid, same
    start)? Without a recorded start, any process with that pid counts."""
    try:
        ticks = start_ticks(int(pid))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False
    if ticks is None:
        return False
    if started in (None, ""):
        return True
    try:
        return ticks == int(started)  # type: ignore[arg-type]
    except ValueError:  # an older wraplab's wall-clock start time: the pid is all we have
        return True


# ------------------------------------------------------------------ open runs


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def register(run: Any) -> None:
    global _previous_sigterm, _handler_installed
    with _lock:
        _open[run.id] = run
        if (not _handler_installed and threading.current_thread() is threading.main_thread()):
            current = signal.getsignal(signal.SIGTERM)
            if current in (signal.SIG_DFL, None):
                _previous_sigterm = current
                signal.signal(signal.SIGTERM, _on_sigterm)
                _handler_installed = True


def unregister(run: Any) -> None:
    global _handler_installed
    with _lock:
        _open.pop(run.id, None)
        if (not _open and _handler_installed
                and threading.current_thread() is threading.main_thread()):
            signal.signal(signal.SIGTERM, _previous_sigterm or signal.SIG_DFL)
            _handler_installed = False


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up, so a second Ctrl-C cannot interrupt it;
    they are delivered (and raise) right after."""
    main = threading.current_thread() is threading.main_thread()
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked) if main else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def remove_at_exit(path: Path) -> None:
    """Remove ``path`` when this process exits, after its runs are closed (a forked child's
    exit leaves it)."""
    with _lock:
        _at_exit[path] = os.getpid()


@atexit.register
def close_all() -> None:
    with _lock:
        runs = list(_open.values())
    for run in runs:
        with contextlib.suppress(Exception):
            run.close()
    with _lock:
        made = [p for p, pid in _at_exit.items() if pid == os.getpid()]
        _at_exit.clear()
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ Docker


def _our_containers(client: Any, **filters: str) -> list[Any]:
    """One list request: sparse, so no inspect per container (a matrix sweeps before every
    run, while dozens of warm containers wait idle); read them with :func:`labels_of` and
    :func:`name_of`."""
    labels = [f"{LABEL}=1"] + [f"{k}={v}" for k, v in filters.items()]
    return client.containers.list(all=True, filters={"label": labels}, sparse=True)


def labels_of(container: Any) -> dict[str, str]:
    """A listed container's labels (sparse or inspected)."""
    attrs = container.attrs
    return attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}


def name_of(container: Any) -> str:
    """A listed container's name (sparse or inspected)."""
    attrs = container.attrs
    names = attrs.get("Names") or [attrs.get("Name") or container.short_id]
    return str(names[0]).lstrip("/")


def sweep_stale_containers(client: Any, log: Callable[[str], None] | None = None, *,
                           kept: bool = False) -> int:
    """Remove this host's lab containers whose owner process is gone; those kept on
    purpose (``wraplab.keep``) only with ``kept`` (``wraplab clean``)."""
    removed = 0
    host = socket.gethostname()
    for container in _our_containers(client):
        labels = labels_of(container)
        if labels.get(LABEL_HOST) != host or (labels.get(LABEL_KEEP) and not kept):
            continue
        if owner_alive(labels.get(LABEL_OWNER_PID), labels.get(LABEL_OWNER_STARTED)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed += 1
            if log:
                log(f"removed stale container {name_of(container)} "
                    f"(owner pid {labels.get(LABEL_OWNER_PID)} is gone)")
    return removed


def live_containers(client: Any) -> list[Any]:
    """Lab containers not known to be stale: owner alive here, or another host's."""
    host = socket.gethostname()
    return [c for c in _our_containers(client)
            if labels_of(c).get(LABEL_HOST) != host
            or owner_alive(labels_of(c).get(LABEL_OWNER_PID),
                           labels_of(c).get(LABEL_OWNER_STARTED))]


def remove_all_containers(client: Any, log: Callable[[str], None] | None = None) -> int:
    """Remove every wraplab container (any host label, any owner)."""
    removed = 0
    for container in _our_containers(client):
        with contextlib.suppress(Exception):
            container.remove(force=True, v=True)
            removed += 1
            if log:
                log(f"removed container {name_of(container)}")
    return removed


def containers_of_run(client: Any, run_id: str) -> list[Any]:
    return _our_containers(client, **{LABEL_RUN: run_id})


def _our_volumes(client: Any, **filters: str) -> list[Any]:
    labels = [f"{LABEL}=1"] + [f"{k}={v}" for k, v in filters.items()]
    return client.volumes.list(filters={"label": labels})


def volumes_of_run(client: Any, run_id: str) -> list[Any]:
    return _our_volumes(client, **{LABEL_RUN: run_id})


def sweep_stale_volumes(client: Any, log: Callable[[str], None] | None = None,
                        *, everyone: bool = False, kept: bool = False) -> int:
    """Remove this host's run volumes whose owner process is gone (``everyone``: every
    wraplab volume, any host or owner). Call after the containers using them are gone."""
    removed = 0
    host = socket.gethostname()
    for volume in _our_volumes(client):
        labels = volume.attrs.get("Labels") or {}
        if not everyone and labels.get(LABEL_KEEP) and not kept:
            continue
        if not everyone and (labels.get(LABEL_HOST) != host or owner_alive(
                labels.get(LABEL_OWNER_PID), labels.get(LABEL_OWNER_STARTED))):
            continue
        with contextlib.suppress(Exception):
            volume.remove(force=True)
            removed += 1
            if log:
                log(f"removed volume {volume.name}")
    return removed


# ------------------------------------------------------------------ LocalLab


def write_local_owner(labdir: Path, run_id: str, keep: bool = False) -> None:
    me = os.getpid()
    (labdir / LOCAL_OWNER_FILE).write_text(json.dumps(
        {"run": run_id, "pid": me, "started": start_ticks(me), "host": socket.gethostname(),
         "keep": keep}))


def processes_of_local_run(run_id: str, labdir: Path | None = None) -> list[psutil.Process]:
    """Processes started by a LocalLab run: WRAPLAB_RUN in their environment, or a
    working directory / command line inside its directory."""
    found = []
    me = os.getpid()
    marker = str(labdir) if labdir else None
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if proc.pid == me:
            continue
        try:
            hit = False
            if marker:
                cwd = proc.info.get("cwd") or ""
                cmd = proc.info.get("cmdline") or []
                hit = cwd.startswith(marker) or any(marker in a for a in cmd)
            if not hit:
                hit = proc.environ().get(RUN_ENV) == run_id
            if hit:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def kill_processes(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=timeout)


def local_lab_dirs(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob(f"{LOCAL_PREFIX}*") if (p / LOCAL_OWNER_FILE).is_file())


def remove_local_lab(labdir: Path, run_id: str | None = None) -> None:
    if run_id is None:
        with contextlib.suppress(OSError, ValueError):
            run_id = json.loads((labdir / LOCAL_OWNER_FILE).read_text()).get("run")
    kill_processes(processes_of_local_run(run_id or "-", labdir))
    shutil.rmtree(labdir, ignore_errors=True)


def sweep_stale_local(base: Path, log: Callable[[str], None] | None = None,
                      everything: bool = False, kept: bool = False) -> int:
    """Remove LocalLab directories (and their processes) whose owner process is gone; those
    kept on purpose (``wraplab run --keep``) only with ``kept`` (``wraplab clean``)."""
    removed = 0
    host = socket.gethostname()
    for labdir in local_lab_dirs(base):
        try:
            owner = json.loads((labdir / LOCAL_OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not everything and owner.get("keep") and not kept:
            continue
        if not everything and (owner.get("host") != host
                               or owner_alive(owner.get("pid"), owner.get("started"))):
            continue
        remove_local_lab(labdir, owner.get("run"))
        removed += 1
        if log:
            what = "lib" if labdir.name.startswith(LOCAL_LIB_PREFIX) else "lab"
            log(f"removed stale local {what} {labdir} (owner pid {owner.get('pid')})")
    return removed


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
