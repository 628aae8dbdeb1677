"""Find listening Unix sockets the way an unprivileged local user can: read /proc/net/unix
(which shows every bound path, even inside a directory we cannot enter) and list the
server's temp base and the directories in it (where their modes let us). Stdlib only;
prints one JSON object.

    python3 -m wraplab.actors.find_sockets --base /tmp [--wait 5] [--skip PATH ...]

No file-name pattern is assumed: a server may name its sockets and directories as it likes
(the harness learns the owner's socket from the server's wrap-init answer, and checks that
what is found here is that socket). The temp base is public knowledge (it is ``$TMPDIR``
of the server); nothing here reads the server's log or events.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time

from wraplab.actors._common import errno_name

_LISTENING = 0x10000  # __SO_ACCEPTCON in the Flags column of /proc/net/unix


def from_proc_net_unix(base: str) -> tuple[list[str], str | None]:
    """Listening socket paths under ``base`` in /proc/net/unix (path: the 8th column)."""
    prefix = base.rstrip("/") + "/"
    found = []
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as f:
            next(f, None)
            for line in f:
                parts = line.split(None, 7)
                if len(parts) == 8 and int(parts[3], 16) & _LISTENING:
                    path = parts[7].strip()
                    if path.startswith(prefix):
                        found.append(path)
    except OSError as exc:
        return [], errno_name(exc)
    return sorted(set(found)), None


def from_listing(base: str) -> tuple[list[str], dict]:
    """Socket files found by listing ``base`` and each directory in it."""
    info: dict = {"base": base, "errno": None, "dirs": {}}
    found: list[str] = []
    try:
        entries = sorted(os.listdir(base))
    except OSError as exc:
        info["errno"] = errno_name(exc)
        return [], info
    for name in entries:
        d = os.path.join(base, name)
        try:
            st = os.lstat(d)
        except OSError:
            continue
        if stat.S_ISSOCK(st.st_mode):
            found.append(d)
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        try:
            inner = sorted(os.listdir(d))
            info["dirs"][name] = None
        except OSError as exc:
            info["dirs"][name] = errno_name(exc)
            continue
        for n in inner:
            try:
                if stat.S_ISSOCK(os.lstat(os.path.join(d, n)).st_mode):
                    found.append(os.path.join(d, n))
            except OSError:
                continue
    return found, info


def discover(base: str, wait: float = 0.0, skip=(), poll: float = 0.005) -> dict:
    """Look (and keep looking until ``wait`` seconds have passed) for a socket under
    ``base`` that is not in ``skip``."""
    t0 = time.time()
    deadline = t0 + wait
    tries = 0
    skip = set(skip)
    while True:
        tries += 1
        proc, proc_err = from_proc_net_unix(base)
        listed, listing = from_listing(base)
        found: dict[str, list[str]] = {}
        for p in proc:
            found.setdefault(p, []).append("/proc/net/unix")
        for p in listed:
            found.setdefault(p, []).append("listdir")
        matches = sorted(p for p in found if p not in skip)
        if matches or time.time() >= deadline:
            break
        time.sleep(poll)  # one look at a real condition; the bound is ``wait``
    return {
        "base": base,
        "path": matches[0] if matches else None,
        "found": [{"path": p, "via": found[p]} for p in sorted(found)],
        "proc_net_unix_errno": proc_err,
        "listing": listing,
        "tries": tries,
        "t0": t0,
        "waited_ms": round((time.time() - t0) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="find_sockets", description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the server's temp base")
    ap.add_argument("--wait", type=float, default=0.0, help="keep looking this long (s)")
    ap.add_argument("--skip", action="append", default=[], metavar="PATH",
                    help="a socket not to report (repeatable)")
    args = ap.parse_args(argv)
    out = discover(args.base, args.wait, args.skip)
    out.update(uid=os.getuid(), pid=os.getpid())
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["path"] else 1


if __name__ == "__main__":
    sys.exit(main())
