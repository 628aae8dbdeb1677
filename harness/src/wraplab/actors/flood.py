"""A reconnect flood: connect and close, as fast as possible, until a deadline. Stdlib only;
prints one JSON object.

    python3 -m wraplab.actors.flood --path P --seconds 3 [--procs 2] [--waiters 16]
        [--ready FILE [--ready-after N]]

Each of ``--procs`` processes opens a non-blocking AF_UNIX socket, connects, closes, and
counts the outcome by errno name (``ok`` when the kernel queued the connection; EAGAIN when
the listener's backlog is full; EACCES when the directory or socket mode stops us; ENOENT /
ECONNREFUSED once the listener is gone). The report has the totals, the outcome counts and
the rate (attempts per second over the flood's own wall time). ``--ready FILE``: the file is
created once the first process has made ``--ready-after`` attempts (the flood is running at
full speed: the harness releases the owner then); SIGTERM ends the flood early (the report
is still printed).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

_STOP = []


def _on_term(_sig, _frame) -> None:
    _STOP.append(True)


_GONE = ("ENOENT", "ECONNREFUSED")


def flood(path: str, deadline: float, waiters: int = 0, ready: str | None = None,
          ready_after: int = 256) -> dict:
    """Flood ``path`` until ``deadline`` (or SIGTERM); ``ready``: a file to create once
    ``ready_after`` attempts were made."""
    counts: dict[str, int] = {}
    attempts = 0
    first_ok = None
    first_gone = None  # when a connect first met no socket (it was there when we started)
    t0 = time.time()
    now = t0
    state = {"path": path}
    wcounts: dict[str, int] = {}
    lock = threading.Lock()
    threads = [threading.Thread(target=waiter, args=(state, deadline, wcounts, lock),
                                daemon=True) for _ in range(waiters)]
    for t in threads:
        t.start()
    af, st = socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
    ready_at = None
    while now < deadline and not _STOP:
        for _ in range(64):
            s = socket.socket(af, st)
            try:
                s.connect(path)
                key = "ok"
            except BlockingIOError:
                key = "EAGAIN"
            except OSError as exc:
                key = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            s.close()
            counts[key] = counts.get(key, 0) + 1
            attempts += 1
            if first_gone is None and key in _GONE:
                first_gone = time.time()
        now = time.time()
        if first_ok is None and counts.get("ok"):
            first_ok = now
        if ready and ready_at is None and attempts >= ready_after:
            ready_at = now
            os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o644))
    now = time.time()  # the loop may not have run at all (stopped before its first turn)
    for t in threads:
        t.join(1.0)
    with lock:
        for k, v in wcounts.items():
            counts[k] = counts.get(k, 0) + v
            attempts += v
    return {"attempts": attempts, "outcomes": counts, "t0": t0, "t1": now,
            "first_ok": first_ok, "first_gone": first_gone, "ready_at": ready_at}


def waiter(state: dict, deadline: float, counts: dict, lock) -> None:
    """Blocking connect+close in a loop: a connect that finds the backlog full sleeps in the
    kernel and takes the next free slot the moment the server accepts one."""
    tv = struct.pack("ll", 0, 200000)
    while time.time() < deadline and not _STOP:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        try:
            s.connect(state["path"])
            key = "ok"
        except BlockingIOError:
            key = "EAGAIN"  # SO_SNDTIMEO ran out while waiting for a slot
        except OSError as exc:
            key = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        s.close()
        with lock:
            counts[key] = counts.get(key, 0) + 1
        if key in _GONE:
            time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="flood", description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="the socket to flood")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--waiters", type=int, default=0,
                    help="threads per process that connect blocking (queue for free slots)")
    ap.add_argument("--ready", metavar="FILE", help="create FILE once the flood runs")
    ap.add_argument("--ready-after", type=int, default=256, metavar="N",
                    help="attempts of the first process before --ready is created")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    out: dict = {"uid": os.getuid(), "pid": os.getpid(), "procs": args.procs}
    path = out["path"] = args.path
    start = time.time()
    deadline = start + args.seconds
    children = []
    for _ in range(max(1, args.procs) - 1):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            res = flood(path, deadline, args.waiters)
            os.write(w, json.dumps(res).encode())
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    results = [flood(path, deadline, args.waiters, args.ready, args.ready_after)]
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
        stopped=bool(_STOP),
    )
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
