"""A reconnect flood: connect and close, as fast as possible, until a deadline. Stdlib only;
prints one JSON object.

    python3 -m wraplab.actors.flood --path P --seconds 3 [--procs 2] [--waiters 16]
        [--ready FILE [--ready-after N]]

Each of ``--procs`` processes connects a non-blocking AF_UNIX socket again and again
(closed and replaced once the kernel queued it; a refused one tries again), and counts the
outcome by errno name, from ``connect_ex`` (no exception per refusal): ``ok`` when the
kernel queued the connection; EAGAIN when the listener's backlog is full; EACCES when the
directory or socket mode stops us; ENOENT / ECONNREFUSED once the listener is gone. The
report has the totals, the outcome counts and the rate (attempts per second over the
flood's own wall time). ``--ready FILE``: the file is
created once the first process has made ``--ready-after`` attempts (the flood is running at
full speed: the harness releases the owner then); SIGTERM to the first process ends the
whole flood early (the report is still printed): it sets a stop flag in memory that every
process of the flood shares; the others ignore SIGTERM (see :func:`_forked`).

``--waiters`` are processes too (each flooder forks its own), not threads: a blocking
connect that a freed slot wakes would otherwise wait for the GIL of the busy non-blocking
loop, and both would run at a fraction of their speed (measured by ``make bench`` against
a C flooder of the same structure).
"""

from __future__ import annotations

import _socket
import argparse
import errno
import json
import mmap
import os
import signal
import socket
import struct
import sys
import time

_STOP = mmap.mmap(-1, 1)  # one shared byte: every process forked after import sees it


def _stopped() -> bool:
    return _STOP[0] != 0


def _on_term(_sig, _frame) -> None:
    _STOP[0] = 1


def flood(path: str, deadline: float, waiters: int = 0, ready: str | None = None,
          ready_after: int = 256) -> dict:
    """Flood ``path`` until ``deadline`` (or SIGTERM); ``ready``: a file to create once
    ``ready_after`` attempts were made."""
    attempts = 0
    first_ok = None
    first_gone = None  # when a connect first met no socket (it was there when we started)
    t0 = time.time()
    now = t0
    kids = [_forked(waiter, path, deadline) for _ in range(waiters)]
    # _socket.socket: the C type itself, without socket.socket's Python layer (a third
    # more connects per CPU second; this loop is the flood's whole cost).  A socket the
    # kernel refused (EAGAIN: the backlog is full) is still unconnected and connects again;
    # only a queued one is closed and replaced.
    new, af, st = _socket.socket, socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    eagain = errno.EAGAIN
    gone = (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR)  # no socket there any more
    tally = [0] * 4096  # errno -> attempts (0: queued)
    ready_at = None
    s = new(af, st)
    try:
        while now < deadline and not _stopped():
            for _ in range(64):
                e = s.connect_ex(path)
                tally[e] += 1
                if e != eagain:
                    s.close()
                    s = new(af, st)
            attempts += 64
            now = time.time()
            if first_ok is None and tally[0]:
                first_ok = now
            if first_gone is None and any(tally[g] for g in gone):
                first_gone = now
            if ready and ready_at is None and attempts >= ready_after:
                ready_at = now
                os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o644))
    finally:
        s.close()
    by_errno = {e: n for e, n in enumerate(tally) if n}
    now = time.time()  # the loop may not have run at all (stopped before its first turn)
    counts = _names(by_errno)
    for res in _collect(kids):
        for k, v in res.items():
            counts[k] = counts.get(k, 0) + v
            attempts += v
    return {"attempts": attempts, "outcomes": counts, "t0": t0, "t1": now,
            "first_ok": first_ok, "first_gone": first_gone, "ready_at": ready_at}


def _names(by_errno: dict) -> dict:
    """{errno: n} -> {"ok" | "EAGAIN" | ...: n}."""
    return {("ok" if e == 0 else errno.errorcode.get(e, str(e))): n for e, n in by_errno.items()}


def waiter(path: str, deadline: float) -> dict:
    """Blocking connect+close in a loop: a connect that finds the backlog full sleeps in the
    kernel and takes the next free slot the moment the server accepts one.  EAGAIN: the
    SO_SNDTIMEO (200 ms) ran out while waiting for a slot."""
    tv = struct.pack("ll", 0, 200000)
    by_errno: dict[int, int] = {}
    queued = {0, errno.EAGAIN}
    while time.time() < deadline and not _stopped():
        s = _socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        e = s.connect_ex(path)
        s.close()
        by_errno[e] = by_errno.get(e, 0) + 1
        if e not in queued:
            # Refused outright (EACCES) or the listener is gone (ENOENT, ECONNREFUSED): a
            # waiter has no slot to queue for, and the non-blocking loop already counts
            # those refusals; spinning here would only take the cores from everyone else.
            time.sleep(0.01)
    return _names(by_errno)


def _forked(fn, *args) -> tuple:
    """Run ``fn(*args)`` in a child process; ``(pid, pipe)`` its JSON result comes on."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            # Only the first process takes SIGTERM (and sets the shared flag). A signal
            # here could be lost (CPython clears pending signals after a fork), and one
            # that interrupts a waiter's blocking connect makes Python retry it until the
            # backlog has a slot, past SO_SNDTIMEO: a stop then waited for the listener
            # to go. Ignored, each connect still ends within SO_SNDTIMEO and the loop
            # sees the flag.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.close(r)
            os.write(w, json.dumps(fn(*args)).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(children) -> list:
    """The results of :func:`_forked` children (waiting for each)."""
    results = []
    for pid, r in children:
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(r)
        os.waitpid(pid, 0)
        if chunks:
            results.append(json.loads(b"".join(chunks)))
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="flood", description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="the socket to flood")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--waiters", type=int, default=0,
                    help="processes per flooder that connect blocking (queue for free slots)")
    ap.add_argument("--ready", metavar="FILE", help="create FILE once the flood runs")
    ap.add_argument("--ready-after", type=int, default=256, metavar="N",
                    help="attempts of the first process before --ready is created")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    out: dict = {"uid": os.getuid(), "pid": os.getpid(), "procs": args.procs}
    path = out["path"] = args.path
    start = time.time()
    deadline = start + args.seconds
    children = [_forked(flood, path, deadline, args.waiters)
                for _ in range(max(1, args.procs) - 1)]
    results = [flood(path, deadline, args.waiters, args.ready, args.ready_after)]
    results += _collect(children)
    outcomes: dict[str, int] = {}
    for res in results:
        for k, v in res["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    attempts = sum(r["attempts"] for r in results)
    t0 = min(r["t0"] for r in results)
    t1 = max(r["t1"] for r in results)
    oks = [r["first_ok"] for r in results if r["first_ok"]]
    gone = [r["first_gone"] for r in results if r.get("first_gone")]
    out.update(
        attempts=attempts,
        outcomes=outcomes,
        t0=t0,
        t1=t1,
        seconds=round(t1 - t0, 3),
        rate=round(attempts / max(t1 - t0, 1e-6)),
        first_ok=min(oks) if oks else None,
        first_gone=min(gone) if gone else None,
        ready_at=results[0]["ready_at"],
        stopped=_stopped(),
    )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
