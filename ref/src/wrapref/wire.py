"""Wire helpers for the wrap handoff: SCM_RIGHTS, SO_PEERCRED, metadata, /proc.

This module is what both the server and the client speak on the wrap sockets
(SPEC.md §1):

* notify: one ``sendmsg`` carrying a payload and exactly one fd.  A payload of at
  least 5 bytes starting with :data:`MAGIC` (0xA7) carries the wrapper PID as a
  little-endian uint32; anything else is the legacy fd-only form.  The server
  answers one status byte (:data:`STATUS_OK` or :data:`STATUS_FAIL`).
* signal: the same fd transfer, no status byte.
* ptrace: a 4-byte little-endian PID, answered by ACK (1) or NACK (0).

Threat model: everything received here comes from an untrusted local peer.
Every received fd is either kept by exactly one owner or closed, payloads and
control buffers are bounded, and the /proc readers tolerate processes that
vanish or lie (a process can change its name, not its PPid or uids).
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import re
import select
import socket
import struct
import time

__all__ = [
    "MAGIC",
    "STATUS_OK",
    "STATUS_FAIL",
    "ACK",
    "NACK",
    "MAX_PAYLOAD",
    "MAX_FDS",
    "TOKEN_LIMIT",
    "PeerCred",
    "peercred",
    "encode_metadata",
    "parse_metadata",
    "encode_pid",
    "decode_pid",
    "send_fds",
    "recv_fds",
    "close_fds",
    "fd_cloexec",
    "read_token",
    "read_small",
    "proc_status",
    "is_descendant",
    "wait_readable",
    "errno_name",
]

MAGIC = 0xA7
STATUS_OK = 1
STATUS_FAIL = 0
ACK = 1
NACK = 0
#: Data bytes read by one notify recvmsg (agentsh: 16).
MAX_PAYLOAD = 16
#: Room for this many fds in the control buffer (agentsh: 8).
MAX_FDS = 8
#: At most this many token bytes are read from a received fd.
TOKEN_LIMIT = 256

_UINT32 = struct.Struct("<I")
_INT32 = struct.Struct("<i")
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class PeerCred(tuple):
    """``(pid, uid, gid)`` from SO_PEERCRED, with names."""

    __slots__ = ()

    def __new__(cls, pid: int, uid: int, gid: int):
        return tuple.__new__(cls, (pid, uid, gid))

    pid = property(lambda self: self[0])
    uid = property(lambda self: self[1])
    gid = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"PeerCred(pid={self.pid}, uid={self.uid}, gid={self.gid})"


def peercred(sock: socket.socket) -> PeerCred:
    """Return the peer's credentials as recorded by the kernel at connect time.

    Raises OSError when the socket has none (e.g. it is not AF_UNIX).
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    # uid_t/gid_t are unsigned; "3i" would show 4294967295 as -1.
    return PeerCred(pid, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF)


def encode_metadata(pid: int) -> bytes:
    """The 5-byte notify payload: magic + wrapper PID (little-endian uint32)."""
    return bytes([MAGIC]) + _UINT32.pack(pid & 0xFFFFFFFF)


def parse_metadata(data: bytes):
    """Return the wrapper PID carried by *data*, or None for the legacy form."""
    if len(data) >= 5 and data[0] == MAGIC:
        return _UINT32.unpack(data[1:5])[0]
    return None


def encode_pid(pid: int) -> bytes:
    """The ptrace request: a 4-byte little-endian PID."""
    return _UINT32.pack(pid & 0xFFFFFFFF)


def decode_pid(data: bytes) -> int:
    """Decode a ptrace request as a signed 32-bit PID (so 0xFFFFFFFF is -1)."""
    return _INT32.unpack(data[:4])[0]


def send_fds(sock: socket.socket, data: bytes, fds) -> int:
    """Send *data* with *fds* attached (SCM_RIGHTS)."""
    anc = []
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    return sock.sendmsg([data], anc)


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int, cloexec: bool,
             dontwait: bool = False):
    """One ``recvmsg``: return ``(data, fds, msg_flags)``.

    With *cloexec* the fds arrive with FD_CLOEXEC set atomically
    (MSG_CMSG_CLOEXEC).  ``socket.recv_fds`` cannot do that, hence this.
    *dontwait* (MSG_DONTWAIT): BlockingIOError instead of a wait when nothing is there.
    """
    flags = socket.MSG_CMSG_CLOEXEC if cloexec else 0
    if dontwait:
        flags |= socket.MSG_DONTWAIT
    data, ancdata, msg_flags, _addr = sock.recvmsg(
        bufsize, socket.CMSG_SPACE(maxfds * _INT32.size), flags
    )
    fds = array.array("i")
    for level, kind, cdata in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(cdata) - (len(cdata) % fds.itemsize)
            fds.frombytes(cdata[:usable])
    return data, list(fds), msg_flags


