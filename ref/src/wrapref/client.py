"""The owner's client: the stand-in for ``agentsh wrap`` (docs/design.md §2).

:class:`WrapClient` creates a session (or takes one), calls wrap-init with
``caller_uid = getuid()`` (omitted when 0, as agentsh's omitempty does;
``legacy`` omits it always, ``caller_uid=N`` claims another), then completes
the notify (+ signal) or ptrace handoff.  Each fd handed over is the read end
of a pipe holding a random token, so the server can prove which client's fd
arrived.  :meth:`WrapClient.run` returns one JSON-able dict; the CLI prints it.

Dialing (H12):

``once``
    agentsh's client: one non-blocking connect; EAGAIN (full backlog) fails.
``retry``
    a blocking socket bounded by SO_SNDTIMEO/SO_RCVTIMEO (set with
    setsockopt: ``settimeout()`` would make connect non-blocking), retried on
    EAGAIN/ECONNREFUSED/ENOENT until the timeout.

Who is at the other end (docs/hostile-users.md H19, ``server_uid``): before
it sends anything on the API socket, and before it hands an fd over on a wrap
socket, the client reads SO_PEERCRED (TCP API: the listening socket's owner
in /proc/net/tcp) and refuses a peer that is not the server:

``auto`` (default)
    the API peer must be root, or own the API socket's directory when that
    directory is writable by nobody else, its parent is root's and writable by
    root only, and every further parent is root's and writable by root only or
    sticky (so no other user can have made or swapped it).  In a user namespace
    that does not map host root, root shows up as uid 65534, which is accepted
    there; each wrap
    socket's peer must be the API's peer.  With ``sockets`` given (no API) there
    is no server to compare with: nothing is checked.
``N``
    the API and wrap socket peers must both be uid N.
``any``
    nothing is checked (agentsh's client).

Threat model: the client trusts the API's answers about socket paths but
nothing else; every wait is bounded by ``timeout``, every fd and child process
it makes is released before :meth:`run` returns.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import secrets
import socket
import struct
import time

from . import wire

__all__ = ["WrapClient", "APIError", "ServerCheckError", "http_request", "dial", "DEFAULT_API",
           "STEPS"]

DEFAULT_API = "unix:/run/wrapref/api.sock"
STEPS = (
    "session",
    "wrap-init",
    "hold",
    "connect-notify",
    "handoff-notify",
    "connect-signal",
    "handoff-signal",
    "connect-ptrace",
    "handoff-ptrace",
    "done",
)
_RETRY_ERRNOS = (errno.EAGAIN, errno.ECONNREFUSED, errno.ENOENT)


class APIError(Exception):
    """A non-2xx answer (or no answer) from the API."""

    def __init__(self, message, http_status=None, errno_=None):
        super().__init__(message)
        self.http_status = http_status
        self.errno = errno_


class ServerCheckError(OSError):
    """H19: the peer of the API or a wrap socket is not the expected server."""

    def __init__(self, message: str):
        super().__init__(errno.EPERM, message)


def tcp_listener_uid(sock: socket.socket):
    """The uid owning the listening TCP socket *sock* is connected to, or None."""
    port = sock.getpeername()[1]
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 7 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                return int(cols[7])
    return None


def _unmapped_root(uid: int) -> bool:
    """In a user namespace that does not map host root, root shows up as the overflow
    uid (65534); auto accepts it there, and only there (the client cannot see more)."""
    if uid != 65534:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def _trusted_api_dir(path: str, uid: int) -> bool:
    """H19 auto: only root (or *uid* via root) can have made the API socket's directory."""
    parent = os.path.dirname(os.path.realpath(path)) or "/"
    try:
        st = os.stat(parent)
    except OSError:
        return False
    if st.st_uid != uid or st.st_mode & 0o022:
        return False
    cur = parent
    first = True
    while cur != "/":
        cur = os.path.dirname(cur)
        try:
            st = os.stat(cur)
        except OSError:
            return False
        # The directory's own parent: nobody but root may create in it.  Higher up,
        # sticky is enough (nobody can rename what is not theirs, e.g. /tmp).
        if st.st_uid != 0 or (st.st_mode & 0o022 and (first or not st.st_mode & 0o1000)):
            return False
        first = False
    return True


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_request(api: str, method: str, path: str, body=None, timeout: float = 10.0,
                 on_connect=None):
    """One request to the API; return ``(status, decoded JSON or None)``.

    *on_connect(sock)* runs once connected, before a byte is sent (H19 checks).
    """
    kind, _sep, rest = api.partition(":")
    if kind == "unix":
        conn = _UnixHTTPConnection(rest, timeout)
    elif kind == "tcp":
        host, _sep, port = rest.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    else:
        raise ValueError(f"invalid api {api!r}: want unix:PATH or tcp:HOST:PORT")
    try:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if data is None and method == "POST":
            data = b""
        if on_connect is not None:
            conn.connect()
            on_connect(conn.sock)
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            obj = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            obj = None
        return resp.status, obj
    finally:
        conn.close()


