"""Run a command as root of a new user namespace that maps only the given ids.

    python3 -m wraplab.actors.userns --id 0 --id 1001 --id 65534 -- wrapref serve ...

Each ``--id N`` maps uid N and gid N of the new namespace to uid/gid N outside
(identity); every other id is unmapped, so the command sees it as the kernel's
overflow id (65534): in SO_PEERCRED, in ``stat``, in ``/proc/PID/status``.
The command keeps this process's pid (it is exec'd here) and runs as uid 0 of the
namespace, with the capabilities root has there, less every capability missing from
this process's bounding set before the namespace was made: ``unshare`` hands the new
namespace a full bounding set, so without that step a container's ``cap_drop`` (the
root-no-chown placement) would silently come back.

How: a helper child forked *before* ``unshare(CLONE_NEWUSER)`` stays in the parent
namespace, where it has CAP_SETUID/CAP_SETGID, and writes this process's
``uid_map``/``gid_map``; a process cannot map ids other than its own from inside.
Needs root (CAP_SETUID, CAP_SETGID) and a seccomp policy that allows CLONE_NEWUSER.
Errors go to stderr with exit 125 (as ``env``/``unshare`` do); nothing is left behind.
"""

import argparse
import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
PR_CAPBSET_DROP = 24
FAILED = 125


def die(msg: str):
    sys.stderr.write(f"userns: {msg}\n")
    sys.exit(FAILED)


def id_map(ids) -> str:
    return "".join(f"{i} {i} 1\n" for i in sorted(set(ids)))


def write_maps(pid: int, ids) -> None:
    text = id_map(ids)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)


def bounding_set() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    raise OSError("no CapBnd in /proc/self/status")


def keep_only(libc, bounding: int) -> list:
    """Drop from the bounding set every capability not in ``bounding``; return them."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    dropped = []
    for cap in range(last + 1):
        if not bounding >> cap & 1:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {cap}")
            dropped.append(cap)
    return dropped


def main(argv=None):
    parser = argparse.ArgumentParser(prog="userns", description=__doc__.splitlines()[0])
    parser.add_argument("--id", dest="ids", type=int, action="append", required=True,
                        help="an id mapped to itself (repeat); 0 is always mapped")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    ids = {0, *args.ids}
    if any(i < 0 or i > 4294967294 for i in ids):
        parser.error("ids are 0..4294967294")
    bounding = bounding_set()
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    helper = os.fork()
    if helper == 0:  # stays in the parent user namespace
        os.close(go_w)
        os.close(done_r)
        code = 1
        try:
            if os.read(go_r, 1) == b"1":
                write_maps(parent, ids)
                os.write(done_w, b"1")
                code = 0
        except OSError as exc:
            os.write(2, f"userns: writing the id maps of {parent}: {exc}\n".encode())
        os._exit(code)
    os.close(go_r)
    os.close(done_w)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        err = ctypes.get_errno()
        os.close(go_w)  # the helper reads EOF and leaves
        os.waitpid(helper, 0)
        die(f"unshare(CLONE_NEWUSER): {os.strerror(err)} "
            "(a container needs its seccomp filter relaxed for this)")
    os.write(go_w, b"1")
    os.close(go_w)
    ok = os.read(done_r, 1) == b"1"
    os.close(done_r)
    os.waitpid(helper, 0)
    if not ok:
        die("the id maps could not be written")
    try:
        os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        keep_only(libc, bounding)
    except OSError as exc:
        die(f"becoming root of the namespace: {exc}")
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        die(f"{command[0]}: {exc.strerror}")


if __name__ == "__main__":
    main()
