"""DockerLab: one fresh container per run, from wraplab's lab image, with no network.

The container runs ``sleep infinity`` under docker-init (``init=True``, so orphaned actor
children are reaped). The server and every actor are ``docker exec``-ed into it as their
user (names from users.conf resolve in the image's /etc/passwd), each through
``sh -c 'echo $$; exec "$@"'`` so the harness learns the in-container pid first; their
stdout/stderr are streamed (demuxed, by :mod:`~wraplab.labs.dockerexec`, which loses no
byte) by a thread per process and the exit code is read with exec-inspect.

Placements: ``ROOT`` (default capabilities), ``ROOT_NO_CHOWN`` (the container is created
with ``cap_drop=["CHOWN"]``, so every process in it, root actors included, lacks
CAP_CHOWN), ``SERVICE`` (the server is exec-ed as the service user). ``/run/wrapref`` and
``/var/log/wrapref`` are fresh tmpfs mounts owned by the server's user.

Lab options (:class:`~wraplab.labs.ServerSpec`): ``userns=True`` starts the container(s)
with ``security_opt=["seccomp=unconfined"]`` so actors can ``unshare -Ur`` (Docker's
default seccomp profile refuses CLONE_NEWUSER without CAP_SYS_ADMIN; this is the one thing
relaxed, for the whole container). ``peer=True`` adds a second container, ``run.peer``
(:class:`DockerPeer`), from the same image, with the same labels, network mode,
capabilities and seccomp setting: the API directory and the temp base are then two
per-run tmpfs *volumes* (local driver, ``type=tmpfs``; labelled like the containers)
mounted at the same paths in both containers, so a numeric uid in the peer is the same
kernel user as in the server's container. Both containers and both volumes are removed
with the run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import tarfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors
from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from wraplab import images, users
from wraplab.labs import agent, cleanup, dockerexec, warm
from wraplab.labs.base import (
    ACTOR_TOOLS,
    DEFAULT_TIMEOUT,
    ActorHandle,
    ActorResult,
    Lab,
    LabError,
    LabRun,
    LabUnavailable,
    Placement,
    ServerSpec,
    TranscriptEntry,
)
from wraplab.users import ROOT, User

# Ryuk (testcontainers' reaper) cannot be pulled here; we label and sweep ourselves.
testcontainers_config.ryuk_disabled = True

LAUNCH = ["/bin/sh", "-c", 'echo "$$"; exec "$@"', "wraplab-actor"]
API_DIR = "/run/wrapref"
LOG_DIR = "/var/log/wrapref"
TEMP_BASE = "/tmp"
POOL = 64


def _client(timeout: int | None) -> docker.DockerClient:
    return images.docker_client(timeout, max_pool_size=POOL)


class LabContainer(DockerContainer):
    """testcontainers' DockerContainer with the few builders a lab needs."""

    def __init__(self, image: str, **kwargs: Any) -> None:
        super().__init__(image, docker_client_kw={"max_pool_size": POOL,
                                                   "version": images.api_version()}, **kwargs)
        # Never join a "host network" guessed by testcontainers: labs have no network.
        self.get_docker_client().find_host_network = lambda: None  # type: ignore[method-assign]
        self._labels: dict[str, str] = {}
        self._create_kwargs: dict[str, Any] = {}

    def with_labels(self, **labels: str) -> LabContainer:
        self._labels.update(labels)
        return self

    def with_tmpfs(self, path: str, options: str) -> LabContainer:
        self.tmpfs[path] = options
        return self

    def with_option(self, **kwargs: Any) -> LabContainer:
        self._create_kwargs.update(kwargs)
        return self

    def start(self) -> LabContainer:
        self.with_kwargs(labels=dict(self._labels), **self._create_kwargs)
        super().start()
        return self

    def assert_no_network(self) -> None:
        """The container's network mode is none and it is on no network but none."""
        wrapped = self.get_wrapped_container()
        wrapped.reload()
        mode = wrapped.attrs["HostConfig"].get("NetworkMode")
        networks = set((wrapped.attrs.get("NetworkSettings") or {}).get("Networks") or {})
        if mode != "none" or not networks <= {"none"}:
            raise LabError(f"container {wrapped.name} has network mode {mode!r}, "
                           f"networks {sorted(networks)}; expected none")


