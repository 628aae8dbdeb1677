"""Squat a wrap socket's path once the server removed its directory, or swap it at once.
Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.squat --path SOCKET [--deadline S] [--hold S] [--ready FILE]
                                    [--swap] [--stop FILE]

Takes the socket path (as anyone can read it in /proc/net/unix; the harness hands over the
path the server announced), then tries ``mkdir`` of its directory (0755) until it succeeds
-- EEXIST while the server's directory is still there -- or ``--deadline`` seconds pass.
Once the directory is ours, binds a listening socket (0666) at the same name and waits up
to ``--hold`` seconds for a client: whatever connects there believes it talks to the
server. A received fd is read (a pipe holding the client's token). The temp base is
world-writable with the sticky bit: anyone may create a name that no longer exists there.

``--swap``: the directory is still there and the caller can write it (CAP_DAC_OVERRIDE):
unlink the server's socket at once and bind ours in its place; ``--ready`` is then created
only once ours listens. Only our socket is removed at the end, never the directory.

``--stop FILE``: stop once FILE exists -- trying ``mkdir`` (checked every few hundred
tries), or waiting for a client (a connection already queued is still accepted and read)
-- instead of waiting out ``--deadline`` or ``--hold``.

Output: ``path``, ``found_t``, ``tries`` (mkdir attempts), ``squat_t`` (epoch seconds when
our socket was listening, or null), ``connected_t``, ``peer`` (SO_PEERCRED of the client),
``token`` (what the received fd held) and ``errno`` of the last failure.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time

from wraplab.actors._common import emit, errno_name, peercred


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="squat", description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True, help="the socket path to take over")
    ap.add_argument("--deadline", type=float, default=10.0, help="to take the path (s)")
    ap.add_argument("--hold", type=float, default=3.0, help="to wait for a client (s)")
    ap.add_argument("--ready", help="create this file once the path is found (a barrier; "
                    "with --swap: once our socket listens)")
    ap.add_argument("--stop", help="stop taking the path or waiting for a client once this "
                    "file exists")
    ap.add_argument("--swap", action="store_true",
                    help="replace the socket in its existing directory (needs write access)")
    args = ap.parse_args(argv)
    out: dict = {"uid": os.getuid(), "pid": os.getpid(), "squat_t": None,
                 "connected_t": None, "token": None, "errno": None}
    path = out["path"] = args.path
    out["found_t"] = time.time()
    if args.ready and not args.swap:
        _ready(args.ready, path)
    d = os.path.dirname(path)
    end = time.monotonic() + args.deadline
    tries = 0
    while not args.swap:
        tries += 1
        try:
            os.mkdir(d, 0o755)
            break
        except OSError as exc:
            out["errno"] = errno_name(exc)
            if time.monotonic() >= end or (args.stop and tries % 256 == 0
                                           and os.path.exists(args.stop)):
                out["tries"] = tries
                emit(out)
            time.sleep(0.0002)  # EEXIST: the server's directory is still there
    out["tries"] = tries
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if args.swap:
            try:
                st = os.lstat(path)
                out["replaced"] = {"uid": st.st_uid, "mode": oct(st.st_mode & 0o7777)}
                os.unlink(path)
            except OSError as exc:
                out["errno"] = errno_name(exc)
                emit(out)
        else:
            os.chmod(d, 0o755)
        listener.bind(path)
        os.chmod(path, 0o666)
        listener.listen(4)
        out["squat_t"] = time.time()
        out["errno"] = None
        if args.ready and args.swap:
            _ready(args.ready, path)
        conn = _accept(listener, args.hold, args.stop)
        if conn is None:
            emit(out)
        with conn:
            out["connected_t"] = time.time()
            pid, uid, gid = peercred(conn)
            out["peer"] = {"pid": pid, "uid": uid, "gid": gid}
            conn.settimeout(args.hold)
            try:
                msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 4)
            except OSError as exc:
                out["errno"] = errno_name(exc)
                emit(out)
            out["payload"] = msg.hex()
            for fd in fds:
                try:
                    if select.select([fd], [], [], 1.0)[0]:
                        out["token"] = os.read(fd, 256).decode(errors="replace") or None
                finally:
                    os.close(fd)
    finally:
        listener.close()
        for p in (path,) if args.swap else (path, d):
            try:
                os.rmdir(p) if p == d else os.unlink(p)
            except OSError:
                pass
    emit(out)


def _accept(listener: socket.socket, hold: float, stop: str | None):
    """The first client within ``hold`` seconds, or until ``stop`` exists; None if none."""
    end = time.monotonic() + hold
    while True:
        left = end - time.monotonic()
        stopping = stop is not None and os.path.exists(stop)
        wait = 0 if stopping else (min(left, 0.05) if stop else left)
        if select.select([listener], [], [], max(wait, 0))[0]:
            conn, _ = listener.accept()
            return conn
        if stopping or left <= 0:
            return None


def _ready(file: str, path: str) -> None:
    with open(file, "x") as f:
        f.write(path + "\n")


if __name__ == "__main__":
    main()
