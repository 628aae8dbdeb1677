"""Malformed handoffs on one's own wrap sockets. Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.malformed --kind notify|signal|ptrace [--api unix:SOCK]
        [--cases a,b,...] [--wait S]

For each case: create a session, send wrap-init (``caller_uid`` = getuid(), omitted for
root), connect to the socket the answer names, send the malformed handoff, then read the
server's answer for at most ``--wait`` seconds (``status 0``/``status 1`` for notify,
``ACK``/``NACK`` for ptrace; ``eof``: it closed; ``open``: it still waits), and close.

Cases, notify: ``fds0`` (0xA7 + pid, no fd), ``fds2``, ``fds9`` (2 or 9 fds), ``wrong_magic``
(0x00 + pid + 1 fd: agentsh's legacy fd-only form), ``short`` (0xA7 + 2 bytes + 1 fd),
``no_payload`` (an fd with zero data bytes: on a stream socket the kernel sends nothing),
``second_sendmsg`` (a valid handoff, then a second message with another fd).
Signal: ``fds0``, ``fds2``, ``fds9``, ``no_payload``. Ptrace: ``short`` (2 bytes, then
shutdown), ``zero`` (pid 0), ``nonexistent`` (a pid above pid_max).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import socket
import struct
import sys
import time

from wraplab.actors._common import api_request, errno_name, wrap_init_body, wrapper_child

MAGIC = 0xA7
CASES = {
    "notify": ("fds0", "fds2", "fds9", "wrong_magic", "short", "no_payload", "second_sendmsg"),
    "signal": ("fds0", "fds2", "fds9", "no_payload"),
    "ptrace": ("short", "zero", "nonexistent"),
}


def token_fd(tag: str) -> int:
    r, w = os.pipe()
    os.write(w, f"malformed-{tag}-{os.getpid()}".encode())
    os.close(w)
    return r


def send(s: socket.socket, payload: bytes, nfds: int, tag: str) -> list[int]:
    fds = [token_fd(f"{tag}{i}") for i in range(nfds)]
    try:
        if fds:
            s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            s.sendmsg([payload])
    finally:
        for fd in fds:
            os.close(fd)
    return fds


def reply(s: socket.socket, wait: float, kind: str) -> str:
    s.settimeout(wait)
    try:
        data = s.recv(1)
    except socket.timeout:
        return "open"
    except OSError as exc:
        return errno_name(exc)
    if not data:
        return "eof"
    if kind == "ptrace":
        return {1: "ACK", 0: "NACK"}.get(data[0], f"byte {data[0]}")
    return f"status {data[0]}"


def do_case(kind: str, case: str, path: str, wait: float) -> dict:
    out: dict = {"case": case, "path": path}
    kid = wrapper_child() if kind == "notify" else None
    meta = bytes([MAGIC]) + struct.pack("<I", kid or os.getpid())
    t = time.time()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(3)
        try:
            s.connect(path)
        except OSError as exc:  # the wrapper child is ended below all the same
            out.update(errno=errno_name(exc), result=errno_name(exc))
            return out
        first = meta if kind == "notify" else b"\x00"
        if kind == "ptrace":
            if case == "short":
                s.sendall(struct.pack("<I", os.getpid())[:2])
                s.shutdown(socket.SHUT_WR)
            elif case == "zero":
                s.sendall(struct.pack("<I", 0))
            elif case == "nonexistent":
                s.sendall(struct.pack("<I", 0x7FFFFFF0))
        elif case == "fds0":
            send(s, first, 0, case)
        elif case == "fds2":
            send(s, first, 2, case)
        elif case == "fds9":
            send(s, first, 9, case)
        elif case == "wrong_magic":
            send(s, b"\x00" + meta[1:], 1, case)
        elif case == "short":
            send(s, meta[:3], 1, case)
        elif case == "no_payload":
            send(s, b"", 1, case)
        elif case == "second_sendmsg":
            send(s, meta, 1, case + "-a")
            send(s, meta, 1, case + "-b")
        else:
            raise SystemExit(f"unknown case {case!r} for {kind}")
        out["result"] = reply(s, wait, kind)
    except OSError as exc:
        out.update(errno=errno_name(exc), result="send " + errno_name(exc))
    finally:
        s.close()
        if kid:
            try:
                os.kill(kid, 9)
                os.waitpid(kid, 0)
            except OSError:
                pass
        out["ms"] = round((time.time() - t) * 1000, 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="malformed", description=__doc__.splitlines()[0])
    ap.add_argument("--kind", required=True, choices=tuple(CASES))
    ap.add_argument("--api", default="unix:/run/wrapref/api.sock")
    ap.add_argument("--cases", default=None, help="comma separated (default: all for kind)")
    ap.add_argument("--wait", type=float, default=3.0)
    args = ap.parse_args(argv)
    cases = args.cases.split(",") if args.cases else list(CASES[args.kind])
    uid = os.getuid()
    results = []
    for case in cases:
        st, body = api_request(args.api, "POST", "/api/v1/sessions", {})
        if st != 201 or not isinstance(body, dict):
            results.append({"case": case, "error": f"session: HTTP {st} {body!r}"})
            continue
        sid = body["id"]
        st, resp = api_request(args.api, "POST", f"/api/v1/sessions/{sid}/wrap-init",
                               wrap_init_body())
        if st != 200 or not isinstance(resp, dict):
            results.append({"case": case, "session": sid,
                            "error": f"wrap-init: HTTP {st} {resp!r}"})
            continue
        key = "signal_socket" if args.kind == "signal" else "notify_socket"
        path = resp.get(key)
        if not path:
            results.append({"case": case, "session": sid, "error": f"no {key} in the answer"})
            continue
        r = do_case(args.kind, case, path, args.wait)
        r["session"] = sid
        results.append(r)
    json.dump({"uid": uid, "kind": args.kind, "results": results}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
