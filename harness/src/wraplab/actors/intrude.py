"""An intruder at someone else's wrap socket. Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.intrude --kind notify (--path P | --base DIR [--wait S])
        [--do handoff,connect] [--token T] [--held-file F --release-file G]

Steps, in the order given by ``--do``:
- ``connect``: connect, then watch the connection for a moment: the kernel's errno
  (EACCES, ENOENT, ECONNREFUSED...) or what the server did once we were in (``eof``: it
  closed on us, ``open``: it waited for a handoff).
- ``handoff``: a full handoff with our own token, as the wire protocol says for the kind:
  notify = 0xA7 + our pid + the read end of a pipe holding the token, then the status byte;
  signal = 0x00 + that fd; ptrace = our pid as 4 little-endian bytes, then ACK/NACK.

``--held-file``/``--release-file`` (notify, signal): keep the write end of the pipe open
after the token, so a server reading the token until EOF keeps the received fd; create the
held file (JSON: the pipe's inode) once the fd was sent, close the write end when the
release file appears (bounded by the handoff's wait), then read the server's answer. A root
observer meanwhile reads the fd's flags in the server (/proc/PID/fdinfo).

With ``--base`` the socket is found first (``find_sockets``: /proc/net/unix and listing, no
file-name pattern; the harness checks that what was found is the owner's socket).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import secrets
import socket
import struct
import sys
import time

from wraplab.actors._common import errno_name, release_on_term, token_drained, watch, wrapper_child
from wraplab.actors.find_sockets import discover

MAGIC = 0xA7


def _connect(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect (a full backlog makes us wait, not fail), bounded by SO_SNDTIMEO.
    tv = struct.pack("ll", int(timeout), int((timeout % 1) * 1e6))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def _reap(child: int | None) -> None:
    if child:
        try:
            os.kill(child, 9)
            os.waitpid(child, 0)
        except OSError:
            pass


def _mark(path: str | None, step: dict) -> None:
    """Tell a waiting harness that the connect is done (its outcome in the file)."""
    if path:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump({k: step.get(k) for k in ("t", "errno", "connected")}, f)
        os.rename(path + ".tmp", path)


def step_connect(path: str, wait: float, connected_file: str | None = None) -> dict:
    t = time.time()
    step: dict = {"action": "connect", "path": path, "t": t, "errno": None}
    try:
        s = _connect(path, 2.0)
    except OSError as exc:
        step.update(errno=errno_name(exc), result=errno_name(exc))
        _mark(connected_file, step)
    else:
        step["connected"] = True
        _mark(connected_file, step)
        with s:
            what, _, released = watch(s, 1, wait)
            step["result"] = "connected, server " + {
                "eof": "closed it",
                "open": "kept it open",
            }.get(what, what)
            step["server"] = what
            if released:
                step["released"] = True  # the harness had seen enough: still open then
    step["ms"] = round((time.time() - t) * 1000, 2)
    return step


def _held(held_file: str, release_file: str, r: int, wait: float) -> dict:
    """The write end is still open: say which pipe the server got, wait to be released."""
    held = {"pipe_inode": os.fstat(r).st_ino, "t": time.time()}
    with open(held_file + ".tmp", "w", encoding="utf-8") as f:
        json.dump(held, f)
    os.rename(held_file + ".tmp", held_file)
    deadline = time.monotonic() + wait
    while not os.path.exists(release_file) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling a file the harness creates: the release is the condition
    held["released"] = os.path.exists(release_file)
    held["held_ms"] = round((time.time() - held["t"]) * 1000, 2)
    return held


def step_handoff(path: str, kind: str, token: str, wait: float,
                 hold: tuple[str, str] | None = None) -> dict:
    t = time.time()
    step: dict = {"action": "handoff", "kind": kind, "path": path, "t": t, "errno": None,
                  "token": token if kind != "ptrace" else None}
    # Like the real client, name a stand-in wrapper child of ours (its PPid is us, the
    # peer), so a server that validates the wrapper pid (SPEC H10) has nothing to object.
    # Forked first, so it holds neither the socket nor the pipe.
    child = wrapper_child() if kind == "notify" else None
    if child:
        step["wrapper_pid"] = child
    try:
        s = _connect(path, 2.0)
    except OSError as exc:
        step.update(errno=errno_name(exc), result=errno_name(exc), accepted=False)
        step["ms"] = round((time.time() - t) * 1000, 2)
        _reap(child)
        return step
    step["connected"] = True  # what fails from here on failed at the server (EPIPE...)
    r, w = os.pipe()
    try:
        os.write(w, token.encode())
        if not hold or kind == "ptrace":
            os.close(w)
            w = -1
        try:
            if kind == "ptrace":
                s.sendall(struct.pack("<I", os.getpid()))
            else:
                payload = (bytes([MAGIC]) + struct.pack("<I", child or os.getpid())
                           if kind == "notify" else b"\x00")
                fds = array.array("i", [r])
                s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError as exc:
            step.update(errno=errno_name(exc), result="send " + errno_name(exc), accepted=False)
        else:
            if w >= 0:
                step["held"] = _held(*hold, r, wait + 7.0)
                os.close(w)
                w = -1
            what, data, _ = watch(s, 1, wait)
            step["consumed"] = token_drained(r, token) if kind != "ptrace" else None
            if what == "data":
                step["status"] = data[0]
                step["accepted"] = data[0] == 1
                step["result"] = f"status byte {data[0]}"
            else:
                step["status"] = None
                # The signal socket answers nothing: a server that kept the fd and stays
                # silent took it; one that closed at once on us did not say.
                step["accepted"] = None
                step["result"] = {"eof": "server closed it", "open": "no answer"}.get(
                    what, what)
                step["server"] = what
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        s.close()
        _reap(child)
    step["ms"] = round((time.time() - t) * 1000, 2)
    return step


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="intrude", description=__doc__.splitlines()[0])
    ap.add_argument("--kind", required=True, choices=("notify", "signal", "ptrace"))
    ap.add_argument("--path", help="the socket (else found under --base)")
    ap.add_argument("--base", help="the server's temp base, to find the socket in")
    ap.add_argument("--wait", type=float, default=5.0, help="how long to look for it (s)")
    ap.add_argument("--do", default="handoff,connect", help="steps, comma separated")
    ap.add_argument("--token", default=None)
    ap.add_argument("--watch", type=float, default=0.3,
                    help="how long to watch a connection for the server's move (s); a "
                    "SIGTERM ends the watch early (the connection was still open then)")
    ap.add_argument("--connected-file", metavar="FILE",
                    help="create FILE (with the connect's outcome) once connect returned")
    ap.add_argument("--held-file", metavar="FILE",
                    help="keep the pipe's write end open; create FILE once the fd was sent")
    ap.add_argument("--release-file", metavar="FILE",
                    help="with --held-file: close the write end once FILE exists")
    args = ap.parse_args(argv)
    release_on_term()  # a SIGTERM ends a watch early (the harness has seen enough)
    if bool(args.held_file) != bool(args.release_file):
        ap.error("--held-file and --release-file go together")
    hold = (args.held_file, args.release_file) if args.held_file else None
    token = args.token or "intruder-" + secrets.token_hex(8)
    out: dict = {"uid": os.getuid(), "pid": os.getpid(), "kind": args.kind, "token": token,
                 "steps": []}
    path = args.path
    if not path:
        if not args.base:
            ap.error("--path or --base is required")
        found = discover(args.base, args.wait)
        out["steps"].append({
            "action": "find", "t": found["t0"], "ms": found["waited_ms"],
            "path": found["path"], "errno": None if found["path"] else "ENOENT",
            "via": next((f["via"] for f in found["found"] if f["path"] == found["path"]), []),
            "listing_errno": found["listing"]["errno"],
            "dirs": found["listing"].get("dirs"),
            "result": "found" if found["path"] else "nothing found",
        })
        path = found["path"]
    out["path"] = path
    if path:
        for action in filter(None, args.do.split(",")):
            if action == "connect":
                out["steps"].append(step_connect(path, args.watch, args.connected_file))
            elif action == "handoff":
                out["steps"].append(step_handoff(path, args.kind, token, 2.0, hold))
            else:
                ap.error(f"unknown step {action!r}")
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if path else 1


if __name__ == "__main__":
    sys.exit(main())
