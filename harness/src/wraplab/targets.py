"""Targets: the server under test (SPEC.md §5 "Targets"; the file format: docs/targets.md).

A target says everything wraplab needs to attack a server it did not write: how the server
gets into the lab, its start command (with the switches for socket kinds, the TCP API and
the scenarios' server options), how to know it is ready, which client the owner runs, and
what verdicts to expect. Labs start what a target describes and know nothing of any server;
scenarios talk to a target only through this seam and the wire protocol (docs/protocol.md).

Built-in targets: ``wrapref:<profile>``, the reference server with each of its five
profiles, described in the same terms as a target file (:func:`reference`). A target file
(TOML) is read by :mod:`wraplab.target_files`; :func:`get` takes either.

Which client the owner runs, per profile: ``hardened`` is paired with the hardened client
(``--dial retry``: a blocking connect bounded by SO_SNDTIMEO, retried inside the window,
SPEC H12) that checks who listens at the other end of its sockets (``--server-uid auto``,
docs/hostile-users.md H19); every other profile models agentsh or an older/naive variant of
it, whose CLI dials once (``--dial once``, AGENTSH.md B34, G10) and checks nobody's
SO_PEERCRED (``--server-uid any``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wraplab.engine.cells import Cell
    from wraplab.engine.verdicts import Expected

PROFILES = ("hardened", "agentsh", "pre-235", "permissive", "accept-once")
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root", "root-no-chown", "service")
TRANSPORTS = ("unix", "tcp")
#: The scenarios' server options a target passes to its server (``[server.args]``).
OPTIONS = ("accept_window", "handshake_timeout", "backlog")
#: Placeholders of a command line, filled in by the lab (``{value}``: an option's value).
PLACEHOLDERS = ("api", "api_path", "temp_base", "log_file", "target_dir", "tcp_port")

#: Loopback TCP port of the API inside a lab (Docker labs have their own network namespace;
#: the local lab uses a port free at the time).
TCP_PORT = 18735

DIAL = {"hardened": "retry"}
#: The client's check of the server's uid (H19) per profile; ``any`` checks nothing.
SERVER_UID = {"hardened": "auto"}

#: Environment switch: hide the server's events from the judge (every verdict then comes
#: from what the actors saw); ``wraplab run/matrix --no-events`` sets it.
NO_EVENTS_ENV = "WRAPLAB_NO_EVENTS"


class TargetError(ValueError):
    """A target cannot be found, read or prepared; the message says why."""


def free_port() -> int:
    """A loopback TCP port free right now (the local lab shares the host's network)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def events_hidden() -> bool:
    return os.environ.get(NO_EVENTS_ENV, "").lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Override:
    """A per-scenario expectation of a target file, with the reason the report shows."""

    #: A verdict, or keyed like a scenario's EXPECT ("*", "signal", "service/ptrace").
    verdict: str | Mapping[str, str]
    reason: str
    guard: str | None = None

    def for_cell(self, socket: str, placement: str, transport: str) -> str | None:
        """The verdict of a cell: the most specific matching key (None: no key matches)."""
        if isinstance(self.verdict, str):
            return self.verdict
        have = {socket, placement, transport}
        best, n = None, -1
        for key, v in self.verdict.items():
            parts = [] if key == "*" else key.split("/")
            if all(p in have for p in parts) and len(parts) > n:
                best, n = v, len(parts)
        return best


@dataclass(frozen=True)
class Expectations:
    """What a target is expected to do: ``default`` for every cell (``defended``: a
    security suite, where what is vulnerable is the finding), or ``like`` a built-in
    target's expectation set; ``scenarios`` override single scenarios with a reason."""

    default: str = "defended"
    like: str | None = None
    scenarios: Mapping[str, Override] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """One server under test."""

    name: str
    command: tuple[str, ...]
    #: The matrix column and cell-id part: the profile for ``wrapref:<profile>``, else the name.
    label: str = ""
    description: str = ""
    #: ``[server.args]``: argv pieces appended per socket kind, ``tcp`` and option.
    args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    placements: tuple[str, ...] = ("root",)
    sockets: tuple[str, ...] = ("notify",)
    transports: tuple[str, ...] = ("unix",)
    ready_kind: str = "socket"
    ready_value: str | tuple[str, ...] = "{api_path}"
    ready_timeout: float = 30.0
    build: tuple[str, ...] = ()
    copy: tuple[str, ...] = ()  # host paths, absolute
    image: str | None = None
    here: str | None = None  # the target file's directory
    dial: str = "once"
    #: The owner's client's check of who serves the API and listens at the wrap sockets
    #: (``--server-uid``: ``auto``, ``any`` -- agentsh's client checks nobody -- or a uid).
    server_uid: str = "auto"
    #: The target keeps per-session events (docs/protocol.md) the judge may use as
    #: corroboration; without them every verdict comes from what the actors saw.
    has_events: bool = False
    expect: Expectations = field(default_factory=Expectations)
    source: str | None = None  # the target file, None for a built-in one

    @property
    def profile(self) -> str:
        """The column label (kept under its old name: cells and reports say ``profile``)."""
        return self.label or self.name

    # -- what the target can run ------------------------------------------------------
    def not_run(self, scenario, socket: str, placement: str, transport: str,
                lab: str) -> str | None:
        """Why this target cannot run the cell (it lacks what the scenario needs), or None."""
        if socket not in self.sockets:
            return f"{self.name} serves no {socket} socket (server.sockets)"
        if placement not in self.placements:
            return f"{self.name} does not run in the {placement} placement (server.placements)"
        if transport not in self.transports:
            return f"{self.name} has no {transport} API (server.transports)"
        for opt in OPTIONS:
            if scenario.server.get(opt) is not None and opt not in self.args:
                return (f"{self.name} has no {opt} (server.args.{opt}); the scenario sets it "
                        f"to {scenario.server[opt]}")
        if lab == "local" and self.image:
            return f"{self.name} comes as the image {self.image}: the local lab runs no images"
        needs = getattr(scenario, "needs", ())
        if "wrapref" in needs and not self.name.startswith("wrapref:"):
            return "the scenario starts the reference server itself (wrapref only)"
        if "events" in needs and (not self.has_events or events_hidden()):
            why = "hidden (--no-events)" if self.has_events else f"not kept by {self.name}"
            return (f"the scenario decides from the server's events ({why}): "
                    f"{scenario.needs_why or 'nothing outside the server shows it'}")
        return None

    def expectation(self, scenario, socket: str, placement: str,
                    transport: str) -> tuple[Expected, str | None]:
        """The expected verdict (and guard) of a cell, and the reason of an override."""
        from wraplab.engine.verdicts import Expected, Verdict

        o = self.expect.scenarios.get(scenario.slug)
        verdict = o.for_cell(socket, placement, transport) if o is not None else None
        if verdict is not None:
            return Expected(Verdict(verdict), o.guard), o.reason
        if self.expect.like:
            profile = self.expect.like.removeprefix("wrapref:")
            return scenario.expectation(profile, socket, placement, transport), None
        return Expected(Verdict(self.expect.default)), None

    def cells(self, scenario, *, lab: str = "docker", base: str = "bookworm",
              sockets: Iterable[str] | None = None, placements: Iterable[str] | None = None,
              transports: Iterable[str] | None = None) -> list[Cell]:
        """The cells of ``scenario`` against this target (those it cannot run carry
        ``not_run``: the report says why)."""
        from wraplab.engine.cells import Cell

        def pick(mine, wanted):
            return [x for x in mine if wanted is None or x in set(wanted)]

        if lab not in scenario.labs:
            return []
        out = []
        for placement in pick(scenario.placements, placements):
            for transport in pick(scenario.transports, transports):
                for sock in pick(scenario.sockets, sockets):
                    e, why = self.expectation(scenario, sock, placement, transport)
                    out.append(Cell(
                        scenario.slug, self.profile, sock, placement, transport, lab, base,
                        e.verdict, expected_guard=e.guard, expected_race=e.race,
                        multi_placement=len(scenario.placements) > 1,
                        multi_transport=len(scenario.transports) > 1, target=self.name,
                        expect_reason=why,
                        not_run=self.not_run(scenario, sock, placement, transport, lab)))
        return out

    # -- the server -----------------------------------------------------------------
    def server_spec(self, *, placement: str = "root", socket: str = "notify",
                    transport: str = "unix", lab: str = "docker", **options):
        """The lab's ServerSpec for one cell; ``options`` are the scenario's server options
        (wraplab.engine.axes.SERVER_OPTIONS, where == "server"): those of :data:`OPTIONS`
        become ``[server.args]`` pieces, the rest are the lab's own."""
        from wraplab.labs import Placement, Readiness, ServerSpec

        argv = [*self.command, *self.args.get(socket, ())]
        extra: tuple[str, ...] = ()
        if transport == "tcp":
            port = free_port() if lab == "local" else TCP_PORT
            argv += [a.replace("{tcp_port}", str(port)) for a in self.args["tcp"]]
            extra = (f"tcp:127.0.0.1:{port}",)
        for opt in OPTIONS:
            value = options.pop(opt, None)
            if value is not None:
                text = f"{value:g}" if isinstance(value, float) else str(value)
                argv += [a.replace("{value}", text) for a in self.args[opt]]
        value = self.ready_value
        return ServerSpec(
            argv=tuple(argv), placement=Placement(placement), extra_apis=extra,
            ready=Readiness(self.ready_kind, tuple(value) if isinstance(value, (list, tuple))
                            else value, self.ready_timeout),
            install=tuple((p, Path(p).name) for p in self.copy), image=self.image,
            name=self.name, **options)

    def prepare(self) -> None:
        """Run ``[install] build`` once per process (before any cell), and check that
        what ``copy`` names exists; :class:`TargetError` says what failed."""
        key = (self.source, self.build, self.copy)
        with _PREPARED_LOCK:
            if key in _PREPARED:
                return
            if self.build:
                try:
                    done = subprocess.run(list(self.build), cwd=self.here, capture_output=True,
                                          text=True, timeout=600)
                except (OSError, subprocess.SubprocessError) as exc:
                    raise TargetError(f"{self.name}: install.build failed to run: {exc}") from None
                if done.returncode != 0:
                    tail = "\n  ".join((done.stdout + done.stderr).strip().splitlines()[-20:])
                    raise TargetError(f"{self.name}: install.build exited {done.returncode}:"
                                      f"\n  {tail}")
            missing = [p for p in self.copy if not Path(p).exists()]
            if missing:
                raise TargetError(f"{self.name}: install.copy names what does not exist: "
                                  f"{', '.join(missing)}")
            _PREPARED.add(key)

    def without_events(self) -> Target:
        """The same target with its events hidden from the judge."""
        return dataclasses.replace(self, has_events=False)

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

    def describe(self) -> dict[str, Any]:
        """The target as the reports name it."""
        return {"name": self.name, "label": self.profile, "description": self.description,
                "source": self.source, "events": self.has_events}


_PREPARED: set = set()
_PREPARED_LOCK = threading.Lock()


def reference_data(profile: str) -> dict:
    """The built-in target ``wrapref:<profile>`` as the data of a target file."""
    return {
        "version": 1,
        "name": f"wrapref:{profile}",
        "description": f"reference server, --profile {profile}",
        "events": True,
        "server": {
            "command": ["wrapref", "serve", "--profile", profile, "--api", "{api}",
                        "--temp-base", "{temp_base}", "--log-file", "{log_file}"],
            "placements": list(PLACEMENTS), "sockets": list(SOCKETS),
            "transports": list(TRANSPORTS),
            "args": {"notify": [], "signal": ["--signal-socket"], "ptrace": ["--ptrace-mode"],
                     "tcp": ["--api", "tcp:127.0.0.1:{tcp_port}"],
                     "accept_window": ["--accept-window", "{value}"],
                     "handshake_timeout": ["--handshake-timeout", "{value}"],
                     "backlog": ["--backlog", "{value}"]},
            "ready": {"http": "/healthz", "timeout": 30},
        },
        "client": {"use": "wrapref", "dial": DIAL.get(profile, "once"),
                   "server_uid": SERVER_UID.get(profile, "any")},
        "expect": {"like": f"wrapref:{profile}"},
    }


@functools.cache
def reference(profile: str) -> Target:
    """The built-in target: the reference server ``wrapref`` with ``profile``."""
    if profile not in PROFILES:
        raise TargetError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
    from wraplab.target_files import from_data

    return dataclasses.replace(from_data(reference_data(profile), builtin=True), label=profile)


def wrapref_spec(profile: str = "agentsh", placement: Any = "root", *,
                 socket: str = "notify", transport: str = "unix", lab: str = "docker",
                 **options):
    """The lab's ServerSpec of ``wrapref:<profile>`` (for tests of the labs themselves):
    ``placement`` a name or a :class:`~wraplab.labs.Placement`, ``options`` the scenario
    options (accept_window..., userns, peer...)."""
    return reference(profile).server_spec(placement=getattr(placement, "value", placement),
                                          socket=socket, transport=transport,
                                          lab="local" if lab == "local" else "docker",
                                          **options)


def builtin_names() -> list[str]:
    return [f"wrapref:{p}" for p in PROFILES]


_LOADED: dict[str, Target] = {}


def register(target: Target) -> Target:
    """Make a target loaded from a file findable by its name (``get``, the runner)."""
    _LOADED[target.name] = target
    return target


def get(name: str) -> Target:
    """``wrapref:PROFILE``, a bare profile name, a target file (path), or the name of a
    target file loaded before."""
    if name in _LOADED:
        return _LOADED[name]
    kind, _, profile = name.rpartition(":")
    if kind == "wrapref" or (not kind and name in PROFILES):
        return reference(profile)
    if name.endswith(".toml") or os.sep in name or Path(name).is_file():
        from wraplab.target_files import load

        return register(load(name))
    raise TargetError(f"unknown target {name!r}: a target file (.toml) or one of "
                      f"{', '.join(builtin_names())}")
