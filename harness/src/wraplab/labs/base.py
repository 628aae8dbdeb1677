"""The lab-neutral half of the Lab API: specs, results, the run and its actors."""

from __future__ import annotations

import abc
import contextlib
import enum
import json
import posixpath
import shlex
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testcontainers.core.waiting_utils import WaitStrategy

from wraplab.labs import cleanup
from wraplab.users import ROOT, User, Users

ACTOR_TOOLS = "wraplab.actors"
DEFAULT_TIMEOUT = 60.0


class LabError(RuntimeError):
    """The lab could not do what was asked (start, exec, find a user...)."""


class LabUnavailable(LabError):
    """This lab cannot run here (no Docker, not root...); the message says why."""


class Placement(enum.Enum):
    """How the server under test runs inside the lab."""

    ROOT = "root"  #: uid 0 with the default capabilities
    ROOT_NO_CHOWN = "root-no-chown"  #: uid 0 without CAP_CHOWN
    SERVICE = "service"  #: the non-root service user of users.conf (wrapd)


@dataclass(frozen=True)
class Readiness:
    """How the lab knows the server is ready: ``kind`` is ``socket`` (``value``: a Unix
    socket path that accepts a connection), ``http`` (``value``: a path of the API answered
    with status 200) or ``command`` (``value``: an argv run as root in the lab that exits 0);
    placeholders as in :meth:`ServerSpec.command`. ``timeout``: seconds, then a clear error
    quoting the server's last log lines."""

    kind: str = "socket"
    value: str | tuple[str, ...] = "{api_path}"
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in ("socket", "http", "command"):
            raise ValueError(f"readiness kind {self.kind!r}: socket, http or command")


