"""Targets: the server under test (SPEC.md §5 "Targets").

A target says how to start the server in a lab (command, placement), where its API is for a
transport, and which client the owner runs. The reference server (``wrapref``) with each
profile is the built-in target. Scenarios only talk to a target through this seam, the wire
protocol (SPEC §1) and the events (SPEC §4): an external target (an agentsh build, a
reviewer's own server) will plug in here without touching a scenario.

Which client the owner runs, per profile: ``hardened`` is paired with the hardened client
(``--dial retry``: a blocking connect bounded by SO_SNDTIMEO, retried inside the window,
SPEC H12) that checks who listens at the other end of its sockets (``--server-uid auto``,
docs/hostile-users.md H19); every other profile models agentsh or an older/naive variant of
it, whose CLI dials once (``--dial once``, AGENTSH.md B34, G10) and checks nobody's
SO_PEERCRED (``--server-uid any``).
"""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("hardened", "agentsh", "pre-235", "permissive", "accept-once")
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root", "root-no-chown", "service")
TRANSPORTS = ("unix", "tcp")

#: Loopback TCP port of the API inside a lab (Docker labs have their own network namespace;
#: the local lab may replace it with a free port and reports it as ``run.tcp_api``).
TCP_PORT = 18735

DIAL = {"hardened": "retry"}
#: The client's check of the server's uid (H19) per profile; ``any`` checks nothing.
SERVER_UID = {"hardened": "auto"}


def free_port() -> int:
    """A loopback TCP port free right now (the local lab shares the host's network)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Target:
    """One server under test."""

    name: str
    profile: str
    dial: str = "once"
    server_uid: str = "any"
    description: str = ""

    # -- the server -----------------------------------------------------------------
    #: The target keeps per-session events (SPEC §4) the judge may use as corroboration.
    has_events: bool = True

    def server_spec(self, *, placement: str = "root", socket: str = "notify",
                    transport: str = "unix", lab: str = "docker", **options):
        """The lab's ServerSpec for one cell; ``options`` are the scenario's server options
        (wraplab.engine.axes.SERVER_OPTIONS, where == "server")."""
        from wraplab.labs import Placement, ServerSpec

        return ServerSpec.wrapref(
            self.profile,
            Placement(placement),
            signal_socket=socket == "signal",
            ptrace_mode=socket == "ptrace",
            tcp_port=(TCP_PORT if lab == "docker" else free_port()) if transport == "tcp"
            else None,
            **options,
        )

    # -- where its API is -------------------------------------------------------------
    def api(self, run, transport: str = "unix") -> str:
        """The ``--api`` argument for the owner's client (``unix:PATH`` / ``tcp:H:P``)."""
        if transport == "tcp":
            api = run.tcp_api
            if not api:
                raise RuntimeError("the lab started no TCP API")
            return api if str(api).startswith("tcp:") else f"tcp:{api}"
        api = str(run.api)
        return api if api.startswith("unix:") else f"unix:{api}"

    # -- the owner's client -------------------------------------------------------------
    def client(
        self,
        api: str,
        *,
        legacy: bool = False,
        timeout: float | None = None,
        dial: str | None = None,
    ) -> list[str]:
        argv = ["wrapref", "wrap", "--api", api, "--dial", dial or self.dial,
                "--server-uid", self.server_uid]
        if legacy:
            argv.append("--legacy")
        if timeout:
            argv += ["--timeout", f"{timeout:g}"]
        return argv


def reference(profile: str) -> Target:
    """The built-in target: the reference server ``wrapref`` with ``profile``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    return Target(
        name=f"wrapref:{profile}",
        profile=profile,
        dial=DIAL.get(profile, "once"),
        server_uid=SERVER_UID.get(profile, "any"),
        description=f"reference server, --profile {profile}",
    )


def get(name: str) -> Target:
    """``wrapref:PROFILE`` or a bare profile name."""
    kind, _, profile = name.rpartition(":")
    if kind not in ("", "wrapref"):
        raise ValueError(f"unknown target {name!r}: only the reference server is built in")
    return reference(profile)
