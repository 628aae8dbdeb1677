"""Find wrap sockets the way an unprivileged local user can: list the server's temp base
(when its mode lets us) and read /proc/net/unix (which shows every bound path, even inside
a directory we cannot enter). Stdlib only; prints one JSON object.

    python3 -m wraplab.actors.find_sockets --base /tmp [--kind notify] [--wait 5]

The temp base is public knowledge (it is ``$TMPDIR`` of the server, and ``/healthz`` of the
0666 API says it); nothing here reads the server's log or events.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from wraplab.actors._common import errno_name

KINDS = ("notify", "signal", "ptrace")
_NAME = re.compile(r"^(notify|signal|ptrace)-[^/]+\.sock$")


def from_proc_net_unix(base: str) -> tuple[list[str], str | None]:
    """Socket paths under ``base`` listed in /proc/net/unix (path is the 8th column)."""
    prefix = base.rstrip("/") + "/"
    found = []
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 7)
                if len(parts) == 8:
                    path = parts[7].strip()
                    if path.startswith(prefix) and _NAME.match(os.path.basename(path)):
                        found.append(path)
    except OSError as exc:
        return [], errno_name(exc)
    return sorted(set(found)), None


def from_listing(base: str) -> tuple[list[str], dict]:
    """Socket paths found by listing ``base`` and each ``wrap-*`` directory in it."""
    info: dict = {"base": base, "errno": None, "dirs": {}}
    found: list[str] = []
    try:
        entries = sorted(os.listdir(base))
    except OSError as exc:
        info["errno"] = errno_name(exc)
        return [], info
    for name in entries:
        if not name.startswith(("wrap-", "agentsh-wrap-")):
            continue
        d = os.path.join(base, name)
        try:
            inner = sorted(os.listdir(d))
            info["dirs"][name] = None
        except OSError as exc:
            info["dirs"][name] = errno_name(exc)
            continue
        found.extend(os.path.join(d, n) for n in inner if _NAME.match(n))
    return found, info


def kind_of(path: str) -> str:
    return os.path.basename(path).split("-", 1)[0]


def discover(base: str, kind: str = "any", wait: float = 0.0, poll: float = 0.005) -> dict:
    """Look (and keep looking until ``wait`` seconds have passed) for a socket of ``kind``."""
    t0 = time.time()
    deadline = t0 + wait
    tries = 0
    while True:
        tries += 1
        proc, proc_err = from_proc_net_unix(base)
        listed, listing = from_listing(base)
        found: dict[str, list[str]] = {}
        for p in proc:
            found.setdefault(p, []).append("/proc/net/unix")
        for p in listed:
            found.setdefault(p, []).append("listdir")
        matches = sorted(p for p in found if kind == "any" or kind_of(p) == kind)
        if matches or time.time() >= deadline:
            break
        time.sleep(poll)
    return {
        "base": base,
        "kind": kind,
        "path": matches[0] if matches else None,
        "found": [{"path": p, "kind": kind_of(p), "via": found[p]} for p in sorted(found)],
        "proc_net_unix_errno": proc_err,
        "listing": listing,
        "tries": tries,
        "t0": t0,
        "waited_ms": round((time.time() - t0) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="find_sockets", description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the server's temp base")
    ap.add_argument("--kind", default="any", choices=(*KINDS, "any"))
    ap.add_argument("--wait", type=float, default=0.0, help="keep looking this long (s)")
    args = ap.parse_args(argv)
    out = discover(args.base, args.kind, args.wait)
    out.update(uid=os.getuid(), pid=os.getpid())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["path"] else 1


if __name__ == "__main__":
    sys.exit(main())
