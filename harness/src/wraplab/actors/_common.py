"""Helpers shared by the in-lab tools (stdlib only)."""

import errno
import http.client
import json
import os
import select
import signal
import socket
import struct
import sys
import time

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
    """The errno's symbolic name (``EACCES``); a socket timeout is ``ETIMEDOUT``."""
    if isinstance(exc, socket.timeout):
        return "ETIMEDOUT"
    num = getattr(exc, "errno", None)
    if num is None:
        return type(exc).__name__
    return errno.errorcode.get(num, str(num))


_TERM_FD = None


def release_on_term(handler=None):
    """From now on a SIGTERM does not kill this tool: it runs ``handler`` (if any) and
    ends the current :func:`watch` (the harness has seen what it needed: the tool reports
    and exits). Returns an fd that becomes readable on the signal, for a tool's own
    ``select``. Call it early in ``main``, before the harness can signal."""
    global _TERM_FD
    if _TERM_FD is None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.signal(signal.SIGTERM, handler or (lambda *_: None))
        signal.set_wakeup_fd(w)
        _TERM_FD = r
    return _TERM_FD


def watch(s, n, wait):
    """What the server does on connected socket ``s`` within ``wait`` s: ``(what, data,
    released)``; what is ``data`` (up to ``n`` bytes came), ``eof``, an errno name, or
    ``open`` (nothing by then, or the harness's SIGTERM ended the watch first:
    ``released``; see :func:`release_on_term`)."""
    term = _TERM_FD
    ready, _, _ = select.select([s] + ([term] if term is not None else []), [], [], wait)
    if s not in ready:
        released = term is not None and term in ready
        if released:
            try:
                os.read(term, 64)
            except BlockingIOError:
                pass
        return "open", b"", released
    try:
        data = s.recv(n, socket.MSG_DONTWAIT)
    except OSError as exc:
        return errno_name(exc), b"", False
    return ("eof" if not data else "data"), data, False


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


def wrapper_child():
    """Fork a stand-in wrapper child (PPid = us, sleeping 30 s); its pid, or None."""
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(0)
    return pid


# ------------------------------------------------------------------ the server's API


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (``unix:PATH`` addresses)."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def token_drained(r, token):
    """Whether ``token`` was read out of the pipe whose read end ``r`` we kept a copy of
    (FIONREAD shows what is still in it): whoever we passed the fd to consumed it."""
    import array
    import fcntl
    import termios

    buf = array.array("i", [0])
    try:
        fcntl.ioctl(r, termios.FIONREAD, buf, True)
    except OSError:
        return False
    return buf[0] < len(token.encode())


def api_connection(api, timeout):
    """A connection to ``unix:PATH`` or ``tcp:HOST:PORT`` (not yet connected)."""
    scheme, _, rest = api.partition(":")
    if scheme == "unix":
        return UnixHTTPConnection(rest, timeout)
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    raise SystemExit(f"unknown API address {api!r} (want unix:PATH or tcp:HOST:PORT)")


def api_request(api, method, path, body=None, timeout=10.0):
    """One JSON request: ``(status, parsed body)``; ``(None, exception name)`` on failure."""
    conn = api_connection(api, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Connection": "close",
                                                         "Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as exc:
        return None, type(exc).__name__
    finally:
        conn.close()


def wrap_init_body(uid=None):
    """A wrap-init body as agentsh's client sends it: caller_uid = our uid, omitted if 0."""
    uid = os.getuid() if uid is None else uid
    body = {"agent_command": "true", "agent_args": []}
    if uid:
        body["caller_uid"] = uid
    return body


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
