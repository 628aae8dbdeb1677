"""Helpers shared by the in-lab tools (stdlib only)."""

import errno
import json
import os
import socket
import struct
import sys

CAP_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
)


def emit(obj, code=0):
    """Print one JSON object and exit."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def errno_name(exc):
    num = getattr(exc, "errno", None)
    if num is None:
        return type(exc).__name__
    return errno.errorcode.get(num, str(num))


def cap_names(mask_hex):
    mask = int(mask_hex, 16)
    names = [name for bit, name in enumerate(CAP_NAMES) if mask >> bit & 1]
    names += [f"cap_{bit}" for bit in range(len(CAP_NAMES), 64) if mask >> bit & 1]
    return names


def proc_status(pid="self"):
    """/proc/PID/status as a dict of strings."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def peercred(sock):
    """(pid, uid, gid) of the other end of a connected Unix socket, from the kernel."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def children_map():
    """{ppid: [pid, ...]} for every process visible in /proc."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                data = f.read()
        except OSError:
            continue
        fields = data.rsplit(")", 1)[-1].split()
        kids.setdefault(int(fields[1]), []).append(int(name))
    return kids
