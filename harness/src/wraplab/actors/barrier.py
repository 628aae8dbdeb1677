"""Barriers between actors: how the harness orders them without a sleep. Stdlib only;
prints one JSON object.

    python3 -m wraplab.actors.barrier parent --path DIR       # as root, once per lab
    python3 -m wraplab.actors.barrier make --path DIR/NAME    # as the actor
    python3 -m wraplab.actors.barrier wait --path FILE [--timeout S] [--while-pid PID]
    python3 -m wraplab.actors.barrier release --path FILE

``parent`` creates the barriers' parent directory, 1777 like /tmp (no chown is needed, so
it works where root lacks CAP_CHOWN). ``make``, run as the actor that will write there,
creates its private directory (0700; the owner's held client announces its wrap-init
answer in it). ``wait`` returns as soon as FILE exists (and, when it holds JSON, with its
content), or reports ``timeout``, or ``gone`` once process PID has ended (the actor will
never write it); it looks every 2 ms, so one process stands for the whole wait.
``release`` creates FILE (the held client dials once it appears).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from wraplab.actors._common import emit, errno_name


def parent(path: str) -> dict:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o1777)
    return {"path": path, "ok": True}


def make(path: str) -> dict:
    os.mkdir(path, 0o700)
    st = os.lstat(path)
    return {"path": path, "ok": st.st_uid == os.getuid(), "uid": st.st_uid}


def wait(path: str, timeout: float, while_pid: int | None = None,
         poll: float = 0.002) -> dict:
    t0 = time.time()
    limit = t0 + timeout
    while not os.path.lexists(path):
        why = "timeout" if time.time() >= limit else (
            "gone" if while_pid and not _alive(while_pid) else None)
        if why and not os.path.lexists(path):
            return {"path": path, "ok": False, "why": why,
                    "waited_ms": round((time.time() - t0) * 1000, 2)}
        time.sleep(poll)  # one look at a real condition; the bound is ``timeout``
    out: dict = {"path": path, "ok": True, "waited_ms": round((time.time() - t0) * 1000, 2),
                 "t": time.time()}
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        out["content"] = json.loads(text) if text.strip() else None
    except (OSError, ValueError) as exc:
        out["content"] = None
        out["read_error"] = errno_name(exc) if isinstance(exc, OSError) else "not JSON"
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def release(path: str) -> dict:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    return {"path": path, "ok": True, "t": time.time()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="barrier", description=__doc__.splitlines()[0])
    ap.add_argument("verb", choices=("parent", "make", "wait", "release"))
    ap.add_argument("--path", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--while-pid", type=int, default=None, metavar="PID",
                    help="wait: give up once this process has ended")
    args = ap.parse_args(argv)
    try:
        if args.verb == "parent":
            out = parent(args.path)
        elif args.verb == "make":
            out = make(args.path)
        elif args.verb == "wait":
            out = wait(args.path, args.timeout, args.while_pid)
        else:
            out = release(args.path)
    except OSError as exc:
        emit({"path": args.path, "ok": False, "why": errno_name(exc)}, 1)
    emit(out, 0 if out.get("ok", True) else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
