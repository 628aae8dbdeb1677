"""LocalLab: the same lab on this Linux host, for a harness running as root.

Actors run as numeric ids ``UID_OFFSET + declared id`` (200000 + 1001 = 201001 for the
owner; every user's private group likewise, wrapusers 1100 -> 201100) with no
/etc/passwd change; ``run.users`` holds the shifted numbers. Root stays 0.

Everything lives under one private directory ``$WRAPLAB_LOCAL_BASE/wraplab-XXXXXXXX``
(default base ``/tmp``; mode 0755 so every actor can traverse it)::

    bin/python3 -> /usr/bin/python3   (an interpreter every uid can execute)
    bin/wrapref                        (the same launcher as in the images)
    lib -> ../wraplab-lib-<hash>-<pid>/lib  (lib/wrapref/, lib/wraplab/actors/; PYTHONPATH)
    home/<user>/                       (0700, owned by the user; HOME)
    run/wrapref/api.sock               (the API; dir owned by the server's user)
    log/server.log                     (the server's --log-file)
    tmp/                               (1777: the server's --temp-base)

``lib`` (world-readable copies of the packages and their bytecode) is made once per harness
process and content, beside the labs (:func:`shared_lib`): copying and compiling it per
cell was a large share of a matrix's harness CPU. A kept lab (``wraplab run --keep``)
outlives that tree, so it gets its own copy, as a real directory.

The server runs as root; as root with CAP_CHOWN removed from its bounding, inheritable
and so effective sets (``setpriv --bounding-set -chown --inh-caps -chown``); or as the
shifted service uid. Each process gets its own session (process group) and
``WRAPLAB_RUN=<run id>`` in its environment; at the end every one is killed and the
directory removed, also on exceptions and SIGINT/SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import py_compile
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from wraplab import images, paths, users
from wraplab.labs import agent, cleanup
from wraplab.labs.base import (
    ActorHandle,
    Lab,
    LabRun,
    LabUnavailable,
    Placement,
    ServerSpec,
    TranscriptEntry,
)
from wraplab.users import User

UID_OFFSET = 200000
#: Bytecode of the lab's modules by the SHA-256 of their source (hash-checked .pyc files
#: are valid for any copy of the same source, so one compile serves every lab).
_BYTECODE: dict[bytes, bytes] = {}


def precompile(lib: Path) -> None:
    """Put each module's bytecode in ``__pycache__`` beside it, compiled once per harness
    process.  The lab's processes never write bytecode (``PYTHONDONTWRITEBYTECODE``), so
    without this every ``wrapref serve`` and ``wrapref wrap`` compiled wrapref again
    (~20 ms each).  A lab interpreter of another version ignores the files."""
    for path in sorted(lib.rglob("*.py")):
        key = hashlib.sha256(path.read_bytes()).digest()
        cfile = Path(importlib.util.cache_from_source(str(path)))
        code = _BYTECODE.get(key)
        if code is None:
            py_compile.compile(str(path), cfile=str(cfile), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
            _BYTECODE[key] = cfile.read_bytes()
        else:
            cfile.parent.mkdir(exist_ok=True)
            cfile.write_bytes(code)


def lib_files(wrapref_src: Path) -> tuple[list[str], dict[str, bytes]]:
    """What goes into a lab's ``lib``: its directories and files (relative paths; bytes),
    read once so that the tree written is the tree hashed. Bytecode is left out."""
    dirs = ["wrapref", "wraplab", "wraplab/actors"]
    files = {"wraplab/__init__.py": images.actors_init()}
    for top, src in (("wrapref", wrapref_src), ("wraplab/actors", paths.ACTORS_DIR)):
        for root, subdirs, names in os.walk(src, followlinks=True):  # copytree's symlinks=False
            subdirs[:] = sorted(n for n in subdirs if n != "__pycache__")
            rel = os.path.normpath(os.path.join(top, os.path.relpath(root, src)))
            dirs += [f"{rel}/{n}" for n in subdirs]
            for name in sorted(n for n in names if not n.endswith(".pyc")):
                files[f"{rel}/{name}"] = Path(root, name).read_bytes()
    return dirs, files


def write_lib(lib: Path, dirs: Sequence[str], files: Mapping[str, bytes]) -> None:
    """Write a ``lib`` tree and its bytecode: root's, dirs 0755, files 0644 (every actor
    reads it, none writes it)."""
    lib.mkdir(mode=0o755)
    for rel in dirs:
        (lib / rel).mkdir(mode=0o755)
    for rel, data in files.items():
        (lib / rel).write_bytes(data)
    precompile(lib)
    for root, subdirs, names in os.walk(lib):
        for name in subdirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in names:
            os.chmod(os.path.join(root, name), 0o644)
    os.chmod(lib, 0o755)


#: The ``lib`` trees this process made, by base directory and content digest.
_LIBS: dict[tuple[Path, str], Path] = {}
_LIBS_LOCK = threading.Lock()


def shared_lib(base: Path, wrapref_src: Path) -> Path:
    """The ``lib`` every lab of this process under ``base`` with this wrapref source links to.

    Keyed by content (paths and bytes), not by source path: ``wraplab selftest`` runs
    weakened scratch copies side by side. Made once, atomically (built in a temporary
    directory beside it, then renamed; a lock for this process's threads), as
    ``base/wraplab-lib-<hash>-<pid>/lib`` with an owner file like a lab's: removed when
    the process exits (:func:`cleanup.close_all`), swept like a lab when it died."""
    dirs, files = lib_files(wrapref_src)
    digest = hashlib.sha256()
    for rel in sorted([*dirs, *files]):
        data = files.get(rel)
        digest.update(f"{rel}\0{'d' if data is None else len(data)}\0".encode())
        digest.update(data or b"")
    key = (base, digest.hexdigest()[:16])
    with _LIBS_LOCK:
        made = _LIBS.get(key)
        if made is not None and (made.parent / cleanup.LOCAL_OWNER_FILE).is_file():
            return made
        tmp = Path(tempfile.mkdtemp(prefix=f"{cleanup.LOCAL_LIB_PREFIX}{key[1]}-", dir=base))
        try:
            os.chmod(tmp, 0o755)
            cleanup.write_local_owner(tmp, f"lib-{key[1]}")  # swept from now on if we die
            write_lib(tmp / "lib", dirs, files)
            top = base / f"{cleanup.LOCAL_LIB_PREFIX}{key[1]}-{os.getpid()}"
            try:
                os.rename(tmp, top)
            except OSError:  # the name is taken (by whom?): the tree stays where it was built
                top = tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        cleanup.remove_at_exit(top)
        _LIBS[key] = top / "lib"
        return top / "lib"


DEFAULT_PYTHON = "/usr/bin/python3"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def local_base() -> Path:
    return Path(os.environ.get("WRAPLAB_LOCAL_BASE", "/tmp"))


def world_executable(path: str) -> str | None:
    """Why uids other than root cannot run ``path`` (every directory on the way must be
    searchable by others, the file executable by others), or None."""
    real = Path(path).resolve()
    if not real.is_file():
        return f"{path} does not exist"
    for parent in reversed(real.parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            return f"{parent} is not searchable by other users (so {path} is not either)"
    if not real.stat().st_mode & stat.S_IXOTH:
        return f"{real} is not executable by other users"
    return None


class LocalActor(ActorHandle):
    def __init__(self, run: LocalRun, actor: str, user: User, argv: Sequence[str],
                 env: Mapping[str, str] | None, cwd: str | None, action: str,
                 prefix: Sequence[str] = ()) -> None:
        super().__init__(run, actor, user, argv, action)
        self._run = run
        environment = run.environment(user)
        environment.update(env or {})
        kwargs: dict = {}
        if user.uid != 0:
            # Like login/docker exec: the primary group is among the supplementary ones.
            groups = [user.gid, *(g for g in user.groups if g != user.gid)]
            kwargs = {"user": user.uid, "group": user.gid, "extra_groups": groups}
        argv0 = shutil.which(self.argv[0], path=environment["PATH"]) if self.argv else None
        command = [*prefix, argv0 or self.argv[0], *self.argv[1:]]
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=environment, cwd=cwd or "/", start_new_session=True, close_fds=True, **kwargs,
        )
        run._procs.append(self._proc)
        self._out = b""
        self._err = b""
        self._done = threading.Event()
        threading.Thread(target=self._pump, daemon=True, name=f"wraplab-{actor}").start()

    def _pump(self) -> None:
        try:
            self._out, self._err = self._proc.communicate()
        finally:
            self._done.set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    def _wait_exit(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def _collect(self) -> tuple[int | None, str, str]:
        return (self._proc.returncode, self._out.decode(errors="replace"),
                self._err.decode(errors="replace"))

    def signal(self, sig: str = "KILL") -> None:
        self._run._signal_tree(self._proc.pid, sig)


class LocalRun(LabRun):
    def __init__(self, lab: LocalLab, spec: ServerSpec, labdir: Path) -> None:
        super().__init__(
            lab_name=lab.name, base="local", spec=spec, users=lab.users,
            api_path=str(labdir / "run" / "wrapref" / "api.sock"),
            temp_base=str(labdir / "tmp"), log_file=str(labdir / "log" / "server.log"),
        )
        self.lab = lab
        self.labdir = labdir
        self._procs: list[subprocess.Popen] = []
        self._agent: agent.AgentLink | None = None
        self._agent_actors: list[agent.AgentActor] = []
        self.setpriv_path = lab.setpriv

    # ------------------------------------------------------------ setup
    def _prepare(self) -> None:
        t0 = time.monotonic()
        d = self.labdir
        os.chmod(d, 0o755)
        cleanup.write_local_owner(d, self.id, keep=self.spec.keep)
        for sub in ("bin", "home", "run", "log", "tmp"):
            (d / sub).mkdir()
        os.chmod(d / "tmp", 0o1777)
        (d / "bin" / "python3").symlink_to(self.lab.python)
        launcher = d / "bin" / "wrapref"
        launcher.write_bytes(images.wrapref_launcher())
        launcher.chmod(0o755)
        src = self.lab.wrapref_src or paths.wrapref_package()
        if self.spec.keep:  # outlives this process, and so the shared tree
            write_lib(d / "lib", *lib_files(src))
        else:
            (d / "lib").symlink_to(os.path.relpath(shared_lib(d.parent, src), d))
        for user in (u for u in self.users.users if not u.system):
            home = d / "home" / user.name
            home.mkdir(mode=0o700)
            os.chown(home, user.uid, user.gid)
        server = self.server_user
        api_dir = d / "run" / "wrapref"
        api_dir.mkdir(mode=0o755)
        os.chown(api_dir, server.uid, server.gid)
        os.chmod(d / "log", 0o750)
        os.chown(d / "log", server.uid, server.gid)
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            duration=time.monotonic() - t0,
            note=f"local lab {d} (uids +{self.lab.uid_offset}; placement "
                 f"{self.spec.placement.value}; python {self.lab.python})",
        ))

    @property
    def target_dir(self) -> str:  # type: ignore[override]
        return str(self.labdir / "target")

    def _install(self) -> None:
        """``spec.install``: the target's host files copied into the lab's ``target/``
        (root's, readable and where executable on the host executable by every user, so
        every placement can run them)."""
        if not self.spec.install:
            return
        t0 = time.monotonic()
        top = Path(self.target_dir)
        top.mkdir(mode=0o755, exist_ok=True)
        for host, name in self.spec.install:
            src, dst = Path(host), top / name
            if src.is_dir():
                shutil.copytree(src, dst, symlinks=False)
            else:
                shutil.copy2(src, dst)
            for path in [dst, *(dst.rglob("*") if dst.is_dir() else [])]:
                if path.is_dir():
                    os.chmod(path, 0o755)
                else:
                    os.chmod(path, 0o755 if path.stat().st_mode & 0o111 else 0o644)
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            duration=time.monotonic() - t0,
            note=f"installed {', '.join(n for _, n in self.spec.install)} into {top}"))

    def _launch(self) -> None:
        t0 = time.monotonic()
        self._prepare()
        if agent.enabled() and not self.spec.keep:  # a kept lab outlives us: no agent
            self._start_agent()
        self._start_server()
        self.startup_seconds = time.monotonic() - t0

    def environment(self, user: User) -> dict[str, str]:
        home = "/root" if user.uid == 0 else str(self.labdir / "home" / user.name)
        if user.uid != 0 and not (self.labdir / "home" / user.name).is_dir():
            home = str(self.labdir / "tmp")
        return {
            "PATH": f"{self.labdir / 'bin'}:{SYSTEM_PATH}",
            "PYTHONPATH": str(self.labdir / "lib"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "HOME": home,
            "USER": user.name,
            "LOGNAME": user.name,
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.labdir / "tmp"),
            cleanup.RUN_ENV: self.id,
        }

    # ------------------------------------------------------------ processes
    def _start_agent(self) -> None:
        """The resident actor agent (:mod:`wraplab.actors.agent`): a root subprocess of the
        harness in its own session, with the lab's root environment; stderr to log/agent.log."""
        t0 = time.monotonic()
        with open(self.labdir / "log" / "agent.log", "wb") as log:
            proc = subprocess.Popen(
                [self.lab.python, *agent.ARGV[1:]], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=self.environment(users.ROOT), cwd="/",
                start_new_session=True, close_fds=True, bufsize=0,
            )
        self._procs.append(proc)
        stdin, stdout = proc.stdin, proc.stdout
        assert stdin is not None and stdout is not None

        def close() -> None:
            stdin.close()

        self._link_agent(self.labdir.name, stdin.write, close, agent.lines_of(stdout.read), t0)

    def _spawn(self, actor: str, user: User, argv: Sequence[str], env: Mapping[str, str] | None,
               cwd: str | None, action: str) -> ActorHandle:
        prefix: tuple[str, ...] = ()
        if action == "server" and self.spec.placement is Placement.ROOT_NO_CHOWN:
            prefix = (self.lab.setpriv, "--bounding-set", "-chown", "--inh-caps", "-chown", "--")
        link = self._agent
        if link is None or not link.alive:
            return LocalActor(self, actor, user, argv, env, cwd, action, prefix)
        # What LocalActor gives the process: the lab environment of the user, then ours;
        # argv[0] found on the lab's PATH; a non-root user with its gid first among its
        # groups; root keeps the harness's (so the agent's) ids.
        environment = self.environment(user)
        environment.update(env or {})
        argv0 = shutil.which(argv[0], path=environment["PATH"]) if argv else None
        if argv and argv0 is None:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        groups = ([user.gid, *(g for g in user.groups if g != user.gid)] if user.uid != 0
                  else None)
        command = [*prefix, argv0 or "", *argv[1:]] if argv else [*prefix]
        handle = agent.AgentActor(
            self, link, actor, user, command, action=action, uid=user.uid, gid=user.gid,
            groups=groups, env=environment, inherit_env=False,
            cwd=cwd, signal_exit=lambda sig: -sig, kill=self._signal_tree,
            keep_ids=user.uid == 0,
        )
        handle.argv = tuple(argv)  # the transcript shows the argv asked for, as LocalActor
        self._agent_actors.append(handle)
        return handle

    def _signal_tree(self, pid: int, sig: str) -> None:
        signum = _signum(sig)
        try:
            proc = psutil.Process(pid)
            family = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signum)
        self._record(TranscriptEntry(action="kill", actor="lab", user="root", uid=0,
                                     argv=("kill", f"-{sig}", str(pid)), note="process tree"))

    def _signal_one(self, pid: int | None, sig: str) -> None:
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, _signum(sig))
            self._record(TranscriptEntry(action="kill", actor="lab", user="root", uid=0,
                                         argv=("kill", f"-{sig}", str(pid))))

    def _read_file(self, path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        if self._closed:
            return
        with cleanup.signals_deferred():
            self._closed = True
            try:
                procs = []
                # The agent's children: killed by process group like the Popen ones, then
                # reaped by the agent (still running), which reports each exit.
                live = [h for h in self._agent_actors
                        if h._pid is not None and not h._done.is_set()]
                for handle in live:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(handle._pid, 9)
                deadline = time.monotonic() + 5
                for handle in live:
                    handle._done.wait(max(0.0, deadline - time.monotonic()))
                if self._agent is not None:
                    self._agent.close()
                for popen in self._procs:
                    if popen.poll() is None:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(popen.pid, 9)
                        with contextlib.suppress(psutil.Error):
                            procs.append(psutil.Process(popen.pid))
                cleanup.kill_processes(procs)
                cleanup.remove_local_lab(self.labdir, self.id)
            finally:
                cleanup.unregister(self)


def _signum(sig: str) -> int:
    return int(getattr(signal, "SIG" + sig.upper().removeprefix("SIG")))


class LocalLab(Lab):
    """Labs on this host (root only): actors as reserved numeric uids, no containers."""

    name = "local"

    def __init__(self, *, python: str | None = None, uid_offset: int = UID_OFFSET,
                 base_dir: str | Path | None = None,
                 wrapref_src: str | Path | None = None) -> None:
        #: ``wrapref_src``: run this copy of the wrapref package (server and client)
        #: instead of the project's -- ``wraplab selftest`` runs weakened scratch copies.
        self.wrapref_src = Path(wrapref_src) if wrapref_src else None
        self.python = python or os.environ.get("WRAPLAB_LOCAL_PYTHON", DEFAULT_PYTHON)
        self.uid_offset = uid_offset
        self.base_dir = Path(base_dir) if base_dir else local_base()
        self.base_name = "local"
        self.setpriv = shutil.which("setpriv") or "setpriv"
        self._users: users.Users | None = None

    @property
    def users(self) -> users.Users:
        if self._users is None:
            self._users = users.load().shifted(self.uid_offset)
        return self._users

    def problem(self) -> str | None:
        if os.name != "posix" or not Path("/proc/self/status").exists():
            return "LocalLab needs Linux"
        if os.geteuid() != 0:
            return "LocalLab needs the harness to run as root (it starts processes as other uids)"
        if shutil.which("setpriv") is None:
            return "setpriv is missing (util-linux), needed to drop CAP_CHOWN"
        why = world_executable(self.python)
        if why:
            return f"no Python every uid can run: {why} (set WRAPLAB_LOCAL_PYTHON)"
        try:
            paths.wrapref_package()
        except paths.SourcesMissing as exc:
            return str(exc)
        return None

    def _new_run(self, spec: ServerSpec) -> LocalRun:
        if spec.image:
            raise LabUnavailable(f"{spec.name} comes as the image {spec.image}: the local lab "
                                 "runs no images (use the Docker lab)")
        if spec.peer:
            raise LabUnavailable("the local lab is one host: there is no second container "
                                 "(ServerSpec.peer)")
        # spec.userns is ignored: the host's own policy decides about user namespaces.
        self.base_dir.mkdir(parents=True, exist_ok=True)
        cleanup.sweep_stale_local(self.base_dir)
        labdir = Path(tempfile.mkdtemp(prefix=cleanup.LOCAL_PREFIX, dir=self.base_dir))
        return LocalRun(self, spec, labdir)
