"""Hand over one's own wrap naming a process that is not one's own. Stdlib only; prints
one JSON object.

    python3 -m wraplab.actors.pidclaim --kind notify|ptrace (--pid N | --target-uid U
        [--target-comm NAME]) [--api unix:SOCK] [--wait S]

Creates a session and sends wrap-init (``caller_uid`` = getuid()), connects to the socket the
answer names, and hands over naming the claimed pid: ptrace = that pid as 4 little-endian
bytes (the tracer is asked to attach it); notify = 0xA7 + that pid as the wrapper pid,
with the read end of a pipe holding a token (a correct handoff in every other way). With
``--target-uid`` the pid is the oldest process of that uid (and command name), found the
way any user can, in /proc (what ``ps`` shows). Reads the answer (``status N``, ``ACK``,
``NACK``, ``eof``, ``open``) for at most ``--wait`` seconds.
"""

from __future__ import annotations

import argparse
import array
import errno
import json
import os
import secrets
import socket
import struct
import sys
import time

from wraplab.actors._common import api_request, wrap_init_body

MAGIC = 0xA7


def find_pid(uid: int, comm: str | None) -> tuple[int | None, str | None]:
    best = None
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}")
            with open(f"/proc/{name}/comm") as f:
                c = f.read().strip()
        except OSError:
            continue
        if st.st_uid != uid or (comm and c != comm):
            continue
        pid = int(name)
        if best is None or pid < best[0]:
            best = (pid, c)
    return best if best else (None, None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pidclaim", description=__doc__.splitlines()[0])
    ap.add_argument("--kind", required=True, choices=("notify", "ptrace"))
    ap.add_argument("--api", default="unix:/run/wrapref/api.sock")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--target-uid", type=int)
    ap.add_argument("--target-comm")
    ap.add_argument("--wait", type=float, default=3.0)
    ap.add_argument("--find-wait", type=float, default=5.0,
                    help="how long to look for the target process (s)")
    args = ap.parse_args(argv)
    out: dict = {"uid": os.getuid(), "pid": os.getpid(), "kind": args.kind}
    claim, comm = args.pid, None
    if claim is None:
        if args.target_uid is None:
            ap.error("--pid or --target-uid")
        deadline = time.monotonic() + args.find_wait
        claim, comm = find_pid(args.target_uid, args.target_comm)
        while claim is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the target process exists (bounded)
            claim, comm = find_pid(args.target_uid, args.target_comm)
        if claim is None:
            out["error"] = f"no process of uid {args.target_uid} ({args.target_comm}) found"
            json.dump(out, sys.stdout)
            return 1
    out.update(claimed_pid=claim, claimed_comm=comm)
    st, body = api_request(args.api, "POST", "/api/v1/sessions", {})
    if st != 201 or not isinstance(body, dict):
        out["error"] = f"session: HTTP {st} {body!r}"
        json.dump(out, sys.stdout)
        return 1
    out["session"] = sid = body["id"]
    st, resp = api_request(args.api, "POST", f"/api/v1/sessions/{sid}/wrap-init",
                           wrap_init_body(out["uid"]))
    out["http"] = st
    if st != 200 or not isinstance(resp, dict):
        out["error"] = f"wrap-init: HTTP {st} {resp!r}"
        json.dump(out, sys.stdout)
        return 1
    path = out["path"] = resp.get("notify_socket")
    out["token"] = token = "pidclaim-" + secrets.token_hex(8)
    t = time.time()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
        if args.kind == "ptrace":
            s.sendall(struct.pack("<I", claim))
        else:
            r, w = os.pipe()
            os.write(w, token.encode())
            os.close(w)
            s.sendmsg([bytes([MAGIC]) + struct.pack("<I", claim)],
                      [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))])
            os.close(r)
        s.settimeout(args.wait)
        try:
            data = s.recv(1)
            if not data:
                out["result"] = "eof"
            elif args.kind == "ptrace":
                out["result"] = {1: "ACK", 0: "NACK"}.get(data[0], f"byte {data[0]}")
            else:
                out["result"] = f"status {data[0]}"
        except socket.timeout:
            out["result"] = "open"
    except OSError as exc:
        out["errno"] = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        out["result"] = out["errno"]
    finally:
        s.close()
    out["ms"] = round((time.time() - t) * 1000, 1)
    json.dump(out, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