class DockerActor(ActorHandle):
    def __init__(self, run: DockerRun, actor: str, user: User, argv: Sequence[str],
                 env: Mapping[str, str] | None, cwd: str | None, action: str,
                 container_id: str | None = None) -> None:
        super().__init__(run, actor, user, argv, action)
        self._run = run
        self._container_id = container_id or run.container_id
        self._pid: int | None = None
        self._pid_ready = threading.Event()
        self._done = threading.Event()
        self._out = bytearray()
        self._err = bytearray()
        self._exit_code: int | None = None
        self._error: str | None = None
        api = run._stream.api
        if user.uid == 0:
            docker_user = "root"
        elif user.name in run.users and run.users[user.name].uid == user.uid:
            docker_user = user.name  # the image's /etc/passwd and /etc/group apply
        else:
            docker_user = f"{user.uid}:{user.gid}"
        environment = {cleanup.RUN_ENV: run.id, **(env or {})}
        self._exec_id = api.exec_create(
            self._container_id, [*LAUNCH, *self.argv], user=docker_user,
            environment=environment, workdir=cwd or "/",
        )["Id"]
        stream = dockerexec.start(api, self._exec_id)
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True,
                                        name=f"wraplab-{actor}")
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        try:
            for out, err in stream:
                if out:
                    self._out += out
                    if not self._pid_ready.is_set() and b"\n" in self._out:
                        line, _, rest = bytes(self._out).partition(b"\n")
                        with contextlib.suppress(ValueError):
                            self._pid = int(line)
                        self._out = bytearray(rest)
                        self._pid_ready.set()
                if err:
                    self._err += err
        except Exception as exc:  # the container went away, the daemon hung up...
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            if self._pid is None and not self._out and not self._err and not self._error:
                # LAUNCH prints the pid before anything runs: a stream without even that
                # line lost the whole output.
                self._error = ("it carried nothing, not even the launcher's pid line (the "
                               "container went away before the exec ran?)")
            self._pid_ready.set()
            try:
                self._exit_code = self._inspect_exit()
            finally:
                self._done.set()

    def _inspect_exit(self) -> int | None:
        return dockerexec.exit_code(self._run._docker.api, self._exec_id)

    @property
    def pid(self) -> int | None:
        self._pid_ready.wait(10)
        return self._pid

    def _wait_exit(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def _collect(self) -> tuple[int | None, str, str]:
        err = self._err.decode(errors="replace")
        if self._error:
            err += f"\n[wraplab] output stream ended: {self._error}"
        return self._exit_code, self._out.decode(errors="replace"), err

    def signal(self, sig: str = "KILL") -> None:
        if self.pid is not None:
            self._run._reap(self.pid, sig, tree=True, container_id=self._container_id)


class DockerPeer:
    """The run's second container (``ServerSpec(peer=True)``): same image, same users,
    sharing the server container's API directory and temp base (per-run tmpfs volumes).

    ``run.peer.exec(actor, argv, timeout=)``, ``run.peer.spawn(actor, argv)`` and
    ``run.peer.tool(tool, args, as_user=)`` behave like the run's own, but in the peer;
    their transcript entries name the actor ``<actor>@peer``.
    """

    def __init__(self, run: DockerRun, container: LabContainer, name: str) -> None:
        self.run = run
        self.container = container
        self.container_id = container.get_container_id()
        self.name = name

    def spawn(self, actor: str | int | User, argv: Sequence[str], *,
              env: Mapping[str, str] | None = None, cwd: str | None = None,
              action: str = "spawn") -> ActorHandle:
        self.run._check_open()
        user = self.run.user(actor)
        label = actor.role if isinstance(actor, User) else str(actor)
        return DockerActor(self.run, f"{label}@peer", user, argv, env, cwd, action,
                           container_id=self.container_id)

    def exec(self, actor: str | int | User, argv: Sequence[str], *,
             timeout: float = DEFAULT_TIMEOUT, env: Mapping[str, str] | None = None,
             cwd: str | None = None) -> ActorResult:
        return self.spawn(actor, argv, env=env, cwd=cwd, action="exec").wait(timeout)

    def tool(self, tool: str, args: Sequence[str], *, as_user: str | int | User = "root",
             timeout: float = 30.0) -> dict[str, Any]:
        argv = ["python3", "-m", f"{ACTOR_TOOLS}.{tool}", *args]
        result = self.spawn(as_user, argv, action=f"tool:{tool}").wait(timeout)
        try:
            return result.json()
        except ValueError as exc:
            raise LabError(f"{tool} failed in the peer: {result.describe()}\n"
                           f"{result.stderr[-2000:]}") from exc


class DockerRun(LabRun):
    def __init__(self, lab: DockerLab, spec: ServerSpec, image: images.LabImage) -> None:
        super().__init__(
            lab_name=lab.name, base=lab.base_name, spec=spec, users=lab.users,
            api_path=f"{API_DIR}/api.sock", temp_base=TEMP_BASE, log_file=f"{LOG_DIR}/server.log",
        )
        self.image = image
        self.lab = lab
        self._docker = _client(120)
        self._stream = _client(None)  # exec output streams may be silent for long
        self.container: LabContainer | None = None
        self.container_id = ""
        self.container_name = f"wraplab-{lab.base_name}-{self.id[:12]}"
        self.peer: DockerPeer | None = None
        self._peer_container: LabContainer | None = None
        self.volumes: list[str] = []
        self._agent: agent.AgentLink | None = None
        self._warm: warm.WarmBox | None = None  # set when this container may serve again

    def _container(self, name: str, hostname: str, role: str) -> LabContainer:
        container = (
            LabContainer(self.spec.image or self.image.tag)
            .with_name(name)
            .with_command(["sleep", "infinity"])
            .with_labels(**cleanup.owner_labels(self.id), **{
                "wraplab.lab": self.lab_name,
                "wraplab.placement": self.spec.placement.value,
                "wraplab.container": role,
                **({cleanup.LABEL_KEEP: "1"} if self.spec.keep else {}),
            })
            .with_option(network_mode="none", init=True, hostname=hostname)
        )
        if self.spec.placement is Placement.ROOT_NO_CHOWN:
            container.with_option(cap_drop=["CHOWN"])
        if self.spec.relaxed_seccomp:
            container.with_option(security_opt=["seccomp=unconfined"])
        return container

    def _volume(self, what: str, options: str) -> str:
        """A per-run tmpfs volume (removed by close(), swept like the containers)."""
        name = f"{self.container_name}-{what}"
        self._docker.volumes.create(name=name, driver="local", driver_opts={
            "type": "tmpfs", "device": "tmpfs", "o": options,
        }, labels={**cleanup.owner_labels(self.id), "wraplab.lab": self.lab_name,
                   **({cleanup.LABEL_KEEP: "1"} if self.spec.keep else {})})
        self.volumes.append(name)
        return name

    @property
    def container_reused(self) -> bool:
        """This run's container served an earlier cell and was checked clean since."""
        return self._warm is not None and self._warm.cells > 0

    def _warm_key(self) -> tuple | None:
        """What a reusable container must share with this run (None: never reuse)."""
        if (self.spec.peer or self.lab.wrapref_src is not None or not agent.enabled()
                or not warm.active()):
            return None
        return (self.image.tag, self.spec.placement.value, self.spec.relaxed_seccomp)

    def _adopt(self, box: warm.WarmBox) -> None:
        """Run in a checked-clean container of an earlier cell (see :mod:`wraplab.labs.warm`)."""
        for client in (self._docker, self._stream):
            client.close()
        self._docker, self._stream = box.docker, box.stream
        self.container, self.container_id = box.container, box.container_id
        self.container_name = box.container_name
        self._agent = box.agent
        box.cells += 1
        self._warm = box
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            note=f"container {self.container_name} reused for cell {box.cells + 1} (checked "
                 f"clean: no process, file, IPC object or socket left by the last cell; "
                 f"{warm.SWITCH}=0 turns reuse off)",
        ))

    def _launch(self) -> None:
        t0 = time.monotonic()
        key = self._warm_key()
        box = warm.POOL.take(key) if key else None
        if box is not None:
            self._adopt(box)
            self._start_server()
            self.startup_seconds = time.monotonic() - t0
            return
        server = self.server_user
        owner = f"uid={server.uid},gid={server.gid}"
        container = self._container(self.container_name, "wraplab", "main")
        container.with_tmpfs(LOG_DIR, f"mode=0750,{owner}")
        shared: list[tuple[str, str]] = []
        if self.spec.peer:
            shared = [(self._volume("api", f"mode=0755,{owner}"), API_DIR),
                      (self._volume("tmp", "mode=1777"), TEMP_BASE)]
            for volume, path in shared:
                container.with_volume_mapping(volume, path, "rw,nocopy")
        else:
            container.with_tmpfs(API_DIR, f"mode=0755,{owner}")
        self.container = container
        container.start()
        self.container_id = container.get_container_id()
        container.assert_no_network()
        self._replace_wrapref(container)
        if agent.enabled() and not self.spec.keep:  # a kept lab outlives us: no agent
            self._start_agent()
        if key and self._agent is not None:
            baseline = self._agent.call("snapshot", timeout=60)
            self._warm = warm.WarmBox(
                key=key, container=container, container_id=self.container_id,
                container_name=self.container_name, docker=self._docker,
                stream=self._stream, agent=self._agent, baseline=baseline,
                keep=[int(p) for p in baseline["procs"]])
        options = "".join([", seccomp unconfined" if self.spec.relaxed_seccomp else "",
                           f", volumes {', '.join(v for v, _ in shared)}" if shared else ""])
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            duration=time.monotonic() - t0,
            note=f"container {self.container_name} from {self.image.tag} "
                 f"(network none; placement {self.spec.placement.value}{options})",
        ))
        if self.spec.peer:
            t1 = time.monotonic()
            name = f"{self.container_name}-peer"
            peer = self._container(name, "wraplab-peer", "peer")
            if self.spec.peer_shares_pids:
                peer.with_option(pid_mode=f"container:{self.container_id}")
            for volume, path in shared:
                peer.with_volume_mapping(volume, path, "rw,nocopy")
            self._peer_container = peer
            peer.start()
            peer.assert_no_network()
            self._replace_wrapref(peer)
            self.peer = DockerPeer(self, peer, name)
            self._record(TranscriptEntry(
                action="lab", actor="lab", user="root", uid=None, argv=(),
                duration=time.monotonic() - t1,
                note=f"peer container {name} (network none; shares "
                     f"{', '.join(f'{v} at {p}' for v, p in shared)}"
                     f"{' and the PID namespace' if self.spec.peer_shares_pids else ''})",
            ))
        self._start_server()
        self.startup_seconds = time.monotonic() - t0

    def _start_agent(self) -> None:
        """The resident actor agent (:mod:`wraplab.actors.agent`): ``docker exec -i`` as
        root, its stdin and stdout the hijacked exec socket; answers read by a thread."""
        t0 = time.monotonic()
        api = self._stream.api
        exec_id = api.exec_create(self.container_id, agent.ARGV, user="root", stdin=True,
                                  workdir="/")["Id"]
        # docker-py returns a SocketIO that holds the HTTP response, which holds it back:
        # a cycle. Dropped, the next full garbage collection closes the response and, with
        # it, the socket under the agent (EBADF on a later write, or a reused fd). So the
        # closure keeps ``raw`` for the agent's whole life and closes it itself.
        raw = api.exec_start(exec_id, socket=True)
        sock = getattr(raw, "_sock", raw)

        def close() -> None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)
            sock.close()
            raw.close()

        self._link_agent(self.container_name, sock.sendall, close,
                         agent.lines_of(agent.docker_stdout(sock)), t0)

    def _agent_user(self, user: User) -> str | None:
        """The user name ``docker exec --user`` would be given, when the agent can stand in
        for it (root and users of the image); None: exec this actor."""
        if user.uid == 0:
            return "root"
        if user.name in self.users and self.users[user.name].uid == user.uid:
            return user.name
        return None

    def _spawn(self, actor: str, user: User, argv: Sequence[str], env: Mapping[str, str] | None,
               cwd: str | None, action: str) -> ActorHandle:
        link = self._agent
        name = self._agent_user(user)
        if link is None or not link.alive or name is None:
            return DockerActor(self, actor, user, argv, env, cwd, action)
        # As docker exec: the container's environment, HOME of the user, then ours.
        return agent.AgentActor(
            self, link, actor, user, argv, action=action, uid=user.uid, gid=user.gid,
            groups=None, user_name=name, env={cleanup.RUN_ENV: self.id, **(env or {})},
            inherit_env=True, cwd=cwd, signal_exit=lambda sig: 128 + sig,
            kill=lambda pid, sig: self._reap(pid, sig, tree=True),
        )

    def _replace_wrapref(self, container: LabContainer) -> None:
        """``DockerLab(wrapref_src=...)``: put that copy of wrapref where the image has its
        own (the interpreter's purelib), before anything of wrapref runs."""
        src = self.lab.wrapref_src
        if src is None:
            return
        box = container.get_wrapped_container()
        code, out, err = dockerexec.run(box.client.api, box.id, [
            "python3", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
        purelib = out.decode().strip()
        if code != 0 or not purelib.startswith("/"):
            raise LabError(f"cannot find the lab's purelib: {out!r} {err[-500:]!r}")
        code, out, err = dockerexec.run(box.client.api, box.id,
                                        ["rm", "-rf", f"{purelib}/wrapref"])
        if code != 0:
            raise LabError(f"cannot remove the lab's own wrapref: {err[-500:]!r}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(src.rglob("*")):
                if "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                info = tar.gettarinfo(str(path), arcname=f"wrapref/{path.relative_to(src)}")
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode = 0o755 if path.is_dir() else 0o644
                if path.is_dir():
                    tar.addfile(info)
                else:
                    with path.open("rb") as f:
                        tar.addfile(info, f)
        if not box.put_archive(purelib, buf.getvalue()):
            raise LabError(f"could not copy {src} into {purelib}")
        self._record(TranscriptEntry(action="lab", actor="lab", user="root", uid=None, argv=(),
                                     note=f"wrapref replaced by {src} in {purelib}"))

    def _install(self) -> None:
        """``spec.install``: copy the target's host files into ``target_dir`` of the main
        container (and the peer's), owned by root, readable (and, where the host file is
        executable, executable) by every user."""
        if not self.spec.install:
            return
        t0 = time.monotonic()
        buf = io.BytesIO()
        top = self.target_dir.strip("/")
        with tarfile.open(fileobj=buf, mode="w") as tar:
            parts = top.split("/")
            for i in range(1, len(parts) + 1):
                info = tarfile.TarInfo("/".join(parts[:i]))
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for host, name in self.spec.install:
                src = Path(host)
                for path in [src, *(sorted(src.rglob("*")) if src.is_dir() else [])]:
                    arc = f"{top}/{name}" + (f"/{path.relative_to(src)}" if path != src else "")
                    info = tar.gettarinfo(str(path), arcname=arc)
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    if path.is_dir():
                        info.mode = 0o755
                        tar.addfile(info)
                    elif path.is_file():
                        info.mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
                        with path.open("rb") as f:
                            tar.addfile(info, f)
        for box in (self.container, self._peer_container):
            if box is not None and not box.get_wrapped_container().put_archive(
                    "/", buf.getvalue()):
                raise LabError(f"could not copy the target's files into {self.target_dir}")
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            duration=time.monotonic() - t0,
            note=f"installed {', '.join(n for _, n in self.spec.install)} into "
                 f"{self.target_dir}"))

    def _reap(self, pid: int, sig: str, tree: bool, container_id: str | None = None) -> None:
        argv = ["python3", "-m", "wraplab.actors.reap", "--signal", sig, str(pid)]
        if not tree:
            argv.insert(-1, "--only")
        t0 = time.monotonic()
        link = self._agent
        if link is not None and link.alive and container_id in (None, self.container_id):
            done = link.call("signal", pid=pid, sig=sig, tree=tree)
            self._record(TranscriptEntry(
                action="kill", actor="lab", user="root", uid=0, argv=tuple(argv), exit_code=0,
                stdout=json.dumps({"signalled": done.get("signalled")}),
                duration=time.monotonic() - t0, note="by the resident agent"))
            return
        code, out, err = dockerexec.run(self._docker.api, container_id or self.container_id,
                                        argv)
        stdout, stderr = (b.decode(errors="replace") for b in (out, err))
        self._record(TranscriptEntry(action="kill", actor="lab", user="root", uid=0,
                                     argv=tuple(argv), exit_code=code, stdout=stdout,
                                     stderr=stderr, duration=time.monotonic() - t0))

    def _signal_one(self, pid: int | None, sig: str) -> None:
        if pid is not None:
            self._reap(pid, sig, tree=False)

    def _read_file(self, path: str) -> str:
        # Not get_archive: it cannot read tmpfs mounts (where the log lives).
        link = self._agent
        if link is not None and link.alive:
            data = link.read_file(path)
            return "" if data is None else data.decode(errors="replace")
        result = self._spawn("lab", ROOT, ["cat", "--", path], None, None, "read").wait(30)
        return result.stdout if result.exit_code == 0 else ""

    def _recycle(self, box: warm.WarmBox) -> bool:
        """The reuse check: kill what the cell left, empty the temp base, API and log
        directories, compare the container with its first snapshot; pool it if equal."""
        t0 = time.monotonic()
        why: list[str] = []
        try:
            reset = box.agent.call("reset", keep=box.keep, empty=[TEMP_BASE, API_DIR, LOG_DIR],
                                   remove=[self.barrier_base], timeout=30)
            why += [f"still running: {reset['left']}"] if reset.get("left") else []
            why += list(reset.get("errors") or [])
            if not why:
                now = box.agent.call("snapshot", same_as=box.baseline["digest"], timeout=60)
                why = [] if now.get("same") else warm.differences(box.baseline, now)
        except LabError as exc:
            why = [str(exc)]
        kept = not why and warm.POOL.give(box)
        self._record(TranscriptEntry(
            action="lab", actor="lab", user="root", uid=None, argv=(),
            duration=time.monotonic() - t0,
            note=(f"container {box.container_name} checked clean, kept for the next cell"
                  if kept else f"container {box.container_name} not reused: "
                  + ("; ".join(why) if why else "the pool is full")),
        ))
        return kept

    def close(self) -> None:
        if self._closed:
            return
        with cleanup.signals_deferred():
            self._closed = True
            box, self._warm = self._warm, None
            if box is not None and self.server is not None:
                # The reuse check runs in the background (the next cell need not wait);
                # the run stays registered for cleanup until it has ended.
                warm.RECYCLER.submit(functools.partial(self._recycle_or_remove, box))
                return
            self._remove()

    def _recycle_or_remove(self, box: warm.WarmBox) -> None:
        """Pool the container if the reuse check finds it clean; else remove it (also
        when the check itself failed)."""
        try:
            kept = self._recycle(box)
        except Exception:  # noqa: BLE001 -- a check that broke keeps nothing
            kept = False
        if kept:
            cleanup.unregister(self)
        else:
            self._remove()

    def _remove(self) -> None:
        """Remove the run's containers and volumes; close its clients."""
        with cleanup.signals_deferred():
            try:
                if self._agent is not None:
                    self._agent.close()
                for box in (self.container, self._peer_container):
                    if box is not None and box._container is not None:
                        with contextlib.suppress(docker.errors.NotFound):
                            box.get_wrapped_container().remove(force=True, v=True)
                # Whatever create() left even if start() failed half-way:
                for leftover in cleanup.containers_of_run(self._docker, self.id):
                    with contextlib.suppress(docker.errors.NotFound):
                        leftover.remove(force=True, v=True)
                # The run's volumes, once no container uses them.
                for volume in cleanup.volumes_of_run(self._docker, self.id):
                    with contextlib.suppress(docker.errors.NotFound):
                        volume.remove(force=True)
            finally:
                cleanup.unregister(self)
                for client in (self._docker, self._stream):
                    with contextlib.suppress(Exception):
                        client.close()
                for box in (self.container, self._peer_container):
                    if box is not None:
                        with contextlib.suppress(Exception):
                            box.get_docker_client().client.close()


class DockerLab(Lab):
    """Labs in Docker containers built from containers/Dockerfile on ``base``
    (``bookworm``, ``trixie``, or any Debian-family image reference)."""

    def __init__(self, base: str = "bookworm", *, build: bool = True,
                 wrapref_src: str | Path | None = None) -> None:
        #: ``wrapref_src``: copy this wrapref package over the image's in every container
        #: of a run before the server starts (``wraplab selftest``: weakened scratch copies;
        #: the image itself stays the project's).
        self.wrapref_src = Path(wrapref_src) if wrapref_src else None
        self.base = images.resolve_base(base)
        self.base_name = self.base.name
        self.name = f"docker-{self.base_name}"
        self.build = build
        self._users: users.Users | None = None

    @property
    def users(self) -> users.Users:
        if self._users is None:
            self._users = users.load()
        return self._users

    def problem(self) -> str | None:
        try:
            client = _client(10)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:
            return f"Docker is not reachable ({type(exc).__name__}: {exc})"
        return None

    def image(self, log: images.Log = images._quiet) -> images.LabImage:
        """The lab image for this base (built, and the base bootstrapped, when missing)."""
        client = images.docker_client()
        try:
            if not self.build:
                tag = images.expected_lab_tag(client, self.base)
                found = images.image_id(client, tag) if tag else None
                if not found:
                    raise LabUnavailable(f"lab image for {self.base_name} is not built "
                                         "(run `wraplab images`)")
                return images.LabImage(self.base, tag, found, False, False, 0.0)  # type: ignore[arg-type]
            return images.ensure_lab_image(self.base.name if self.base.bootstrappable
                                           else self.base.image, client=client, log=log)
        finally:
            client.close()

    def _new_run(self, spec: ServerSpec) -> DockerRun:
        image = self.image()
        if spec.image:
            with contextlib.closing(_client(60)) as client:
                if not images.image_id(client, spec.image):
                    raise LabUnavailable(
                        f"the image {spec.image} of {spec.name} is not here: build it FROM "
                        f"{image.tag} (see docs/targets.md)")
        with contextlib.closing(_client(60)) as client:
            cleanup.sweep_stale_containers(client)
            cleanup.sweep_stale_volumes(client)
        return DockerRun(self, spec, image)