@dataclass(frozen=True)
class ServerSpec:
    """How to start the server under test in a lab: the lab starts whatever this says and
    knows nothing of any particular server (:mod:`wraplab.targets` builds specs).

    ``argv`` may use the placeholders ``{api}`` (``unix:PATH``), ``{api_path}``,
    ``{temp_base}``, ``{log_file}``, ``{target_dir}`` (where ``install`` put the files) and
    ``{tcp_port}``; the lab fills them in. ``extra_apis`` are further addresses the server
    serves (``tcp:127.0.0.1:PORT``), inside the lab; the first TCP one becomes
    ``run.tcp_api``. ``ready`` says how the lab waits for it (:class:`Readiness`).

    Install (how the server gets into the lab):

    * ``install``: ``(host path, name)`` pairs: the lab copies each file or directory to
      ``{target_dir}/name`` (DockerLab: into the container(s); LocalLab: into its own
      directory), owned by root, readable by every user, executable where it is on the
      host.
    * ``image``: a Docker image built FROM wraplab's lab image that holds the server
      (DockerLab uses it instead of the lab image; LocalLab refuses it).
    * neither: the command is already present in the lab.

    Lab options (what a scenario may ask of the lab beyond the server):

    * ``userns``: actors may create user namespaces (``unshare -Ur``). DockerLab starts the
      container with ``security_opt=["seccomp=unconfined"]``: Docker's default seccomp
      profile refuses ``unshare``/``clone`` with CLONE_NEWUSER to a process without
      CAP_SYS_ADMIN (EPERM). This relaxes the whole seccomp filter of that container (for
      every actor and the server), not only that call: Docker's default profile is built
      into the daemon, and shipping a copy of it plus one rule would go stale with the
      daemon. Capabilities, AppArmor and the network stay as they are. LocalLab ignores it
      (the host's own policy applies).
    * ``peer``: a second container (DockerLab only) from the same image that shares the
      server's API directory and temp base through two per-run tmpfs volumes; actors run
      in it through ``run.peer`` (a :class:`~wraplab.labs.docker.DockerPeer` with ``exec``,
      ``spawn`` and ``tool``). LocalLab refuses it (:class:`LabUnavailable`: one host has
      no second container). ``peer_shares_pids``: the peer joins the server container's
      PID namespace (``pid_mode="container:<main>"``), so SO_PEERCRED names real pids of
      peer processes to the server; without it the server sees peer pid 0.
    * ``server_userns``: the server runs as root of its own user namespace that maps only
      root and the users of these roles (uid and gid, each to itself; ``wraplab.actors.userns``
      does it). Every other uid, and so every other user of the lab, is unmapped there: the
      server sees it as the overflow uid (65534) in SO_PEERCRED, ``stat`` and ``/proc``.
      Needs a root placement; DockerLab relaxes seccomp as for ``userns``.
    * ``umask`` (e.g. ``0o077``) and ``nofile`` (RLIMIT_NOFILE, soft and hard): the server
      starts under them (both labs: ``wraplab.actors.launch`` sets them and exec-s the
      server in the same process); None leaves the lab's own.
    """

    argv: tuple[str, ...]
    placement: Placement = Placement.ROOT
    extra_apis: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    ready: Readiness = field(default_factory=Readiness)
    install: tuple[tuple[str, str], ...] = ()
    image: str | None = None
    name: str = "server"
    userns: bool = False
    peer: bool = False
    peer_shares_pids: bool = False
    server_userns: tuple[str, ...] = ()
    umask: int | None = None
    nofile: int | None = None
    #: The run will be kept after the cell (``wraplab run --keep``): labelled so that the
    #: automatic sweep of a later start leaves it; ``wraplab clean`` removes it.
    keep: bool = False

    def __post_init__(self) -> None:
        if self.umask is not None and not 0 <= self.umask <= 0o777:
            raise ValueError(f"umask {self.umask!r}: want 0 to 0o777")
        if self.nofile is not None and self.nofile < 16:
            raise ValueError(f"nofile {self.nofile!r}: the server needs at least 16 files")
        if self.server_userns and self.placement is Placement.SERVICE:
            raise ValueError("server_userns needs a root placement: only root can map "
                             "other users' ids into the server's user namespace")
        if self.peer_shares_pids and not self.peer:
            raise ValueError("peer_shares_pids needs peer=True")
        if not self.argv:
            raise ValueError("ServerSpec needs a command (argv)")

    @property
    def launcher(self) -> list[str]:
        """argv prefix that starts the server under ``umask``/``nofile`` ([] if neither)."""
        if self.umask is None and self.nofile is None:
            return []
        return ["python3", "-m", f"{ACTOR_TOOLS}.launch",
                *([f"--umask={self.umask:03o}"] if self.umask is not None else []),
                *([f"--nofile={self.nofile}"] if self.nofile is not None else []), "--"]

    @property
    def relaxed_seccomp(self) -> bool:
        """Whether a container lab must allow CLONE_NEWUSER (``userns``/``server_userns``)."""
        return self.userns or bool(self.server_userns)

    @staticmethod
    def fill(args: Sequence[str], values: Mapping[str, str]) -> list[str]:
        """``args`` with the placeholders ``{name}`` of ``values`` filled in."""
        return [arg.format_map(values) if "{" in arg else arg for arg in args]

    def command(self, values: Mapping[str, str]) -> list[str]:
        """The server's argv for one run (``values``: :meth:`LabRun.placeholders`)."""
        return self.fill(self.argv, values)


@dataclass(frozen=True)
class ActorResult:
    """What one actor process did. ``exit_code`` is None when it was killed on timeout
    and no status could be read; ``started`` is epoch seconds."""

    role: str
    user: str
    uid: int
    argv: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    started: float
    duration: float
    timed_out: bool = False
    pid: int | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def json(self) -> Any:
        """stdout parsed as JSON (the whole text, else its last non-empty line)."""
        text = self.stdout.strip()
        try:
            return json.loads(text)
        except ValueError:
            lines = [line for line in text.splitlines() if line.strip()]
            if not lines:
                raise ValueError(f"{self.describe()}: no JSON on stdout") from None
            try:
                return json.loads(lines[-1])
            except ValueError as exc:
                raise ValueError(f"{self.describe()}: stdout is not JSON: {text[-500:]!r}") from exc

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exit {self.exit_code}"
        return f"{self.user}(uid {self.uid}) $ {shlex.join(self.argv)} -> {status}"