def close_fds(fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def fd_cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def wait_readable(fds, timeout):
    """poll() *fds* for input; return the subset that is ready ([] on timeout).

    *timeout* is in seconds; None waits forever.  EINTR is retried by Python.
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR)
    ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return [fd for fd, _ev in poller.poll(ms)]


def read_token(fd: int, timeout: float, limit: int = TOKEN_LIMIT, stop_fd=None,
               nonblocking: bool = False) -> bytes:
    """Read up to *limit* bytes from *fd* until EOF, bounded by *timeout*.

    Returns what was read (possibly empty).  Raises OSError on a read error
    and TimeoutError when nothing at all arrived in time.  *nonblocking*
    (docs/hostile-users.md H16) sets O_NONBLOCK on *fd* first: poll() says a
    socket is readable as soon as one byte waits, but a blocking read then
    waits for SO_RCVLOWAT bytes, for as long as the sender likes.
    """
    if nonblocking:
        os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    out = b""
    while len(out) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        watch = [fd] if stop_fd is None else [fd, stop_fd]
        ready = wait_readable(watch, left)
        if not ready or (stop_fd is not None and stop_fd in ready and fd not in ready):
            break
        try:
            chunk = os.read(fd, limit - len(out))
        except BlockingIOError:
            continue
        if not chunk:
            return out
        out += chunk
    if not out:
        raise TimeoutError(errno.ETIMEDOUT, f"no token within {timeout:.1f}s")
    return out


def read_small(path: str, limit: int) -> bytes:
    """Up to *limit* bytes of the small file *path*: open, one read, close, nothing else.

    One read is the whole text of a /proc file (seq_file hands its record out whole when
    the buffer holds it) and of a regular file up to *limit*.  A buffered ``open()``
    adds an fstat, an isatty ioctl and an lseek (5.3 us against 9.2 us for a
    /proc/<pid>/status, timeit).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


#: A line of /proc/<pid>/status wanted, after its newline (one is put before the text).
_STATUS_LINE = re.compile(r"\n(PPid|Uid):([^\n]*)")


def proc_status(pid: int, proc: str = "/proc"):
    """Parse /proc/<pid>/status: return ``{"ppid": int, "uids": (r, e, s, fs)}``.

    Returns None when the process does not exist or the file lacks a numeric
    PPid or a Uid line (as agentsh's validateWrapperPIDForNotify; the last
    Uid line wins).
    """
    if pid <= 0:
        return None
    try:
        text = read_small(f"{proc}/{pid}/status", 65536).decode("utf-8", "replace")
    except OSError:
        return None
    ppid = None
    uids = None
    # Only the two lines wanted, found by one scan of the text; lines end at "\n" only
    # (as the kernel writes them: a process name keeps its other control characters).
    for key, value in _STATUS_LINE.findall("\n" + text):
        if key == "PPid":
            value = value.strip()
            ppid = int(value) if value.isdigit() else None
        else:
            parts = value.split()
            if len(parts) == 4 and all(p.isdigit() for p in parts):
                uids = tuple(int(p) for p in parts)
    if ppid is None or uids is None:
        return None
    return {"ppid": ppid, "uids": uids}


def is_descendant(pid: int, ancestor: int, proc: str = "/proc", max_depth: int = 256,
                  status=None) -> bool:
    """True if *pid* is *ancestor* or one of its descendants (walking PPid).

    *status*: :func:`proc_status` of *pid* if the caller has read it already (it is not
    read again).
    """
    cur = pid
    for _ in range(max_depth):
        if cur == ancestor:
            return True
        if cur <= 1:
            return False
        if status is None:
            status = proc_status(cur, proc)
            if status is None:
                return False
        cur = status["ppid"]
        status = None
    return False


def errno_name(num) -> str | None:
    """``errno.ECONNREFUSED`` -> ``"ECONNREFUSED"`` (None for None)."""
    if num is None:
        return None
    return errno.errorcode.get(num, str(num))
