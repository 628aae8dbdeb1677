"""Many small operations, counted. Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.churn connects --path SOCK --count N [--seconds S] [--watch S]
    python3 -m wraplab.actors.churn wrap-inits --count N [--api unix:SOCK] [--seconds S]

``connects``: N blocking connect+close on a socket (each bounded by a 2 s SO_SNDTIMEO),
outcomes counted by errno name (``ok`` when connected); with ``--watch S`` each connection
is watched up to S seconds before we close it, and ``closed_by_server`` counts those the
server turned away (it closed them on us, or answered status 0 / NACK). ``wrap-inits``:
N sessions, each with one wrap-init (``caller_uid`` = getuid()) that is never dialled,
answers counted by HTTP status. Both stop early at ``--seconds``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import struct
import sys
import time

from wraplab.actors._common import api_request, wrap_init_body


def connects(path: str, count: int, seconds: float, watch: float = 0.0) -> dict:
    out: dict[str, int] = {}
    closed = 0
    tv = struct.pack("ll", 2, 0)
    t0 = time.monotonic()
    n = 0
    while n < count:
        n += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        try:
            s.connect(path)
            key = "ok"
            if watch > 0:
                closed += _closed_on_us(s, watch)
        except OSError as exc:
            key = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        finally:
            s.close()
        out[key] = out.get(key, 0) + 1
        if time.monotonic() - t0 > seconds:
            break
    res = {"attempts": n, "outcomes": out, "seconds": round(time.monotonic() - t0, 3)}
    if watch > 0:
        res["closed_by_server"] = closed
    return res


def _closed_on_us(s: socket.socket, watch: float) -> int:
    """1 when the server turns the connection away within ``watch`` s: closes it (EOF, a
    reset) or answers status 0 / NACK."""
    s.settimeout(watch)
    try:
        return 1 if s.recv(1) in (b"", b"\x00") else 0
    except socket.timeout:
        return 0
    except OSError:
        return 1  # ECONNRESET: closed on us with data unread


def wrap_inits(api: str, count: int, seconds: float) -> dict:
    out: dict[str, int] = {}
    uid = os.getuid()
    t0 = time.monotonic()
    n = 0
    while n < count:
        n += 1
        st, body = api_request(api, "POST", "/api/v1/sessions", {})
        if st == 201 and isinstance(body, dict):
            st, _ = api_request(api, "POST", f"/api/v1/sessions/{body['id']}/wrap-init",
                                wrap_init_body(uid))
            key = str(st)
        else:
            key = f"session:{st}"
        out[key] = out.get(key, 0) + 1
        if time.monotonic() - t0 > seconds:
            break
    return {"attempts": n, "outcomes": out, "seconds": round(time.monotonic() - t0, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="churn", description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("connects", "wrap-inits"))
    ap.add_argument("--path")
    ap.add_argument("--api", default="unix:/run/wrapref/api.sock")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--watch", type=float, default=0.0,
                    help="connects: watch each connection up to S s for the server's close")
    args = ap.parse_args(argv)
    if not 0 < args.count <= 100000:
        ap.error("--count: 1..100000")
    if args.mode == "connects":
        if not args.path:
            ap.error("connects needs --path")
        res = connects(args.path, args.count, args.seconds, args.watch)
    else:
        res = wrap_inits(args.api, args.count, args.seconds)
    res.update(uid=os.getuid(), mode=args.mode)
    json.dump(res, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
