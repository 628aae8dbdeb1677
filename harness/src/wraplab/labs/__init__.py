"""Labs: where the server under test and every actor run as real processes under real uids.

This is the contract the scenario engine codes against::

    from wraplab.labs import DockerLab, LocalLab, ServerSpec, Placement

    spec = reference("agentsh").server_spec(placement="root-no-chown")  # wraplab.targets
    # or: ServerSpec(argv=("my-server", "--api", "{api}"), ready=Readiness("socket"))
    lab = DockerLab(base="bookworm")            # or DockerLab("trixie"), LocalLab()
    with lab.start(spec) as run:                # fresh lab; server up and healthy
        run.lab_name, run.base, run.users       # users[role|name|"root"] -> User(name, uid, ...)
        run.api, run.tcp_api, run.temp_base     # addresses/paths as seen inside the lab
        r = run.exec("owner", ["wrapref", "wrap", "--api", run.api], timeout=60)
        r.exit_code, r.stdout, r.stderr, r.json(), r.timed_out
        h = run.spawn("attacker", argv); h.pid; h.poll(); h.wait(timeout); h.kill()
        run.exec("attacker", argv, caps=("dac_override",))   # the uid, keeping a capability
        run.exec_many([("owner", argv1), ("attacker", argv2)], timeout=60)
        run.stat(path) -> FileFacts(path, exists, kind, uid, gid, mode, acl, ...)
        run.listdir(path) -> [names]
        run.api_request("GET", "/api/v1/sessions/ID/events", body=None, as_user="root")
        run.events(session_id) -> [event, ...]
        run.server_log() -> [log line dicts];  run.server_info() -> {pid, uid, cap_eff, ...}
        run.stop_server("TERM") -> ActorResult;  run.tool("probe", [...], as_user="owner")
        run.transcript; run.format_transcript()
        run.peer.exec(actor, argv); run.peer.spawn(...); run.peer.tool(...)  # peer=True only

Labs start whatever a :class:`ServerSpec` describes and know nothing of any particular
server: a target (:mod:`wraplab.targets`) builds the spec -- its command with placeholders
(``{api}``, ``{api_path}``, ``{temp_base}``, ``{log_file}``, ``{target_dir}``,
``{tcp_port}``, filled in by the lab), the files to install (copied to ``{target_dir}``) or
an image, and its :class:`Readiness` (a Unix socket that accepts, an HTTP path answered 200,
or a command that exits 0, within a deadline; the error quotes the server's last log
lines).

Lab options (:class:`ServerSpec` fields, also ``Target.server_spec(..., userns=, peer=,
peer_shares_pids=, server_userns=)`` and a scenario's ``SERVER = {"peer": True, ...}``):

* ``userns=True``: actors may create user namespaces (``unshare -Ur``). DockerLab starts the
  container with ``security_opt=["seccomp=unconfined"]`` -- the one thing it relaxes, and
  for the whole container -- because Docker's default seccomp profile refuses
  ``unshare``/``clone`` with CLONE_NEWUSER without CAP_SYS_ADMIN (EPERM). LocalLab ignores it.
* ``peer=True`` (DockerLab only; LocalLab raises :class:`LabUnavailable`): a second
  container from the same image (``run.peer``, :class:`~wraplab.labs.docker.DockerPeer`),
  same labels, network mode, capabilities and seccomp setting, whose ``/run/wrapref`` (API)
  and ``/tmp`` (temp base) are the main container's: two per-run tmpfs volumes (local
  driver, labelled like the containers, mounted ``nocopy`` so they belong to the server's
  user) mounted in both. Same user namespace (a numeric uid is the same kernel user in
  both), separate PID and network namespaces (SO_PEERCRED gives the server peer pid 0 for a
  process of the peer; the peer's /proc/net/unix does not list the server's sockets).
  ``run.peer.exec/spawn/tool`` take the same arguments as the run's own; the transcript
  names such actors ``<actor>@peer``. The peer container and the volumes are removed with
  the run, and swept like it.
* ``peer_shares_pids=True`` (with ``peer``): the peer joins the main container's PID
  namespace, so SO_PEERCRED names real pids of peer processes to the server.
* ``server_userns=("owner", ...)``: the server runs as root of its own user namespace
  mapping only root and these roles' uid and gid (each to itself); every other user reaches
  it as the overflow uid 65534 (SO_PEERCRED, stat, /proc). The placement's capabilities
  hold inside it (root-no-chown stays without CAP_CHOWN). Root placements only; DockerLab
  relaxes seccomp as for ``userns``; LocalLab supports it too.

Actors with capabilities: ``run.spawn/exec(actor, argv, caps=("dac_override",))`` starts
the actor as root through ``setpriv --reuid --regid --groups --inh-caps +cap
--ambient-caps +cap``: it runs as its own uid, gid and groups with exactly those
capabilities effective (ambient, so they survive its execve) -- container root that dropped
to the uid but kept the capability. Both labs; the transcript names it ``<actor>+<cap>``.
In DockerLab the container's bounding set still applies (root-no-chown has no CHOWN).

Scratch server copies: ``LocalLab(wrapref_src=DIR)`` / ``DockerLab(base, wrapref_src=DIR)``
run that copy of the ``wrapref`` package (server and owner's client) instead of the
project's: LocalLab copies it into the lab's ``lib/``, DockerLab puts it over the image's
(purelib) in each container before the server starts. ``wraplab selftest`` uses it for
weakened copies; the images stay the project's.

Actors are named by role (``owner``, ``bystander``, ``attacker``, ``service``,
``overflow``), by user
name (``alice``...), ``"root"``, a :class:`~wraplab.users.User`, or a raw uid (int).
Everything a run did is in ``run.transcript`` (who, uid, argv, exit code, output).

Placement (``ServerSpec.placement``):

* ``ROOT``: the server runs as uid 0 with the lab's default capabilities.
* ``ROOT_NO_CHOWN``: uid 0 without CAP_CHOWN (Docker: ``cap_drop=["CHOWN"]`` on the
  container, so root actors lack it too; LocalLab: ``setpriv`` drops it from the server).
* ``SERVICE``: the non-root service user of users.conf (``wrapd``).

The lab owns the server's API socket, temp base and log file: their paths fill the
placeholders of the spec's command. Readiness is a wait object (:class:`ServerReady`, as
the spec's :class:`Readiness` says, with a deadline).

DockerLab: one fresh container per ``start()`` from ``wraplab/lab:<base>-<hash>`` (built on
demand, see :mod:`wraplab.images`), ``network_mode="none"`` (asserted after start),
docker-init as PID 1, actors exec-ed as their user, API at ``unix:/run/wrapref/api.sock``,
temp base ``/tmp``, log ``/var/log/wrapref/server.log``. LocalLab: this host as root, uids
shifted by 200000 (``run.users["owner"].uid == 201001``), everything under a private
``/tmp/wraplab-XXXXXXXX``. Both remove everything at the end of the ``with`` block, on
exceptions and on SIGINT/SIGTERM; leftovers of a killed harness are swept at the next start
and by ``wraplab clean``.

In-lab tools (``python3 -m wraplab.actors.<tool>``, stdlib only): see :mod:`wraplab.actors`.
"""

