"""A confused deputy: a process of the owner hands an already-connected wrap socket to
someone else. Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.deputy receive --rendezvous PATH --do handoff|stall|report
        [--kind notify|signal|ptrace] [--hold S] [--wait S]          # the attacker
    python3 -m wraplab.actors.deputy pass --rendezvous PATH (--api API --kind K | --path P)
        [--wait S]                                                   # the owner's deputy
    python3 -m wraplab.actors.deputy catch --listen PATH [--wait S]  # a test listener

The kernel records SO_PEERCRED when a Unix socket *connects*: whoever later holds the
connected socket (received over SCM_RIGHTS, inherited) speaks with the connector's
credentials. ``pass`` (run as the owner) creates a session and a wrap-init of its own
(``caller_uid`` = its uid) or takes ``--path``, connects to the wrap socket, then connects
to the rendezvous socket and sends the connected socket there (SCM_RIGHTS), and closes its
own copy. ``receive`` (run as the attacker) listens on the rendezvous (mode 0666, so the
deputy can reach it), takes the socket and then:

- ``handoff``: a full handoff of its own over it: notify = 0xA7 + the pid of a child of
  the attacker's (a stand-in wrapper) + the read end of a pipe holding the attacker's
  token; signal = 0x00 + that fd; ptrace = the attacker's own pid; then the answer, and
  (notify, signal) whether the token was read out of the pipe (``consumed``: the attacker
  kept the read end and sees with FIONREAD what is left in it);
- ``stall``: sends nothing and watches for ``--hold`` seconds what the server does (a
  SIGTERM ends the watch early: the harness has seen enough, the connection was still
  open then, ``released``);
- ``report``: sends ``uid=U pid=P`` and reads one reply line (the lab tests' ``catch``).

``catch`` (a test listener, any uid) accepts one connection and reports the SO_PEERCRED
it reads and the line received, so a test can show the credentials of a passed socket.
"""

from __future__ import annotations

import argparse
import array
import os
import secrets
import socket
import stat
import struct
import time

from wraplab.actors._common import (
    api_request,
    emit,
    errno_name,
    peercred,
    release_on_term,
    token_drained,
    watch,
    wrap_init_body,
    wrapper_child,
)

MAGIC = 0xA7


def _listen(path: str) -> socket.socket:
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Created 0666 at once: a bind then chmod let a fast peer meet the umask's mode
    # (EACCES, which the connecting side does not retry).
    old = os.umask(0o111)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o666)
    s.listen(1)
    return s


def _accept(listener: socket.socket, wait: float) -> socket.socket:
    listener.settimeout(wait)
    conn, _ = listener.accept()
    conn.settimeout(None)
    return conn


def cmd_receive(args) -> None:
    release_on_term()  # a SIGTERM ends a stall's watch early (the harness has seen enough)
    out: dict = {"role": "receiver", "uid": os.getuid(), "pid": os.getpid(),
                 "rendezvous": args.rendezvous, "do": args.do, "kind": args.kind}
    t0 = time.time()
    try:
        listener = _listen(args.rendezvous)
    except OSError as exc:
        out.update(errno=errno_name(exc), result="rendezvous " + errno_name(exc))
        emit(out, 1)
    try:
        conn = _accept(listener, args.wait)
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 16, 4)
    except OSError as exc:
        out.update(errno=errno_name(exc), result="no socket received: " + errno_name(exc))
        emit(out, 1)
    finally:
        listener.close()
        try:
            os.unlink(args.rendezvous)
        except OSError:
            pass
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        out.update(errno="EBADMSG", result=f"{len(fds)} fds received, want 1")
        emit(out, 1)
    s = socket.socket(fileno=fds[0])
    out["received_after_ms"] = round((time.time() - t0) * 1000, 2)
    t = out["t"] = time.time()
    with s:
        if args.do == "report":
            s.sendall(f"uid={os.getuid()} pid={os.getpid()}\n".encode())
            s.settimeout(args.wait)
            out["reply"] = s.recv(200).decode(errors="replace").strip()
            out["result"] = "reported"
        elif args.do == "stall":
            what, _, released = watch(s, 1, args.hold)
            out["server"] = what
            if released:
                out["released"] = True  # the harness had seen enough: still open then
            out["result"] = "server " + {"eof": "closed it", "open": "kept it open"}.get(
                what, what)
        else:
            _handoff(s, args.kind, out)
    out["ms"] = round((time.time() - t) * 1000, 2)
    emit(out)