@dataclass(frozen=True)
class FileFacts:
    """lstat + ACL of a path inside the lab (``mode``: permission bits, e.g. 0o700;
    ``acl``: None when the file has no ACL beyond its mode, else getfacl -n style entries)."""

    path: str
    exists: bool
    kind: str | None  # dir, file, socket, symlink, fifo, chardev, blockdev
    uid: int | None
    gid: int | None
    mode: int | None
    acl: list[str] | None
    size: int | None = None
    nlink: int | None = None
    target: str | None = None  # symlinks
    error: str | None = None  # errno name when lstat/getxattr failed other than ENOENT

    @property
    def mode_octal(self) -> str | None:
        return None if self.mode is None else f"{self.mode:04o}"

    @classmethod
    def from_tool(cls, raw: Mapping[str, Any]) -> FileFacts:
        keys = cls.__dataclass_fields__
        return cls(**{k: raw.get(k) for k in keys})


@dataclass
class TranscriptEntry:
    """One action in a lab run: who did what as which uid, and what came back."""

    action: str  # exec, spawn, tool:<name>, server-start, server-ready, server-stop, lab, kill
    actor: str
    user: str
    uid: int | None
    argv: tuple[str, ...]
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    started: float = field(default_factory=time.time)
    duration: float | None = None
    note: str = ""

    def render(self, limit: int = 4000) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(self.started))
        stamp += f".{int(self.started * 1000) % 1000:03d}"
        dur = "" if self.duration is None else f" ({self.duration * 1000:.0f} ms)"
        status = "" if self.exit_code is None else f" -> exit {self.exit_code}"
        head = f"[{stamp}] {self.action} {self.actor}"
        if self.uid is not None:
            head += f" ({self.user}, uid {self.uid})"
        head += f": {shlex.join(self.argv)}" if self.argv else ""
        lines = [head + status + dur + (f"  # {self.note}" if self.note else "")]
        for name, text in (("stdout", self.stdout), ("stderr", self.stderr)):
            text = text.rstrip()
            if text:
                if len(text) > limit:
                    text = text[: limit // 2] + "\n    ...\n" + text[-limit // 2 :]
                lines.append(f"  {name}: " + text.replace("\n", "\n          "))
        return "\n".join(lines)


def format_transcript(entries: Iterable[TranscriptEntry]) -> str:
    return "\n".join(e.render() for e in entries)


class ActorHandle(abc.ABC):
    """A background actor started by :meth:`LabRun.spawn`."""

    def __init__(self, run: LabRun, actor: str, user: User, argv: Sequence[str],
                 action: str = "spawn") -> None:
        self.run = run
        self.actor = actor
        self.user = user
        self.argv = tuple(argv)
        self.action = action
        self.started = time.time()
        self._t0 = time.monotonic()
        self._result: ActorResult | None = None
        self._lock = threading.Lock()

    @property
    @abc.abstractmethod
    def pid(self) -> int | None:
        """The process id inside the lab (None if it never started)."""

    @abc.abstractmethod
    def _wait_exit(self, timeout: float | None) -> bool:
        """Block until the process ended and its output is collected; False on timeout."""

    @abc.abstractmethod
    def _collect(self) -> tuple[int | None, str, str]:
        """(exit_code, stdout, stderr) once ended."""

    @abc.abstractmethod
    def signal(self, sig: str = "KILL") -> None:
        """Send a signal (name without SIG) to the process and its descendants."""

    def poll(self) -> ActorResult | None:
        """The result if the actor has ended, else None."""
        if self._result is None and self._wait_exit(0):
            return self._finish(timed_out=False)
        return self._result

    @property
    def running(self) -> bool:
        return self.poll() is None

    def wait(self, timeout: float | None = DEFAULT_TIMEOUT, *, kill: bool = True) -> ActorResult:
        """Wait for the actor to end. On timeout it is killed (``kill=True``) and the result
        says ``timed_out``; with ``kill=False`` a :class:`TimeoutError` is raised instead."""
        if self._result is not None:
            return self._result
        if self._wait_exit(timeout):
            return self._finish(timed_out=False)
        if not kill:
            raise TimeoutError(f"{self.actor}: {shlex.join(self.argv)} still running "
                               f"after {timeout}s")
        self.kill()
        return self._finish(timed_out=True)

    def wait_or_end(self, at: float, timeout: float, sig: str = "TERM") -> ActorResult:
        """Let the actor end by itself until the epoch time ``at``, then send ``sig`` (the
        tools take a SIGTERM as "the harness has seen enough": they report and exit) and
        wait at most ``timeout`` s more."""
        if self._result is None and self._wait_exit(max(0.0, at - time.time())):
            return self._finish(timed_out=False)
        if self._result is None:
            with contextlib.suppress(Exception):
                self.signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the actor and everything it started; waits until it is gone."""
        if self._result is None and not self._wait_exit(0):
            with contextlib.suppress(Exception):
                self.signal("KILL")
            self._wait_exit(10)

    def _finish(self, timed_out: bool) -> ActorResult:
        with self._lock:
            if self._result is not None:
                return self._result
            code, out, err = self._collect() if self._wait_exit(0) else (None, "", "")
            self._result = ActorResult(
                role=self.user.role,
                user=self.user.name,
                uid=self.user.uid,
                argv=self.argv,
                exit_code=code,
                stdout=out,
                stderr=err,
                started=self.started,
                duration=time.monotonic() - self._t0,
                timed_out=timed_out,
                pid=self.pid,
            )
            self.run._record(TranscriptEntry(
                action=self.action, actor=self.actor, user=self.user.name, uid=self.user.uid,
                argv=self.argv, exit_code=code, stdout=out, stderr=err, started=self.started,
                duration=self._result.duration, note="timed out, killed" if timed_out else "",
            ))
            return self._result


#: In-lab check that a Unix socket accepts a connection (exit 0), run as root.
SOCKET_CHECK = ("python3", "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); "
                "s.settimeout(2); s.connect(sys.argv[1])")


class ServerReady(WaitStrategy):
    """Wait object: the server under test is ready as its :class:`Readiness` says (a socket
    that accepts a connection, an HTTP path answered 200, a command that exits 0; each
    asked from inside the lab), with a deadline; fails at once when the server process ends
    first. Either failure quotes the server's last log lines and output."""

    def __init__(self, ready: Readiness | None = None) -> None:
        super().__init__()
        self.ready = ready or Readiness()
        self._startup_timeout = self.ready.timeout
        self._poll_interval = 0.05
        self.polls = 0
        self.body: Any = None
        self.watched: dict | None = None  # the agent's await-socket answer

    def _check(self, run: LabRun) -> tuple[bool, Any]:
        values = run.placeholders()
        if self.ready.kind == "http":
            path = ServerSpec.fill([str(self.ready.value)], values)[0]
            status, body = run._api_raw("GET", path, None, ROOT, run.api)
            ok = status == 200 and not (isinstance(body, dict) and body.get("ok") is False)
            return ok, body if ok else f"GET {path}: HTTP {status} {body!r}"[:300]
        if self.ready.kind == "socket":
            argv = [*SOCKET_CHECK, ServerSpec.fill([str(self.ready.value)], values)[0]]
        else:
            argv = ServerSpec.fill(list(self.ready.value), values)
        res = run._spawn("lab", ROOT, argv, None, None, action="api-poll").wait(30)
        last = (res.stderr.strip().splitlines() or [f"exit {res.exit_code}"])[-1]
        return res.ok, None if res.ok else f"{shlex.join(argv)}: {last}"[:300]

    def _await_socket(self, run: LabRun, deadline: float) -> None:
        """Where the lab has a resident agent, let it watch the socket the check will use
        (the API's, or the readiness socket) until it accepts a connection, the server
        exits, or the deadline: no process is started per try. The check below then
        decides, as without an agent."""
        link = getattr(run, "_agent", None)
        if link is None or not link.alive or self.ready.kind not in ("http", "socket"):
            return
        path = (run.api_path if self.ready.kind == "http" else
                ServerSpec.fill([str(self.ready.value)], run.placeholders())[0])
        left = max(0.0, deadline - time.monotonic())
        try:
            self.watched = link.call("await-socket", timeout=left + 5, path=path, wait=left,
                                     pid=run.server.pid if run.server else None)
        except LabError:
            self.watched = None  # the checks below still decide

    def wait_until_ready(self, container: Any) -> None:  # container: a LabRun
        run: LabRun = container
        deadline = time.monotonic() + self._startup_timeout
        self._await_socket(run, deadline)
        last: Any = None
        while True:
            ended = run.server.poll() if run.server else None
            if ended is not None:
                raise LabError(f"the server exited before it was ready: {ended.describe()}"
                               + run.server_tail(ended))
            self.polls += 1
            ok, last = self._check(run)
            if ok:
                self.body = last
                return
            if time.monotonic() > deadline:
                raise LabError(f"the server was not ready after {self._startup_timeout:g} s "
                               f"({self.ready.kind} readiness; last check: {last})"
                               + run.server_tail())
            time.sleep(self._poll_interval)


class LabRun(abc.ABC):
    """One started lab with its server: a context manager (``with lab.start(spec) as run``)
    that removes everything when it ends, also on exceptions and SIGINT/SIGTERM."""

    lab_name: str
    base: str

    def __init__(self, *, lab_name: str, base: str, spec: ServerSpec, users: Users,
                 api_path: str, temp_base: str, log_file: str) -> None:
        self.id = uuid.uuid4().hex
        self.lab_name = lab_name
        self.base = base
        self.spec = spec
        self.users = users
        self.api_path = api_path
        self.api = f"unix:{api_path}"
        self.tcp_api: str | None = next((a for a in spec.extra_apis if a.startswith("tcp:")), None)
        self.temp_base = temp_base
        self.log_file = log_file
        self.transcript: list[TranscriptEntry] = []
        self.server: ActorHandle | None = None
        self.health: dict[str, Any] | None = None
        self.started_at = time.time()
        self.startup_seconds: float | None = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> LabRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every process and remove the lab (idempotent)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def placeholders(self) -> dict[str, str]:
        """The values of the placeholders a :class:`ServerSpec` may use in this run."""
        tcp = (self.tcp_api or "").rpartition(":")[2]
        return {"api": self.api, "api_path": self.api_path, "temp_base": self.temp_base,
                "log_file": self.log_file, "target_dir": self.target_dir, "tcp_port": tcp}

    #: Where ``ServerSpec.install`` puts the target's files.
    target_dir = "/opt/wraplab-target"

    @property
    def barrier_base(self) -> str:
        """Where the actors' barrier directories go (:class:`wraplab.engine.actors.Barrier`):
        beside the temp base, not in it, so the server's own ``wrap-*`` entries stay alone
        there. A reused container has it removed by the reuse check."""
        return posixpath.join(posixpath.dirname(self.temp_base.rstrip("/")) or "/",
                              "wraplab-barriers")

    @abc.abstractmethod
    def _install(self) -> None:
        """Copy ``spec.install`` to :attr:`target_dir` in the lab (nothing when empty)."""

    def _start_server(self) -> None:
        t0 = time.monotonic()
        self._install()
        user = self.server_user
        argv = [*self.spec.launcher, *self.spec.command(self.placeholders())]
        if self.spec.server_userns:
            argv = [*self.userns_launcher(self.spec.server_userns), *argv]
        self.server = self._spawn(f"server[{self.spec.placement.value}]", user, argv,
                                  dict(self.spec.env), None, action="server")
        wait = ServerReady(self.spec.ready)
        wait.wait_until_ready(self)
        self.health = wait.body if isinstance(wait.body, dict) else None
        self._record(TranscriptEntry(
            action="server-ready", actor=self.server.actor, user=user.name, uid=user.uid,
            argv=tuple(argv), started=self.server.started, duration=time.monotonic() - t0,
            stdout=json.dumps(wait.body, sort_keys=True) if wait.body is not None else "",
            note=(f"the agent saw the socket accept after {wait.watched['waited_ms']} ms "
                  f"({wait.watched['tries']} connects); " if wait.watched else "")
                 + f"{wait.polls} {self.spec.ready.kind} readiness checks; "
                 f"pid {self.server.pid}",
        ))

    def server_tail(self, ended: ActorResult | None = None, lines: int = 20) -> str:
        """The server's last log lines and output, for an error message."""
        out = []
        try:
            log = self._read_file(self.log_file).splitlines()[-lines:]
        except Exception as exc:  # the lab itself is failing
            log = [f"(cannot read {self.log_file}: {exc})"]
        out.append(f"\nlast lines of the server's log {self.log_file}:\n  "
                   + ("\n  ".join(log) if log else "(empty)"))
        if ended is None and self.server is not None and self.server.poll() is None:
            return "".join(out)
        ended = ended or (self.server.poll() if self.server else None)
        if ended is not None:
            for name, text in (("stdout", ended.stdout), ("stderr", ended.stderr)):
                tail = text.strip().splitlines()[-lines:]
                if tail:
                    out.append(f"\nits {name}:\n  " + "\n  ".join(tail))
        return "".join(out)

    def userns_launcher(self, roles: Sequence[str]) -> list[str]:
        """argv prefix: run the rest as root of a user namespace mapping only ``roles``."""
        ids: set[int] = set()
        for role in roles:
            user = self.user(role)
            ids.update((user.uid, user.gid))
        return ["python3", "-m", f"{ACTOR_TOOLS}.userns",
                *(f"--id={i}" for i in sorted(ids)), "--"]

    @property
    def server_user(self) -> User:
        return self.users["service"] if self.spec.placement is Placement.SERVICE else ROOT

    # ------------------------------------------------------------ actors
    def user(self, actor: str | int | User) -> User:
        """The user behind a role, a user name, ``"root"``, a User, or a raw uid (int,
        used as it is in the lab, with gid = uid)."""
        if isinstance(actor, User):
            return actor
        if isinstance(actor, int):
            return User(name=str(actor), uid=actor, gid=actor, role=f"uid{actor}")
        try:
            return self.users[actor]
        except KeyError as exc:
            raise LabError(str(exc.args[0])) from None

    @abc.abstractmethod
    def _spawn(self, actor: str, user: User, argv: Sequence[str], env: Mapping[str, str] | None,
               cwd: str | None, action: str) -> ActorHandle:
        ...

    def spawn(self, actor: str | int | User, argv: Sequence[str], *,
              env: Mapping[str, str] | None = None, cwd: str | None = None,
              caps: Sequence[str] = ()) -> ActorHandle:
        """Start an actor in the background as its user; returns its handle.

        ``caps`` (e.g. ``("dac_override",)``): the actor keeps these capabilities although
        it runs as its (non-root) uid -- container root that dropped to the uid but kept
        them. Launched as root through ``setpriv --reuid --regid --groups --inh-caps
        --ambient-caps``, so the capabilities are effective in the actor and survive its
        execve; the transcript names the actor ``<actor>+<cap>``."""
        self._check_open()
        label = str(actor) if not isinstance(actor, User) else actor.role
        user = self.user(actor)
        if not caps:
            return self._spawn(label, user, argv, env, cwd, action="spawn")
        return self._spawn_with_caps(label, user, argv, env, cwd, "spawn", caps)

    def exec(self, actor: str | int | User, argv: Sequence[str], *,
             timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None,
             cwd: str | None = None, caps: Sequence[str] = ()) -> ActorResult:
        """Run an actor as its user and wait for it (killed after ``timeout``); ``caps``
        as for :meth:`spawn`."""
        self._check_open()
        label = str(actor) if not isinstance(actor, User) else actor.role
        user = self.user(actor)
        if caps:
            handle = self._spawn_with_caps(label, user, argv, env, cwd, "exec", caps)
        else:
            handle = self._spawn(label, user, argv, env, cwd, action="exec")
        return handle.wait(timeout)

    #: setpriv in the lab (the images and the host have util-linux's).
    setpriv_path = "setpriv"

    def cap_launcher(self, user: User, caps: Sequence[str]) -> list[str]:
        """argv prefix run by root: become ``user`` (uid, gid, its groups) keeping ``caps``
        inheritable and ambient, hence permitted and effective after the execve."""
        if user.uid == 0:
            raise LabError("caps= is for non-root actors (root has its capabilities)")
        names = [c.lower().removeprefix("cap_") for c in caps]
        bad = [n for n in names if not n.replace("_", "").isalpha()]
        if bad or not names:
            raise LabError(f"bad capability names {list(caps)!r}")
        want = ",".join(f"+{n}" for n in names)
        groups = [user.gid, *(g for g in user.groups if g != user.gid)]
        return [self.setpriv_path, f"--reuid={user.uid}", f"--regid={user.gid}",
                "--groups=" + ",".join(str(g) for g in groups), f"--inh-caps={want}",
                f"--ambient-caps={want}", "--"]

    def _spawn_with_caps(self, label: str, user: User, argv: Sequence[str],
                         env: Mapping[str, str] | None, cwd: str | None, action: str,
                         caps: Sequence[str]) -> ActorHandle:
        prefix = self.cap_launcher(user, caps)
        env = {"HOME": self.temp_base, "USER": user.name, "LOGNAME": user.name, **(env or {})}
        tag = "+".join(c.lower().removeprefix("cap_") for c in caps)
        handle = self._spawn(f"{label}+{tag}", ROOT, [*prefix, *argv], env, cwd, action)
        handle.user = user  # what the process runs as once setpriv exec-ed it
        return handle

    def exec_many(self, calls: Iterable[tuple[str | int | User, Sequence[str]]], *,
                  timeout: float = DEFAULT_TIMEOUT) -> list[ActorResult]:
        """Run several actors at once; results in the order given. ``timeout`` is for all."""
        self._check_open()
        handles = [self._spawn(str(a) if not isinstance(a, User) else a.role, self.user(a), argv,
                               None, None, action="exec") for a, argv in calls]
        deadline = time.monotonic() + timeout
        return [h.wait(max(0.0, deadline - time.monotonic())) for h in handles]

    # ------------------------------------------------------------ lab facts
    def tool(self, tool: str, args: Sequence[str], *, as_user: str | int | User = "root",
             timeout: float = 30.0) -> dict[str, Any]:
        """Run an in-lab actor tool (``python3 -m wraplab.actors.<tool>``), parse its JSON."""
        result = self._tool_result(tool, args, self.user(as_user), timeout)
        try:
            return result.json()
        except ValueError as exc:
            raise LabError(f"{tool} failed: {result.describe()}\n{result.stderr[-2000:]}") from exc

    def _tool_result(self, tool: str, args: Sequence[str], user: User,
                     timeout: float) -> ActorResult:
        self._check_open()
        argv = ["python3", "-m", f"{ACTOR_TOOLS}.{tool}", *args]
        return self._spawn("lab", user, argv, None, None, action=f"tool:{tool}").wait(timeout)

    def stat(self, path: str) -> FileFacts:
        """lstat + ACL of ``path`` in the lab, as root."""
        return self.stat_many([path])[0]

    def stat_many(self, paths: Sequence[str]) -> list[FileFacts]:
        raw = self.tool("stat", ["--", *paths])
        return [FileFacts.from_tool(f) for f in raw["facts"]]

    def listdir(self, path: str) -> list[str]:
        """Sorted names in a directory of the lab (as root); LabError if it is not one."""
        facts = self.tool("stat", ["--list", "--", path])["facts"][0]
        if facts["entries"] is None:
            why = facts.get("error") or facts.get("kind") or "missing"
            raise LabError(f"listdir {path}: {why}")
        return list(facts["entries"])

    def _api_raw(self, method: str, path: str, body: Any, user: User,
                 api: str) -> tuple[int | None, Any]:
        args = [method, path, "--api", api]
        if body is not None:
            args += ["--body", body if isinstance(body, str) else json.dumps(body)]
        # Not recorded as a tool call: health polls would flood the transcript.
        argv = ["python3", "-m", f"{ACTOR_TOOLS}.api", *args]
        result = self._spawn("lab", user, argv, None, None, action="api-poll").wait(30)
        try:
            out = result.json()
        except ValueError:
            return None, result.stderr.strip()[-500:]
        return out.get("status"), out.get("body") if out.get("status") else out.get("error")

    def api_request(self, method: str, path: str, body: Any = None, *,
                    as_user: str | int | User = "root",
                    api: str | None = None) -> tuple[int | None, Any]:
        """One request to the server's API from inside the lab as ``as_user``:
        ``(status, parsed JSON body)``; status None when no response came (body = errno)."""
        args = [method, path, "--api", api or self.api]
        if body is not None:
            args += ["--body", body if isinstance(body, str) else json.dumps(body)]
        out = self.tool("api", args, as_user=as_user)
        return out.get("status"), out.get("body") if out.get("status") else out.get("error")

    def events(self, session: str, *, as_user: str | int | User = "root") -> list[dict[str, Any]]:
        """The session's event list (``GET /api/v1/sessions/{id}/events``)."""
        status, body = self.api_request("GET", f"/api/v1/sessions/{session}/events",
                                        as_user=as_user)
        if status != 200 or not isinstance(body, dict):
            raise LabError(f"events of {session}: HTTP {status}: {body}")
        return list(body.get("events", []))

    def server_log(self) -> list[dict[str, Any]]:
        """The server's JSON log lines so far (non-JSON lines as ``{"raw": line}``)."""
        text = self._read_file(self.log_file)
        out: list[dict[str, Any]] = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                out.append(obj if isinstance(obj, dict) else {"raw": line})
            except ValueError:
                out.append({"raw": line})
        return out

    @abc.abstractmethod
    def _read_file(self, path: str) -> str:
        """A file's text, read as root in the lab ("" when missing)."""

    def server_info(self) -> dict[str, Any]:
        """The server process: pid, uid, CapEff (hex) and cap names, fd and thread count."""
        if self.server is None or self.server.pid is None:
            raise LabError("no server process")
        return self.tool("procinfo", [str(self.server.pid)])

    def stop_server(self, sig: str = "TERM", timeout: float = 10.0) -> ActorResult:
        """Signal the server (only the server process) and wait for it to exit."""
        if self.server is None:
            raise LabError("no server process")
        if self.server.poll() is None:
            self._signal_one(self.server.pid, sig)
        return self.server.wait(timeout)

    @abc.abstractmethod
    def _signal_one(self, pid: int | None, sig: str) -> None:
        ...

    # ------------------------------------------------------------ bookkeeping
    def _link_agent(self, name: str, write, close, lines, t0: float) -> None:
        """Speak to a started resident agent (:mod:`wraplab.actors.agent`): ``write`` sends
        a line, ``lines`` yields its answers, ``close`` ends it; record its start."""
        from wraplab.labs import agent

        link = agent.AgentLink(name, write, close)
        threading.Thread(target=link.read_from, args=(lines,), daemon=True,
                         name=f"wraplab-agent-{self.id[:8]}").start()
        hello = link.call("hello", timeout=agent.START_TIMEOUT)
        self._agent = link
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=0, argv=tuple(agent.ARGV),
            duration=time.monotonic() - t0,
            note=f"resident actor agent, pid {hello.get('pid')} "
                 f"(python {hello.get('python')}); {agent.SWITCH}=0 turns it off",
        ))

    def _record(self, entry: TranscriptEntry) -> None:
        if entry.action in ("api-poll", "read"):
            return
        self.transcript.append(entry)

    def format_transcript(self, since: int = 0) -> str:
        """The transcript as text (from entry ``since`` on)."""
        head = f"lab {self.lab_name} run {self.id[:12]} ({self.spec.name}: " \
               f"{shlex.join(self.spec.argv)}, " \
               f"placement {self.spec.placement.value})"
        if since:
            head += f", from action {since + 1} on"
        return head + "\n" + format_transcript(self.transcript[since:])

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab run {self.id[:12]} is closed")


class Lab(abc.ABC):
    """A place where actors run as real users: :class:`DockerLab` or :class:`LocalLab`."""

    name: str

    def start(self, spec: ServerSpec) -> LabRun:
        """Make a fresh lab, start the server in its placement, wait until it is healthy.

        Whatever was made is removed again if any of that fails (the exception carries the
        transcript so far); a run that starts is removed at exit, on SIGINT/SIGTERM, or by
        ``close()``."""
        problem = self.problem()
        if problem:
            raise LabUnavailable(problem)
        run = self._new_run(spec)
        cleanup.register(run)
        try:
            run._launch()
        except BaseException as exc:
            run.close()
            exc.add_note(run.format_transcript())
            raise
        return run

    @abc.abstractmethod
    def _new_run(self, spec: ServerSpec) -> LabRun:
        """Check ``spec`` against this lab, sweep what crashed runs left, and return the
        (not yet launched) run; raise :class:`LabUnavailable` for what it cannot do."""

    @abc.abstractmethod
    def problem(self) -> str | None:
        """Why this lab cannot run here, or None when it can."""

    def available(self) -> bool:
        return self.problem() is None