def _timeval(seconds: float) -> bytes:
    seconds = max(seconds, 0.001)
    sec = int(seconds)
    return struct.pack("ll", sec, int((seconds - sec) * 1e6))


def dial(path: str, mode: str, deadline: float, retry_interval: float = 0.005) -> socket.socket:
    """Connect to the Unix socket *path*; raise OSError on failure (see module doc)."""
    if mode == "once":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.connect(path)
            sock.setblocking(True)
        except BaseException:
            sock.close()
            raise
        return sock
    while True:
        left = deadline - time.monotonic()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(left))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
            sock.connect(path)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno not in _RETRY_ERRNOS or time.monotonic() + retry_interval >= deadline:
                raise
            time.sleep(retry_interval)
        except BaseException:
            sock.close()
            raise


class _StepFailed(Exception):
    def __init__(self, step, error, errno_=None, http_status=None):
        super().__init__(error)
        self.step = step
        self.error = error
        self.errno = errno_
        self.http_status = http_status


class _Wrapper:
    """A stand-in wrapper child that exits once told (or when the parent goes)."""

    def __init__(self):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no Python-level cleanup, no locks, just wait and exit
            try:
                for name in os.listdir("/proc/self/fd"):
                    fd = int(name)
                    if fd > 2 and fd != r:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                os.read(r, 1)
            finally:
                os._exit(0)
        os.close(r)
        self.pid = pid
        self._w = w

    def release(self) -> None:
        if self._w is not None:
            os.close(self._w)
            self._w = None
            os.waitpid(self.pid, 0)


