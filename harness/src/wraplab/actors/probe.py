"""Who am I, as the kernel says: uid/gid/groups, capabilities, network; optionally connect.

    python3 -m wraplab.actors.probe [--connect PATH] [--expect-close SECONDS]

Prints ``{"uid", "euid", "gid", "egid", "groups", "pid", "cap_eff", "caps", "interfaces",
"python", "connect": null | {"path", "result": "ok" | "EACCES" | ..., "peer": {"pid",
"uid", "gid"} | null, "closed_by_peer": bool | null}}``. ``peer`` is SO_PEERCRED of the
listening end (the server process). With ``--expect-close S`` the probe then waits up to
S seconds for the server to close the connection (what a server does to a refused peer).
"""

import argparse
import os
import platform
import select
import socket

from wraplab.actors._common import cap_names, emit, errno_name, peercred, proc_status


def interfaces():
    try:
        with open("/proc/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return None
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def connect(path, expect_close):
    result = {"path": path, "result": None, "peer": None, "closed_by_peer": None}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(10)
        try:
            sock.connect(path)
        except OSError as exc:
            result["result"] = errno_name(exc)
            return result
        result["result"] = "ok"
        pid, uid, gid = peercred(sock)
        result["peer"] = {"pid": pid, "uid": uid, "gid": gid}
        if expect_close:
            ready, _, _ = select.select([sock], [], [], expect_close)
            if ready:
                try:
                    result["closed_by_peer"] = sock.recv(4096) == b""
                except OSError as exc:
                    result["closed_by_peer"] = errno_name(exc) in ("ECONNRESET", "EPIPE")
            else:
                result["closed_by_peer"] = False
        return result
    finally:
        sock.close()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="probe", description=__doc__.splitlines()[0])
    parser.add_argument("--connect", metavar="PATH")
    parser.add_argument("--expect-close", type=float, default=0.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    status = proc_status()
    out = {
        "uid": os.getuid(),
        "euid": os.geteuid(),
        "gid": os.getgid(),
        "egid": os.getegid(),
        "groups": sorted(os.getgroups()),
        "pid": os.getpid(),
        "cap_eff": status.get("CapEff"),
        "caps": cap_names(status.get("CapEff", "0")),
        "interfaces": interfaces(),
        "python": platform.python_version(),
        "connect": connect(args.connect, args.expect_close) if args.connect else None,
    }
    emit(out)


if __name__ == "__main__":
    main()