from wraplab.labs.base import (
    ActorHandle,
    ActorResult,
    FileFacts,
    Lab,
    LabError,
    LabRun,
    LabUnavailable,
    Placement,
    Readiness,
    ServerReady,
    ServerSpec,
    TranscriptEntry,
    format_transcript,
)
from wraplab.labs.docker import DockerLab, DockerRun
from wraplab.labs.local import UID_OFFSET, LocalLab, LocalRun
from wraplab.users import User

LAB_NAMES = ("docker-bookworm", "docker-trixie", "local")


def lab_by_name(name: str) -> Lab:
    """``docker-<base>`` (``docker`` = ``docker-bookworm``) or ``local``."""
    if name == "local":
        return LocalLab()
    if name == "docker":
        return DockerLab("bookworm")
    if name.startswith("docker-"):
        return DockerLab(name.removeprefix("docker-"))
    raise ValueError(f"unknown lab {name!r} (known: {', '.join(LAB_NAMES)})")


__all__ = [
    "LAB_NAMES",
    "UID_OFFSET",
    "ActorHandle",
    "ActorResult",
    "DockerLab",
    "DockerRun",
    "FileFacts",
    "Lab",
    "LabError",
    "LabRun",
    "LabUnavailable",
    "LocalLab",
    "LocalRun",
    "Placement",
    "Readiness",
    "ServerReady",
    "ServerSpec",
    "TranscriptEntry",
    "User",
    "format_transcript",
    "lab_by_name",
]