class WrapClient:
    """The owner's wrap client.  ``WrapClient(api=...).run()`` -> result dict."""

    #: Seconds for each API request.
    http_timeout = 10.0
    #: Pause between dial retries.
    retry_interval = 0.005

    #: Pause between looks for the release file of ``hold_before_dial``.
    hold_poll = 0.002

    def __init__(self, api=DEFAULT_API, session=None, caller_uid="getuid", mode=None,
                 connect_delay=0.0, timeout=30.0, dial="retry", wrapper_pid="child", token=None,
                 sockets=None, announce=None, hold_before_dial=None, hold_timeout=None,
                 server_uid="auto"):
        self.api = api
        self.session = session
        self.caller_uid = caller_uid  # "getuid", None (legacy) or an int
        self.mode = mode
        self.connect_delay = float(connect_delay)
        self.timeout = float(timeout)
        self.dial_mode = dial
        self.wrapper_pid = wrapper_pid  # "child", "self" or an int
        self.token = token if token is not None else secrets.token_hex(16)
        self.sockets = dict(sockets) if sockets else None  # skip the API: attack these
        self.announce_path = announce  # write the wrap-init answer here before dialling
        self.hold_path = hold_before_dial  # dial only once this file exists
        self.hold_timeout = float(hold_timeout) if hold_timeout else self.timeout
        self.server_uid = server_uid  # H19: "auto", "any" or a uid
        self.api_peer_uid = None  # the API's peer uid once checked

    def new_result(self) -> dict:
        return {
            "ok": False,
            "step": "session",
            "errno": None,
            "error": None,
            "http_status": None,
            "token": self.token,
            "latency_ms": None,
            "session": self.session,
            "paths": {},
            "uid": os.getuid(),
            "pid": os.getpid(),
            "status": None,
            "fs_isolation": None,
            "wrap_init": None,
            "t_dial": None,
            "t_end": None,
        }

    def run(self) -> dict:
        started = time.monotonic()
        self.deadline = started + self.timeout
        result = self.new_result()
        wrapper = None
        try:
            if self.sockets is None:
                self.open_session(result)
                self.call_wrap_init(result)
            else:
                result["paths"] = dict(self.sockets)
            if self.announce_path:
                self.announce(result)
            if self.hold_path:
                self.hold(result)
                self.deadline = time.monotonic() + self.timeout  # the hold is not dial time
            if self.connect_delay > 0:
                time.sleep(self.connect_delay)
            result["t_dial"] = time.time()
            if self.wrapper_pid == "child":
                wrapper = _Wrapper()
                pid = wrapper.pid
            elif self.wrapper_pid == "self":
                pid = os.getpid()
            else:
                pid = int(self.wrapper_pid)
            result["wrapper_pid"] = pid
            paths = result["paths"]
            if "ptrace" in paths:
                self.do_ptrace(result, paths["ptrace"], pid, wrapper)
            else:
                if "notify" not in paths:
                    raise _StepFailed("connect-notify", "no notify socket to connect to")
                self.do_notify(result, paths["notify"], pid, wrapper)
                if paths.get("signal"):
                    self.do_signal(result, paths["signal"])
            result["step"] = "done"
            result["ok"] = True
        except _StepFailed as exc:
            result["step"] = exc.step
            result["error"] = exc.error
            result["errno"] = wire.errno_name(exc.errno)
            if exc.http_status is not None:
                result["http_status"] = exc.http_status
        finally:
            if wrapper is not None:
                wrapper.release()
            result["latency_ms"] = round((time.monotonic() - started) * 1000.0, 3)
            result["t_end"] = time.time()
        return result

    # -- barriers (a test harness orders actors with these; never a sleep) -----------

    def announce(self, result: dict) -> None:
        """Write what the server announced (session, socket paths, fs_isolation) as one JSON
        object to ``announce_path``, atomically (a reader never sees half of it)."""
        info = {k: result.get(k) for k in ("session", "paths", "fs_isolation", "uid", "pid")}
        info["t"] = time.time()
        tmp = f"{self.announce_path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(json.dumps(info) + "\n")
            os.rename(tmp, self.announce_path)
        except OSError as exc:
            raise _StepFailed("hold", f"cannot announce to {self.announce_path}: "
                              f"{exc.strerror or exc}", exc.errno) from None

    def hold(self, result: dict) -> None:
        """Wait, before the first dial, until the file ``hold_path`` exists (bounded by
        ``hold_timeout``): the harness releases the client when its scenario says so."""
        result["step"] = "hold"
        t0 = time.monotonic()
        limit = t0 + self.hold_timeout
        while not os.path.lexists(self.hold_path):
            if time.monotonic() >= limit:
                raise _StepFailed("hold", f"not released within {self.hold_timeout:g} s "
                                  f"({self.hold_path} never appeared)", errno.ETIMEDOUT)
            time.sleep(self.hold_poll)  # a look at a real condition, bounded above
        result["held_ms"] = round((time.monotonic() - t0) * 1000.0, 3)

    # -- API steps -------------------------------------------------------------------

    def check_api_peer(self, sock: socket.socket) -> None:
        """H19: refuse an API that is not served by the expected uid."""
        if self.server_uid == "any":
            return
        if sock.family == socket.AF_UNIX:
            uid = wire.peercred(sock).uid
            trusted = uid == self.server_uid if isinstance(self.server_uid, int) else (
                uid == 0 or _unmapped_root(uid)
                or _trusted_api_dir(self.api.partition(":")[2], uid))
        else:
            uid = tcp_listener_uid(sock)
            trusted = uid is not None and (
                uid == self.server_uid if isinstance(self.server_uid, int) else True)
        if not trusted:
            raise ServerCheckError(f"API peer uid {uid} is not the server "
                                   f"(--server-uid {self.server_uid})")
        self.api_peer_uid = uid

    def check_wrap_peer(self, kind: str, sock: socket.socket) -> None:
        """H19: refuse a wrap socket whose listener is not the API's server."""
        if self.server_uid == "any":
            return
        want = self.server_uid if isinstance(self.server_uid, int) else self.api_peer_uid
        if want is None:
            return  # sockets given directly (no API): nothing to compare with
        uid = wire.peercred(sock).uid
        if uid != want:
            raise _StepFailed("connect-" + kind, f"{kind} socket peer uid {uid} is not the "
                              f"server's ({want}); nothing handed over", errno.EPERM)

    def request(self, step: str, method: str, path: str, body=None):
        try:
            status, obj = http_request(self.api, method, path, body, self.http_timeout,
                                       on_connect=self.check_api_peer)
        except OSError as exc:
            raise _StepFailed(step, str(exc), exc.errno) from None
        except (http.client.HTTPException, ValueError) as exc:
            raise _StepFailed(step, f"bad API answer: {exc}") from None
        return status, obj

    def open_session(self, result: dict) -> None:
        result["step"] = "session"
        if self.session is None:
            status, obj = self.request("session", "POST", "/api/v1/sessions", {})
            result["http_status"] = status
            if status != 201 or not isinstance(obj, dict) or "id" not in obj:
                raise _StepFailed("session", _error_of(obj, status), http_status=status)
            self.session = obj["id"]
        result["session"] = self.session

    def wrap_init_body(self) -> dict:
        body = {"agent_command": "wrapref-agent", "agent_args": []}
        if self.caller_uid == "getuid":
            uid = os.getuid()
            if uid:  # agentsh: caller_uid is omitempty
                body["caller_uid"] = uid
        elif self.caller_uid is not None:
            body["caller_uid"] = self.caller_uid
        if self.mode:
            body["mode"] = self.mode
        return body

    def call_wrap_init(self, result: dict) -> None:
        result["step"] = "wrap-init"
        path = f"/api/v1/sessions/{self.session}/wrap-init"
        status, obj = self.request("wrap-init", "POST", path, self.wrap_init_body())
        result["http_status"] = status
        if status != 200 or not isinstance(obj, dict):
            raise _StepFailed("wrap-init", _error_of(obj, status), http_status=status)
        result["wrap_init"] = obj
        result["fs_isolation"] = obj.get("fs_isolation")
        if obj.get("ptrace_mode"):
            result["paths"] = {"ptrace": obj.get("notify_socket")}
        else:
            result["paths"] = {"notify": obj.get("notify_socket")}
            if obj.get("signal_socket"):
                result["paths"]["signal"] = obj["signal_socket"]

    # -- socket steps ----------------------------------------------------------------

    def connect(self, kind: str, path: str) -> socket.socket:
        step = "connect-" + kind
        try:
            sock = dial(path, self.dial_mode, self.deadline, self.retry_interval)
        except OSError as exc:
            raise _StepFailed(step, exc.strerror or str(exc), exc.errno) from None
        try:
            self.check_wrap_peer(kind, sock)
        except BaseException:
            sock.close()
            raise
        if self.dial_mode == "once":
            left = max(self.deadline - time.monotonic(), 0.001)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(left))
        return sock

    def send_token_fd(self, step: str, sock: socket.socket, payload: bytes) -> None:
        r, w = os.pipe()
        try:
            os.write(w, self.token.encode("utf-8"))
            os.close(w)
            w = None
            wire.send_fds(sock, payload, [r])
        except OSError as exc:
            raise _StepFailed(step, exc.strerror or str(exc), exc.errno) from None
        finally:
            os.close(r)
            if w is not None:
                os.close(w)

    def read_status(self, step: str, sock: socket.socket) -> int:
        try:
            data = sock.recv(1)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                raise _StepFailed(step, "timed out waiting for the server", exc.errno) from None
            raise _StepFailed(step, exc.strerror or str(exc), exc.errno) from None
        if not data:
            raise _StepFailed(step, "connection closed by the server before any status")
        return data[0]

    def do_notify(self, result, path, pid, wrapper) -> None:
        result["step"] = "connect-notify"
        with self.connect("notify", path) as sock:
            result["step"] = "handoff-notify"
            self.send_token_fd("handoff-notify", sock, wire.encode_metadata(pid))
            status = self.read_status("handoff-notify", sock)
            result["status"] = status
        if wrapper is not None:
            wrapper.release()  # the wrapper goes on only after the status
        if status == wire.STATUS_FAIL:
            raise _StepFailed("handoff-notify", "server rejected wrap setup")
        if status != wire.STATUS_OK:
            raise _StepFailed("handoff-notify", f"unexpected setup status byte {status}")

    def do_signal(self, result, path) -> None:
        result["step"] = "connect-signal"
        with self.connect("signal", path) as sock:
            result["step"] = "handoff-signal"
            self.send_token_fd("handoff-signal", sock, b"\x00")

    def do_ptrace(self, result, path, pid, wrapper) -> None:
        result["step"] = "connect-ptrace"
        with self.connect("ptrace", path) as sock:
            result["step"] = "handoff-ptrace"
            try:
                sock.sendall(wire.encode_pid(pid))
            except OSError as exc:
                raise _StepFailed("handoff-ptrace", exc.strerror or str(exc), exc.errno) from None
            status = self.read_status("handoff-ptrace", sock)
            result["status"] = status
            if status != wire.ACK:
                raise _StepFailed("handoff-ptrace", "server refused the ptrace pid (NACK)")
            # Hold the connection until the traced child exits (B34).
            if wrapper is not None:
                wrapper.release()


def _error_of(obj, status) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("error"), str):
        return obj["error"]
    return f"HTTP {status}"
