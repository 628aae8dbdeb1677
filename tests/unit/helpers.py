"""Helpers for the wrapref unit tests: users, gates, forked actors, waits, raw HTTP."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import socket
import threading
import time
import traceback
from pathlib import Path

import pytest
from wrapref import wire
from wrapref.observe import JSONLogger

REPO = Path(__file__).resolve().parents[2]
USERS_CONF = REPO / "containers" / "users.conf"
IN_CI = bool(os.environ.get("CI"))


def _load_users() -> dict:
    """role -> uid from containers/users.conf (the project's one declaration)."""
    roles = {"owner": 1001, "bystander": 1002, "attacker": 1003, "service": 990}
    try:
        text = USERS_CONF.read_text()
    except OSError:
        return roles
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 4 and parts[0] == "user" and parts[2].isdigit():
            roles[parts[3]] = int(parts[2])
    return roles


USERS = _load_users()
#: The uids the tests act as (no /etc/passwd entries needed).
OWNER_UID = USERS["owner"]
BYSTANDER_UID = USERS["bystander"]
INTRUDER_UID = USERS["attacker"]
SERVICE_UID = USERS["service"]


def require(condition: bool, reason: str) -> None:
    """Skip when *condition* is false -- but fail under CI (a missing precondition is red)."""
    if condition:
        return
    if IN_CI:
        pytest.fail("precondition missing in CI: " + reason, pytrace=False)
    pytest.skip(reason)


def need_root() -> None:
    require(os.geteuid() == 0, "requires root: real second-user tests setuid to other uids")


# ------------------------------------------------------------------------ waiting


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.005, what: str = "condition"):
    """Poll *predicate* until it returns a truthy value; return it, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def holds_for(predicate, duration: float, interval: float = 0.01) -> bool:
    """True if *predicate* stays truthy for *duration* (to show something does NOT happen)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def open_fds() -> set:
    return set(os.listdir("/proc/self/fd"))


# ------------------------------------------------------------------------- logging


class CapturingLogger(JSONLogger):
    """A JSONLogger writing to memory; ``records()`` parses the JSON lines back."""

    def __init__(self):
        super().__init__(io.StringIO())

    def records(self) -> list:
        with self._lock:
            text = self.stream.getvalue()
        return [json.loads(line) for line in text.splitlines() if line]


# ---------------------------------------------------------------- forked actors


class Actor:
    """A forked child running ``fn()`` as *uid*; its JSON-able result comes back by pipe."""

    def __init__(self, uid, fn, *args, close_fds: bool = True, **kwargs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                os.close(r)
                if close_fds:  # like a separate process: none of the server's fds
                    for name in os.listdir("/proc/self/fd"):
                        if int(name) > 2 and int(name) != w:
                            try:
                                os.close(int(name))
                            except OSError:
                                pass
                if uid is not None:
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                try:
                    out = {"result": fn(*args, **kwargs)}
                except BaseException as exc:  # report, never return into pytest
                    out = {"exception": repr(exc), "traceback": traceback.format_exc()}
                data = json.dumps(out, default=repr).encode()
                while data:
                    n = os.write(w, data)
                    data = data[n:]
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        os.close(w)
        self.pid = pid
        self._r = r
        self._buf = b""
        self._done = False
        self._value = None

    def result(self, timeout: float = 15.0):
        if self._done:
            return self._value
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"actor {self.pid} did not finish in {timeout:.1f}s")
                ready, _, _ = select.select([self._r], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self._r, 65536)
                if not chunk:
                    break
                self._buf += chunk
        except BaseException:
            self.kill()
            raise
        os.close(self._r)
        self._r = None
        os.waitpid(self.pid, 0)
        self._done = True
        out = json.loads(self._buf.decode()) if self._buf else {"exception": "no output"}
        if "exception" in out:
            exc, tb = out["exception"], out.get("traceback")
            raise AssertionError(f"actor failed: {exc}\n{tb}")
        self._value = out["result"]
        return self._value

    def kill(self) -> None:
        if self._done:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        if self._r is not None:
            os.close(self._r)
            self._r = None
        self._done = True


def run_as(uid, fn, *args, timeout: float = 15.0, **kwargs):
    """Run ``fn(*args)`` in a forked child as *uid* (None: as we are); return its result."""
    return Actor(uid, fn, *args, **kwargs).result(timeout)


# --------------------------------------------------------------- raw wire moves


def connect_unix(path: str, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def token_pipe(token: str) -> int:
    """The read end of a pipe holding *token* (write end closed)."""
    r, w = os.pipe()
    os.write(w, token.encode())
    os.close(w)
    return r


def notify_attempt(path: str, token: str, wrapper_pid=None, nfds: int = 1,
                   payload=None, timeout: float = 5.0) -> dict:
    """Connect to a notify socket and hand over *nfds* token fds; report what happened."""
    out = {"connected": False, "errno": None, "status": None, "eof": False}
    try:
        sock = connect_unix(path, timeout)
    except OSError as exc:
        out["errno"] = wire.errno_name(exc.errno)
        return out
    out["connected"] = True
    fds = [token_pipe(token) for _ in range(nfds)]
    try:
        if payload is None:
            payload = wire.encode_metadata(wrapper_pid if wrapper_pid is not None else os.getpid())
        try:
            wire.send_fds(sock, payload, fds)
            data = sock.recv(1)
            if data:
                out["status"] = data[0]
            else:
                out["eof"] = True
        except OSError as exc:
            out["errno"] = wire.errno_name(exc.errno)
    finally:
        wire.close_fds(fds)
        sock.close()
    return out


def http(api_path: str, method: str, path: str, body=None, raw=None, headers=None,
         timeout: float = 10.0):
    """A raw HTTP/1.1 request over a Unix socket; return (status, JSON body or text)."""
    if raw is None:
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"Host": "localhost", "Connection": "close"}
        if body is not None or method == "POST":
            hdrs["Content-Length"] = str(len(data))
        hdrs.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n"
        head += "".join("{}: {}\r\n".format(*kv) for kv in hdrs.items() if kv[1] is not None)
        raw = head.encode() + b"\r\n" + data
    sock = connect_unix(api_path, timeout)
    try:
        sock.sendall(raw)
        return read_response(sock)
    finally:
        sock.close()


def read_response(sock: socket.socket):
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _sep, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(body.decode())
    except ValueError:
        return status, body.decode(errors="replace")


def thread_names() -> list:
    return sorted(t.name for t in threading.enumerate())