def _handoff(s: socket.socket, kind: str, out: dict) -> None:
    token = out["token"] = "intruder-" + secrets.token_hex(8) if kind != "ptrace" else None
    child = wrapper_child() if kind == "notify" else None
    if child:
        out["wrapper_pid"] = child
    r, w = os.pipe()
    try:
        os.write(w, (token or "").encode())
        os.close(w)
        w = -1
        try:
            if kind == "ptrace":
                s.sendall(struct.pack("<I", os.getpid()))
            else:
                payload = (bytes([MAGIC]) + struct.pack("<I", child or os.getpid())
                           if kind == "notify" else b"\x00")
                s.sendmsg([payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                       array.array("i", [r]))])
        except OSError as exc:
            out.update(errno=errno_name(exc), result="send " + errno_name(exc),
                       accepted=False)
            return
        what, data, _ = watch(s, 1, 3.0)
        if kind != "ptrace":
            out["consumed"] = token_drained(r, token)
        if what == "data":
            out.update(status=data[0], accepted=data[0] == 1, result=f"status byte {data[0]}")
        else:
            # The signal socket answers nothing: whether the token was drained says whether
            # the server took the fd.
            out.update(status=None, accepted=None, server=what,
                       result={"eof": "server closed it", "open": "no answer"}.get(what, what))
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
        if child:
            try:
                os.kill(child, 9)
                os.waitpid(child, 0)
            except OSError:
                pass


def cmd_pass(args) -> None:
    out: dict = {"role": "deputy", "uid": os.getuid(), "pid": os.getpid(), "kind": args.kind}
    path = args.path
    if not path:
        st, body = api_request(args.api, "POST", "/api/v1/sessions", {})
        if st != 201 or not isinstance(body, dict):
            out["error"] = f"session: HTTP {st} {body!r}"
            emit(out, 1)
        out["session"] = sid = body["id"]
        st, resp = api_request(args.api, "POST", f"/api/v1/sessions/{sid}/wrap-init",
                               wrap_init_body(out["uid"]))
        out["http"] = st
        if st != 200 or not isinstance(resp, dict):
            out["error"] = f"wrap-init: HTTP {st} {resp!r}"
            emit(out, 1)
        path = resp.get("signal_socket") if args.kind == "signal" else resp.get("notify_socket")
    out["path"] = path
    t = out["t"] = time.time()
    deadline = time.monotonic() + args.wait
    # A wrap socket named by wrap-init exists already: one try. A --path listener (the
    # tests' catcher) may still be starting: until it listens, bounded by --wait.
    try:
        wrap = _dial(path, deadline if args.path else 0)
    except OSError as exc:
        out.update(errno=errno_name(exc), result="connect " + errno_name(exc))
        emit(out)
    out["connected"] = True
    with wrap:
        try:
            rv = _dial(args.rendezvous, deadline)  # until the receiver listens
        except OSError as exc:
            out.update(errno=errno_name(exc), result="rendezvous " + errno_name(exc))
            emit(out, 1)
        with rv:
            socket.send_fds(rv, [b"D"], [wrap.fileno()])
    out["passed"] = True
    out["result"] = "connected and passed"
    out["ms"] = round((time.time() - t) * 1000, 2)
    emit(out)


def _dial(path: str, deadline: float) -> socket.socket:
    """Connect (blocking, 3 s bound); retry on ENOENT/ECONNREFUSED until ``deadline``."""
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3.0)
        try:
            s.connect(path)
            s.settimeout(None)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
        except OSError:
            s.close()
            raise


def cmd_catch(args) -> None:
    out: dict = {"role": "catcher", "uid": os.getuid(), "listen": args.listen}
    listener = _listen(args.listen)
    try:
        conn = _accept(listener, args.wait)
    except OSError as exc:
        out.update(errno=errno_name(exc))
        emit(out, 1)
    finally:
        listener.close()
    with conn:
        pid, uid, gid = peercred(conn)
        out.update(peer_pid=pid, peer_uid=uid, peer_gid=gid)
        conn.settimeout(args.wait)
        said = b""
        while not said.endswith(b"\n"):
            chunk = conn.recv(200)
            if not chunk:
                break
            said += chunk
        out["said"] = said.decode(errors="replace").strip()
        conn.sendall(b"ok\n")
    try:
        os.unlink(args.listen)
    except OSError:
        pass
    emit(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="deputy", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receive")
    r.add_argument("--rendezvous", required=True)
    r.add_argument("--do", choices=("handoff", "stall", "report"), default="handoff")
    r.add_argument("--kind", choices=("notify", "signal", "ptrace"), default="notify")
    r.add_argument("--hold", type=float, default=5.0)
    r.add_argument("--wait", type=float, default=10.0)
    p = sub.add_parser("pass")
    p.add_argument("--rendezvous", required=True)
    p.add_argument("--api")
    p.add_argument("--path")
    p.add_argument("--kind", choices=("notify", "signal", "ptrace"), default="notify")
    p.add_argument("--wait", type=float, default=10.0)
    c = sub.add_parser("catch")
    c.add_argument("--listen", required=True)
    c.add_argument("--wait", type=float, default=10.0)
    args = ap.parse_args(argv)
    if args.cmd == "pass" and not (args.path or args.api):
        ap.error("pass needs --api or --path")
    {"receive": cmd_receive, "pass": cmd_pass, "catch": cmd_catch}[args.cmd](args)


if __name__ == "__main__":
    main()
