"""Facts about a process from /proc, as JSON (the harness's ``run.server_info``).

    python3 -m wraplab.actors.procinfo PID

Prints ``{"pid", "exists", "name", "ppid", "state", "uid", "uids", "gid", "gids",
"groups", "cap_eff", "cap_eff_names", "cap_prm", "cap_bnd", "threads", "fd_count",
"cmdline"}``; uids/gids are [real, effective, saved, fs].
"""

import argparse
import os

from wraplab.actors._common import cap_names, emit, proc_status


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="procinfo", description=__doc__.splitlines()[0])
    parser.add_argument("pid", type=int)
    args = parser.parse_args(argv)
    emit(info(args.pid))


if __name__ == "__main__":
    main()
