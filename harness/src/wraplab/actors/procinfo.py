"""Facts about a process from /proc, as JSON (the harness's ``run.server_info``).

    python3 -m wraplab.actors.procinfo PID [--pipe INODE]

Prints ``{"pid", "exists", "name", "ppid", "state", "uid", "uids", "gid", "gids",
"groups", "cap_eff", "cap_eff_names", "cap_prm", "cap_bnd", "threads", "fd_count",
"cmdline"}``; uids/gids are [real, effective, saved, fs]. ``--pipe INODE`` adds ``pipe_fds``:
the process's fds open on that pipe, each ``{"fd", "flags", "cloexec"}`` from
/proc/PID/fdinfo (flags in octal as the kernel prints them; O_CLOEXEC = 02000000).
"""

import argparse
import os

from wraplab.actors._common import cap_names, emit, proc_status

#: O_CLOEXEC as /proc/PID/fdinfo shows it (octal 02000000 on Linux).
O_CLOEXEC = 0o2000000


def info(pid):
    out = {"pid": pid, "exists": False}
    try:
        status = proc_status(pid)
        fds = os.listdir(f"/proc/{pid}/fd")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except FileNotFoundError:
        return out
    uids = [int(x) for x in status["Uid"].split()]
    gids = [int(x) for x in status["Gid"].split()]
    out.update(
        exists=True,
        name=status.get("Name"),
        ppid=int(status.get("PPid", "0")),
        state=status.get("State"),
        uid=uids[0],
        uids=uids,
        gid=gids[0],
        gids=gids,
        groups=sorted(int(g) for g in status.get("Groups", "").split()),
        cap_eff=status.get("CapEff"),
        cap_eff_names=cap_names(status.get("CapEff", "0")),
        cap_prm=status.get("CapPrm"),
        cap_bnd=status.get("CapBnd"),
        threads=int(status.get("Threads", "0")),
        fd_count=len(fds),
        cmdline=cmdline,
    )
    return out


def pipe_fds(pid, inode):
    """The fds of ``pid`` open on the pipe ``inode``, with their fdinfo flags."""
    out = []
    want = f"pipe:[{inode}]"
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return out
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") != want:
                continue
            with open(f"/proc/{pid}/fdinfo/{name}", encoding="ascii") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # closed meanwhile
        flags = int(fields.get("flags", "0").strip(), 8)
        out.append({"fd": int(name), "flags": f"{flags:o}", "cloexec": bool(flags & O_CLOEXEC)})
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="procinfo", description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    parser.add_argument("--pipe", type=int, metavar="INODE",
                        help="also list the fds open on this pipe, with their flags")
    args = parser.parse_args(argv)
    out = info(args.pid)
    if args.pipe is not None:
        out["pipe_fds"] = pipe_fds(args.pid, args.pipe)
    emit(out)


if __name__ == "__main__":
    main()
