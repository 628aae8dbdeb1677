"""The harness's end of the resident actor agent (:mod:`wraplab.actors.agent`).

One agent runs as root in each container (a ``docker exec`` with stdin attached) or local
lab (a subprocess); :class:`AgentLink` sends it JSON-line requests and dispatches its
answers by request id, from one reader thread. :class:`AgentActor` is an actor started by
the agent: forked from it and set to the actor's uid, gid and groups, instead of a fresh
``docker exec``/subprocess per step. ``WRAPLAB_AGENT=0`` turns the agent off (every actor is
exec-ed as before).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wraplab.labs import dockerexec
from wraplab.labs.base import ACTOR_TOOLS, ActorHandle, LabError
from wraplab.users import User

if TYPE_CHECKING:
    from wraplab.labs.base import LabRun

SWITCH = "WRAPLAB_AGENT"
ARGV = ["python3", "-m", f"{ACTOR_TOOLS}.agent"]
START_TIMEOUT = 60.0  # an interpreter starting in a container on a loaded machine


def enabled() -> bool:
    """Whether labs start actors through the resident agent (``WRAPLAB_AGENT``, default 1)."""
    value = os.environ.get(SWITCH, "1").strip().lower()
    if value in ("0", "no", "off", "false"):
        return False
    if value in ("", "1", "yes", "on", "true"):
        return True
    raise LabError(f"{SWITCH}={value!r}: want 1 (resident agent) or 0 (exec per actor)")


Listener = Callable[[dict[str, Any]], None]


class AgentLink:
    """Requests to one agent; ``write`` sends bytes to its stdin, ``close`` ends it."""

    def __init__(self, name: str, write: Callable[[bytes], None],
                 close: Callable[[], None]) -> None:
        self.name = name
        self._write = write
        self._close = close
        self._lock = threading.Lock()
        self._next = 0
        self._listeners: dict[int, Listener] = {}
        self._lost: str | None = None

    def read_from(self, lines: Iterator[bytes]) -> None:
        """Dispatch the agent's answers until its output ends (run in a thread)."""
        why = "the agent's output ended"
        try:
            for line in lines:
                if not line.strip():
                    continue
                msg = json.loads(line)
                with self._lock:
                    listener = self._listeners.get(msg.get("id"))
                    if msg.get("ev") in ("exit", "done", "error"):
                        self._listeners.pop(msg.get("id"), None)
                if listener is not None:
                    listener(msg)
        except Exception as exc:  # the container went away, the pipe broke...
            why = f"{type(exc).__name__}: {exc}"
        self._lose(why)

    def _lose(self, why: str) -> None:
        with self._lock:
            self._lost = self._lost or why
            listeners, self._listeners = list(self._listeners.values()), {}
        for listener in listeners:
            listener({"ev": "lost", "error": why})

    @property
    def alive(self) -> bool:
        return self._lost is None

    def request(self, op: str, listener: Listener, **fields: Any) -> None:
        with self._lock:
            if self._lost is not None:
                raise LabError(f"agent {self.name} is gone: {self._lost}")
            self._next += 1
            rid = self._next
            self._listeners[rid] = listener
            data = (json.dumps({"id": rid, "op": op, **fields}) + "\n").encode()
            try:
                self._write(data)
            except OSError as exc:
                self._listeners.pop(rid, None)
                raise LabError(f"agent {self.name}: cannot send: {exc}") from exc

    def call(self, op: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """A request whose one answer is ``done``; raises LabError on error or timeout."""
        box: list[dict[str, Any]] = []
        done = threading.Event()

        def listener(msg: dict[str, Any]) -> None:
            box.append(msg)
            done.set()

        self.request(op, listener, **fields)
        if not done.wait(timeout):
            raise LabError(f"agent {self.name}: no answer to {op} in {timeout:g}s")
        msg = box[0]
        if msg.get("ev") != "done":
            raise LabError(f"agent {self.name}: {op}: {msg.get('error')}")
        return msg

    def read_file(self, path: str) -> bytes | None:
        data = self.call("read", path=path).get("data")
        return None if data is None else base64.b64decode(data)

    def close(self) -> None:
        with self._lock:
            self._lost = self._lost or "closed"
        try:
            self._close()
        except OSError:
            pass


def lines_of(read: Callable[[int], bytes]) -> Iterator[bytes]:
    """Lines from a byte source (``read(n)`` returning b"" at its end)."""
    parts: list[bytes] = []  # the line being read, in pieces (a long line stays linear)
    while True:
        chunk = read(65536)
        if not chunk:
            return
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            parts.append(line)
            yield b"".join(parts)
            parts = []
        if rest:
            parts.append(rest)


def docker_stdout(sock: Any) -> Callable[[int], bytes]:
    """A ``read(n)`` over an attached, non-tty exec socket: the payloads of its stdout
    frames (:func:`wraplab.labs.dockerexec.frames`), stderr frames skipped."""

    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = sock.recv(n - len(out))
            if not chunk:
                return out
            out += chunk
        return out

    stdout = (data for stream, data in dockerexec.frames(exactly)
              if stream != dockerexec.STDERR)

    def read(_n: int) -> bytes:
        return next(stdout, b"")

    return read


class AgentActor(ActorHandle):
    """An actor forked by the lab's agent as its user (see :mod:`wraplab.actors.agent`).

    ``signal_exit``: how a death by signal is reported (Docker: 128 + signal, as
    ``docker exec`` does; local: minus the signal, as subprocess does)."""

    def __init__(self, run: LabRun, link: AgentLink, actor: str, user: User,
                 argv: Sequence[str], *, action: str, uid: int, gid: int,
                 groups: Sequence[int] | None, env: Mapping[str, str], inherit_env: bool,
                 cwd: str | None, signal_exit: Callable[[int], int],
                 kill: Callable[[int, str], None], user_name: str | None = None,
                 keep_ids: bool = False) -> None:
        super().__init__(run, actor, user, argv, action)
        self._pid: int | None = None
        self._pid_ready = threading.Event()
        self._done = threading.Event()
        self._status: int | None = None
        self._out = b""
        self._err = b""
        self._error: str | None = None
        self._signal_exit = signal_exit
        self._kill = kill
        fields: dict[str, Any] = {"argv": list(self.argv), "uid": uid, "gid": gid,
                                  "env": dict(env), "inherit_env": inherit_env,
                                  "cwd": cwd or "/"}
        if groups is not None:
            fields["groups"] = list(groups)
        if user_name is not None:
            fields["user_name"] = user_name
        if keep_ids:
            fields["keep_ids"] = True
        link.request("spawn", self._on_message, **fields)

    def _on_message(self, msg: dict[str, Any]) -> None:
        ev = msg.get("ev")
        if ev == "started":
            self._pid = msg["pid"]
            self._pid_ready.set()
            return
        if ev == "exit":
            self._status = msg["status"]
            self._out = base64.b64decode(msg.get("out") or "")
            self._err = base64.b64decode(msg.get("err") or "")
        else:  # error, lost
            self._error = str(msg.get("error"))
        self._pid_ready.set()
        self._done.set()

    @property
    def pid(self) -> int | None:
        self._pid_ready.wait(START_TIMEOUT)
        return self._pid

    def _wait_exit(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def _collect(self) -> tuple[int | None, str, str]:
        err = self._err.decode(errors="replace")
        if self._error:
            err += f"\n[wraplab] agent: {self._error}"
        code = self._status
        if code is not None and code < 0:
            code = self._signal_exit(-code)
        return code, self._out.decode(errors="replace"), err

    def signal(self, sig: str = "KILL") -> None:
        if self.pid is not None:
            self._kill(self.pid, sig)
