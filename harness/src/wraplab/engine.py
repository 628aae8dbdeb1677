"""The scenario engine: scenarios as data plus steps, run against a target in a lab, judged
into a verdict with its evidence.

A scenario is one file under ``wraplab/scenarios/`` (the slug is the file name). It has a
module docstring telling the attack, and declares::

    SLUG = "wrong-uid"                       # must equal the file stem
    ACTORS = {"owner": "owner", "intruder": "attacker"}   # scenario role -> users.conf role
    SOCKETS = ("notify", "signal", "ptrace")
    PLACEMENTS = ("root",)                   # root | root-no-chown | service
    TRANSPORTS = ("unix",)                   # unix | tcp
    EXPECT = {"hardened": DEFENDED, "agentsh": {"*": DEFENDED, "tcp": VULNERABLE}, ...}
    SERVER = {"accept_window": 6}            # optional server and lab options (userns,
                                             # peer: see wraplab.labs.ServerSpec)
    def run(ctx): ...                        # steps; returns ctx.judge(...) or ctx.<verdict>(...)

``EXPECT`` names every profile. A value is a verdict, or a mapping from a variant key to a
verdict: ``"*"``, or placement/transport/socket names joined by ``/`` (``"tcp"``,
``"service/ptrace"``); the most specific matching key wins.

Verdicts: ``defended``, ``vulnerable`` (the attack worked, a denial of service by the
attacker included), ``broken`` (the legitimate user failed without the attacker causing it),
``error`` (the harness could not decide; always a failure).
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import json
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from wraplab import targets as targets_mod
from wraplab.targets import PLACEMENTS, PROFILES, SOCKETS, TRANSPORTS

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
LABS = ("docker", "local")
BASES = ("bookworm", "trixie")
USER_ROLES = ("owner", "bystander", "attacker", "service", "overflow", "root")
#: The events that end an accept loop: exactly one per loop (docs/design.md §1).
LOOP_ENDS = ("handoff_ok", "handoff_failed", "window_expired")
#: What a scenario's SERVER may set (server and lab options, see wraplab.labs.ServerSpec).
SERVER_OPTIONS = ("accept_window", "handshake_timeout", "backlog", "userns", "peer",
                  "peer_shares_pids", "server_userns")

__all__ = [
    "Verdict", "DEFENDED", "VULNERABLE", "BROKEN", "ERROR", "Scenario", "ScenarioError",
    "Cell", "Outcome", "Step", "Context", "load_scenario", "discover", "get_scenario",
    "make_cells", "run_cell", "combine", "rejections_of", "claim_foreign_pid",
]


class Verdict(str, enum.Enum):
    DEFENDED = "defended"
    VULNERABLE = "vulnerable"
    BROKEN = "broken"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


DEFENDED, VULNERABLE, BROKEN, ERROR = (Verdict.DEFENDED, Verdict.VULNERABLE, Verdict.BROKEN,
                                       Verdict.ERROR)


class ScenarioError(Exception):
    """A scenario file cannot be loaded (no docstring, slug != file name, bad data...)."""


# --------------------------------------------------------------------------------------
# Scenarios as data
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    slug: str
    path: Path
    doc: str
    actors: Mapping[str, str]
    sockets: tuple[str, ...]
    placements: tuple[str, ...]
    transports: tuple[str, ...]
    expect: Mapping[str, Any]
    run: Callable[[Context], Judgement]
    server: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100
    exclusive: bool = False  # runs alone (a flood needs the machine's cores to itself)
    labs: tuple[str, ...] = LABS  # where it can run; LAB_NOTES say why not elsewhere
    lab_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return self.doc.strip().splitlines()[0].strip()

    def expected(self, profile: str, socket: str = "notify", placement: str = "root",
                 transport: str = "unix") -> Verdict:
        value = self.expect[profile]
        if isinstance(value, Verdict):
            return value
        have = {socket, placement, transport}
        best, best_n, tie = None, -1, None
        for key, verdict in value.items():
            parts = [] if key == "*" else key.split("/")
            if not all(p in have for p in parts):
                continue
            if len(parts) > best_n:
                best, best_n, tie = verdict, len(parts), None
            elif len(parts) == best_n and verdict != best:
                tie = key
        if tie is not None:
            raise ScenarioError(f"{self.slug}: EXPECT[{profile!r}] is ambiguous for {socket} "
                                f"{placement} {transport} (key {tie!r} ties another key)")
        if best is None:
            raise ScenarioError(
                f"{self.slug}: no expectation for {profile} {socket} {placement} {transport}")
        return best

    def cells(self, *, profiles: Iterable[str] | None = None,
              sockets: Iterable[str] | None = None, placements: Iterable[str] | None = None,
              transports: Iterable[str] | None = None, lab: str = "docker",
              base: str = "bookworm") -> list[Cell]:
        def pick(mine, wanted):
            return [x for x in mine if wanted is None or x in set(wanted)]

        if lab not in self.labs:
            return []  # LAB_NOTES[lab] says why (wraplab list shows it)
        return [
            Cell(self.slug, profile, sock, placement, transport, lab, base,
                 self.expected(profile, sock, placement, transport),
                 multi_placement=len(self.placements) > 1,
                 multi_transport=len(self.transports) > 1)
            for profile in pick(PROFILES, profiles)
            for placement in pick(self.placements, placements)
            for transport in pick(self.transports, transports)
            for sock in pick(self.sockets, sockets)
        ]


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _tuple_of(name: str, value, allowed: tuple[str, ...], path: Path) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ScenarioError(f"{path}: {name} must be a tuple of strings")
    value = tuple(value)
    bad = [v for v in value if v not in allowed]
    if bad or not value:
        raise ScenarioError(f"{path}: {name} {value!r}: each must be one of {allowed}")
    return value


def load_scenario(path: str | Path) -> Scenario:
    """Load one scenario file by path and check it; raise :class:`ScenarioError`."""
    path = Path(path)
    stem = path.stem
    if not _SLUG.match(stem):
        raise ScenarioError(f"{path}: file name {stem!r} is not a slug (lowercase, digits, -)")
    modname = "wraplab.scenarios._" + stem.replace("-", "_")
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ScenarioError(f"{path}: import failed: {exc!r}") from exc
    doc = inspect.getdoc(module)
    if not doc or not doc.strip():
        raise ScenarioError(f"{path}: a scenario needs a docstring telling the attack")
    slug = getattr(module, "SLUG", None)
    if slug != stem:
        raise ScenarioError(f"{path}: SLUG = {slug!r} differs from the file name {stem!r}")
    actors = getattr(module, "ACTORS", None)
    if not isinstance(actors, Mapping) or "owner" not in actors:
        raise ScenarioError(f"{path}: ACTORS must map scenario roles to users.conf roles, "
                            "with an 'owner'")
    for role, user_role in actors.items():
        if user_role not in USER_ROLES:
            raise ScenarioError(f"{path}: actor {role!r} -> {user_role!r}: not a users.conf role")
    sockets = _tuple_of("SOCKETS", getattr(module, "SOCKETS", SOCKETS), SOCKETS, path)
    placements = _tuple_of("PLACEMENTS", getattr(module, "PLACEMENTS", ("root",)),
                           PLACEMENTS, path)
    transports = _tuple_of("TRANSPORTS", getattr(module, "TRANSPORTS", ("unix",)),
                           TRANSPORTS, path)
    expect = getattr(module, "EXPECT", None)
    if not isinstance(expect, Mapping):
        raise ScenarioError(f"{path}: EXPECT must map every profile to a verdict")
    missing = [p for p in PROFILES if p not in expect]
    if missing:
        raise ScenarioError(f"{path}: EXPECT has no verdict for {', '.join(missing)}")
    for profile, value in expect.items():
        if profile not in PROFILES:
            raise ScenarioError(f"{path}: EXPECT names unknown profile {profile!r}")
        verdicts = [value] if isinstance(value, Verdict) else (
            list(value.values()) if isinstance(value, Mapping) else [value])
        for v in verdicts:
            if not isinstance(v, Verdict) or v is ERROR:
                raise ScenarioError(
                    f"{path}: EXPECT[{profile!r}] = {v!r}: expect defended, vulnerable or broken")
    run = getattr(module, "run", None)
    if not callable(run):
        raise ScenarioError(f"{path}: a scenario needs run(ctx)")
    labs = _tuple_of("LABS", getattr(module, "LABS", LABS), LABS, path)
    lab_notes = getattr(module, "LAB_NOTES", {})
    if not labs or not isinstance(lab_notes, Mapping) or any(
            not isinstance(lab_notes.get(lab), str) or not lab_notes[lab].strip()
            for lab in LABS if lab not in labs):
        raise ScenarioError(f"{path}: LABS must name at least one lab, and LAB_NOTES must say "
                            "why the scenario cannot run in each lab it leaves out")
    scenario = Scenario(
        slug=slug, path=path, doc=doc, actors=dict(actors), sockets=sockets,
        placements=placements, transports=transports, expect=dict(expect), run=run,
        server=_server_options(getattr(module, "SERVER", {}), path),
        order=int(getattr(module, "ORDER", 100)),
        exclusive=bool(getattr(module, "EXCLUSIVE", False)), labs=labs,
        lab_notes={k: v for k, v in lab_notes.items() if k not in labs},
    )
    scenario.cells(lab=labs[0])  # every cell must have an expectation (raises otherwise)
    return scenario


def _server_options(server, path: Path) -> dict:
    if not isinstance(server, Mapping):
        raise ScenarioError(f"{path}: SERVER must be a dict of server and lab options")
    unknown = sorted(set(server) - set(SERVER_OPTIONS))
    if unknown:
        raise ScenarioError(f"{path}: SERVER has unknown option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(SERVER_OPTIONS)})")
    return dict(server)


def discover(directory: str | Path | None = None) -> list[Scenario]:
    """Every scenario under ``directory`` (default: the built-in ones), in ORDER."""
    directory = Path(directory) if directory else SCENARIO_DIR
    found = [load_scenario(p) for p in sorted(directory.glob("*.py"))
             if not p.name.startswith("_")]
    return sorted(found, key=lambda s: (s.order, s.slug))


def get_scenario(slug: str, directory: str | Path | None = None) -> Scenario:
    directory = Path(directory) if directory else SCENARIO_DIR
    path = directory / f"{slug}.py"
    if not path.is_file():
        known = ", ".join(s.slug for s in discover(directory))
        raise ScenarioError(f"no scenario {slug!r} (known: {known})")
    return load_scenario(path)


# --------------------------------------------------------------------------------------
# Cells and outcomes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One run: a scenario against one profile, socket kind, placement, transport, lab."""

    scenario: str
    profile: str
    socket: str
    placement: str
    transport: str
    lab: str
    base: str
    expected: Verdict
    multi_placement: bool = False
    multi_transport: bool = False

    @property
    def variant(self) -> str:
        """``profile-socket[-placement][-transport]``: the matrix column detail."""
        parts = [self.profile, self.socket]
        if self.multi_placement or self.placement != "root":
            parts.append(self.placement)
        if self.multi_transport or self.transport != "unix":
            parts.append(self.transport)
        return "-".join(parts)

    @property
    def id(self) -> str:
        return f"{self.variant}-{self.lab}"

    @property
    def name(self) -> str:
        return f"{self.scenario}[{self.id}]"

    def to_dict(self) -> dict:
        return {"scenario": self.scenario, "profile": self.profile, "socket": self.socket,
                "placement": self.placement, "transport": self.transport, "lab": self.lab,
                "base": self.base, "expected": str(self.expected), "id": self.name}


def make_cells(scenarios: Iterable[Scenario], *, lab: str = "docker", base: str = "bookworm",
               profiles=None, sockets=None, placements=None, transports=None) -> list[Cell]:
    out: list[Cell] = []
    for s in scenarios:
        out.extend(s.cells(profiles=profiles, sockets=sockets, placements=placements,
                           transports=transports, lab=lab, base=base))
    return out


@dataclass
class Step:
    """One line of the transcript."""

    t: float
    actor: str  # scenario role, "server" or "harness"
    user: str
    uid: int | None
    action: str
    result: str = ""
    errno: str | None = None
    ms: float | None = None
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Judgement:
    verdict: Verdict
    reason: str
    guard: str | None = None  # what stopped the attack: kernel (mode/ACL), peer-check...


@dataclass
class Outcome:
    cell: Cell
    verdict: Verdict
    reason: str
    guard: str | None = None
    steps: list[Step] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    server: dict = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is not ERROR and self.verdict == self.cell.expected

    def to_dict(self) -> dict:
        return {
            "cell": self.cell.to_dict(), "verdict": str(self.verdict),
            "expected": str(self.cell.expected), "ok": self.ok, "reason": self.reason,
            "guard": self.guard, "metrics": self.metrics, "timings": self.timings,
            "steps": [s.to_dict() for s in self.steps], "files": self.files,
            "events": self.events, "log": self.log, "server": self.server,
            "error": self.error,
        }


def _plain(obj) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------
# Results of actor steps
# --------------------------------------------------------------------------------------


def _json_of(result) -> dict | None:
    try:
        return result.json()
    except Exception:
        text = (getattr(result, "stdout", "") or "").strip().splitlines()
        for line in reversed(text):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


@dataclass
class Wrap:
    """The owner's client run (design.md §2 output)."""

    actor: Actor
    started: float
    connect_delay: float
    exit_code: int | None
    data: dict
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.data.get("ok")) and self.exit_code == 0

    @property
    def session(self) -> str | None:
        return self.data.get("session")

    @property
    def token(self) -> str | None:
        return self.data.get("token")

    @property
    def step(self) -> str | None:
        return self.data.get("step")

    @property
    def errno(self) -> str | None:
        return self.data.get("errno")

    @property
    def paths(self) -> dict:
        return {k: v for k, v in (self.data.get("paths") or {}).items() if v}

    @property
    def latency_ms(self) -> float | None:
        return self.data.get("latency_ms")

    @property
    def dials_after(self) -> float:
        """The earliest moment the client can have dialled (it sleeps after wrap-init)."""
        return self.started + self.connect_delay

    def failure(self) -> str:
        why = self.errno or self.data.get("error") or f"exit {self.exit_code}"
        if self.data.get("http_status") and self.step in ("session", "wrap-init"):
            why = f"HTTP {self.data['http_status']}: {why}"
        return f"failed at {self.step or '?'} ({why})"


@dataclass
class Intrusion:
    actor: Actor
    data: dict

    @property
    def uid(self) -> int | None:
        return self.data.get("uid", self.actor.uid)

    @property
    def path(self) -> str | None:
        return self.data.get("path")

    @property
    def token(self) -> str | None:
        return self.data.get("token")

    @property
    def steps(self) -> list[dict]:
        return self.data.get("steps", [])

    @property
    def attempts(self) -> list[dict]:
        return [s for s in self.steps if s.get("action") in ("connect", "handoff")]

    @property
    def finished(self) -> float:
        ends = [s["t"] + (s.get("ms") or 0) / 1000 for s in self.steps if "t" in s]
        return max(ends) if ends else 0.0

    @property
    def reached_server(self) -> bool:
        """An attempt got a connection (the server accepted it, then maybe closed it on
        the attacker: EPIPE/ECONNRESET on send count as reached)."""
        return any(s.get("errno") is None or s.get("connected") for s in self.attempts)

    @property
    def kernel_refused(self) -> bool:
        return bool(self.attempts) and all(
            s.get("errno") in ("EACCES", "EPERM") for s in self.attempts)

    @property
    def accepted(self) -> bool:
        return any(s.get("accepted") for s in self.attempts)

    def refusals(self) -> str:
        return ", ".join(f"{s['action']}: {s.get('result') or s.get('errno')}"
                         for s in self.attempts) or "no attempt"


@dataclass
class Flood:
    actor: Actor
    data: dict

    @property
    def uid(self) -> int | None:
        return self.data.get("uid", self.actor.uid)

    @property
    def attempts(self) -> int:
        return int(self.data.get("attempts") or 0)

    @property
    def outcomes(self) -> dict:
        return self.data.get("outcomes") or {}

    @property
    def rate(self) -> float:
        return float(self.data.get("rate") or 0)

    @property
    def reached_server(self) -> bool:
        return bool(self.outcomes.get("ok") or self.outcomes.get("EAGAIN"))

    @property
    def kernel_refused(self) -> bool:
        return self.attempts > 0 and set(self.outcomes) <= {"EACCES", "EPERM"}

    @property
    def accepted(self) -> bool:
        return False

    def summary(self) -> str:
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items(),
                                                          key=lambda kv: -kv[1]))
        return f"{self.attempts} connects in {self.data.get('seconds', '?')} s " \
               f"({self.rate:,.0f}/s): {outs or 'none'}"


# --------------------------------------------------------------------------------------
# Actors and the scenario context
# --------------------------------------------------------------------------------------


class Pending:
    """A step running in the background (an owner's slow wrap, a flood)."""

    def __init__(self, handle, finish: Callable[[Any], Any]):
        self._handle = handle
        self._finish = finish
        self._value = None
        self._done = False

    def result(self, timeout: float = 60.0):
        if not self._done:
            self._value = self._finish(self._handle.wait(timeout))
            self._done = True
        return self._value

    def stop(self, timeout: float = 30.0):
        """Ask the step to end now (SIGTERM: it still reports) and return its result."""
        if not self._done:
            try:
                self._handle.signal("TERM")
            except Exception:
                pass
        return self.result(timeout)

    def kill(self) -> None:
        try:
            self._handle.kill()
        except Exception:
            pass


class Actor:
    """A scenario role played by a real user of the lab (users.conf)."""

    def __init__(self, ctx: Context, role: str, user_role: str):
        self.ctx = ctx
        self.role = role
        self.user_role = user_role
        self.user = ctx.run.users[user_role]

    @property
    def uid(self) -> int:
        return self.user.uid

    @property
    def name(self) -> str:
        return self.user.name

    def __repr__(self) -> str:
        return f"<{self.role} {self.name} uid {self.uid}>"

    def _tool(self, module: str, *args: str) -> list[str]:
        return ["python3", "-m", f"wraplab.actors.{module}", *args]

    # -- the owner's client ----------------------------------------------------------
    def _wrap_argv(self, legacy: bool, connect_delay: float, dial: str | None) -> list[str]:
        # The client's whole-run deadline: its delay plus a budget for the handoffs (a
        # retrying client gives up on a vanished socket at the deadline, not before).
        ctx = self.ctx
        return ctx.target.client(ctx.api, legacy=legacy, connect_delay=connect_delay,
                                 timeout=connect_delay + ctx.client_timeout, dial=dial)

    def _wrap_done(self, res, started: float, delay: float, argv: list[str]) -> Wrap:
        data = _json_of(res) or {}
        w = Wrap(self, started, delay, res.exit_code, data, stderr=res.stderr or "")
        shown, skip = [], False
        for a in argv[2:]:
            if skip or a == "--api":
                skip = a == "--api"
                continue
            shown.append(a)
        how = " ".join(shown)
        if w.ok:
            kinds = "+".join(w.paths) or "handoff"
            result = f"ok: {kinds} handed over, token {w.token}"
        elif not data:
            result = f"no JSON from the client (exit {res.exit_code}): " \
                     f"{(res.stderr or '').strip()[-200:]}"
        else:
            result = w.failure()
        self.ctx.step(self, f"wraps via {self.ctx.api} ({how})", result, errno=w.errno,
                      t=started, ms=w.latency_ms if w.latency_ms is not None
                      else res.duration * 1000,
                      detail={"exit_code": res.exit_code, "client": data})
        return w

    def wraps(self, *, legacy: bool = False, dial: str | None = None,
              connect_delay: float = 0.0) -> Wrap:
        """Run the target's client to the end: session, wrap-init, every handoff
        (``connect_delay``: it waits that long between wrap-init and its first dial)."""
        argv = self._wrap_argv(legacy, connect_delay, dial)
        started = time.time()
        res = self.ctx.run.exec(self.user_role, argv,
                                timeout=connect_delay + self.ctx.client_timeout + 60)
        return self._wrap_done(res, started, connect_delay, argv)

    def _where(self, peer: bool):
        """The lab run, or its peer container (``ServerSpec(peer=True)``, DockerLab)."""
        if not peer:
            return self.ctx.run
        where = getattr(self.ctx.run, "peer", None)
        if where is None:
            raise HarnessError(f"the {self.ctx.cell.lab} lab started no peer container "
                               "(SERVER = {'peer': True})")
        return where

    def starts_wrap(self, *, connect_delay: float, legacy: bool = False,
                    dial: str | None = None, peer: bool = False) -> Pending:
        """Start the client in the background; it does wrap-init, then waits
        ``connect_delay`` seconds before dialling (a slow owner: the window attackers use).
        ``peer``: in the lab's peer container."""
        argv = self._wrap_argv(legacy, connect_delay, dial)
        started = time.time()
        handle = self._where(peer).spawn(self.user_role, argv)
        self.ctx._pending.append(handle)
        return Pending(handle, lambda res: self._wrap_done(res, started, connect_delay, argv))

    # -- attacks ----------------------------------------------------------------------
    def attacks_socket(self, kind: str, *, steps: str = "handoff,connect",
                       wait: float = 8.0, path: str | None = None,
                       peer: bool = False) -> Intrusion:
        """Find the ``kind`` socket the way a local user can, then try it (``path``: try
        that socket, no search; ``peer``: from the lab's peer container)."""
        where = ["--path", path] if path else ["--base", self.ctx.run.temp_base,
                                                "--wait", f"{wait:g}"]
        argv = self._tool("intrude", "--kind", kind, *where, "--do", steps)
        res = self._where(peer).exec(self.user_role, argv, timeout=wait + 30)
        data = _json_of(res)
        if not data:
            raise HarnessError(f"intrude printed no JSON (exit {res.exit_code}): "
                               f"{(res.stderr or '').strip()[-400:]}")
        intr = Intrusion(self, data)
        for s in intr.steps:
            if s["action"] == "find":
                via = " and ".join(s.get("via") or []) or "-"
                listing = f"; listing the temp base: {s['listing_errno']}" \
                    if s.get("listing_errno") else ""
                self.ctx.step(self, f"looks for a {kind} socket under {self.ctx.run.temp_base}",
                              f"{s['path']} (via {via}{listing})" if s.get("path")
                              else "nothing found", errno=s.get("errno"), t=s["t"],
                              ms=s.get("ms"), detail=s)
            elif s["action"] == "handoff":
                what = "its own pid" if kind == "ptrace" else f"its own token {intr.token}"
                self.ctx.step(self, f"hands off {what} to {s['path']}", s.get("result", ""),
                              errno=s.get("errno"), t=s["t"], ms=s.get("ms"), detail=s)
            else:
                self.ctx.step(self, f"connects to {s['path']}", s.get("result", ""),
                              errno=s.get("errno"), t=s["t"], ms=s.get("ms"), detail=s)
        return intr

    def starts_flood(self, kind: str, *, seconds: float, procs: int = 1,
                     wait: float = 8.0, follow: bool = False, waiters: int = 0) -> Pending:
        """Find the ``kind`` socket, then connect/close as fast as possible for ``seconds``
        (or until stopped); ``follow``: move on to each new socket of the kind."""
        argv = self._tool("flood", "--kind", kind, "--base", self.ctx.run.temp_base,
                          "--wait", f"{wait:g}", "--seconds", f"{seconds:g}",
                          "--procs", str(procs), "--waiters", str(waiters),
                          *(["--follow"] if follow else []))
        handle = self.ctx.run.spawn(self.user_role, argv)
        self.ctx._pending.append(handle)

        def done(res) -> Flood:
            data = _json_of(res)
            if not data:
                raise HarnessError(f"flood printed no JSON (exit {res.exit_code}): "
                                   f"{(res.stderr or '').strip()[-400:]}")
            fl = Flood(self, data)
            f = data.get("find") or {}
            if f:
                self.ctx.step(self, f"looks for a {kind} socket",
                              f"{f.get('path')} (via {' and '.join(f.get('via') or [])})"
                              if f.get("path") else "nothing found",
                              t=f.get("t", 0), ms=f.get("ms"))
            n = len(data.get("paths") or [1])
            where = data.get("path") if n <= 1 else f"{n} sockets in turn ({data.get('path')}...)"
            self.ctx.step(self, f"floods {where} with connect+close "
                          f"({procs} process{'es' if procs > 1 else ''})", fl.summary(),
                          t=data.get("t0", 0), ms=(data.get("seconds") or 0) * 1000,
                          detail={k: v for k, v in data.items() if k != "find"})
            return fl

        return Pending(handle, done)


class HarnessError(RuntimeError):
    """The harness could not do a step: the verdict is ``error``."""


class Context:
    """What a scenario's ``run(ctx)`` works with: the actors by role, the cell, the lab run,
    the target, and the verdict helpers. Every actor step lands in the transcript."""

    def __init__(self, scenario: Scenario, cell: Cell, run, target: targets_mod.Target):
        self.scenario = scenario
        self.cell = cell
        self.run = run
        self.target = target
        self.profile = cell.profile
        self.socket = cell.socket
        self.placement = cell.placement
        self.transport = cell.transport
        self.steps: list[Step] = []
        self.files: list[dict] = []
        self.metrics: dict = {}
        self.client_timeout = float(scenario.server.get("client_budget", 4.0))
        self._lock = threading.Lock()
        self._pending: list = []
        self._sessions: list[str] = []
        self.api = target.api(run, cell.transport)
        self.actors = {role: Actor(self, role, user_role)
                       for role, user_role in scenario.actors.items()}

    def __getattr__(self, name: str) -> Actor:
        actors = self.__dict__.get("actors", {})
        if name in actors:
            return actors[name]
        raise AttributeError(f"scenario has no actor or attribute {name!r} "
                             f"(actors: {', '.join(actors)})")

    # -- transcript ---------------------------------------------------------------------
    def step(self, actor: Actor | str, action: str, result: str = "", *, errno=None,
             t: float | None = None, ms: float | None = None, detail: dict | None = None):
        if isinstance(actor, Actor):
            who, user, uid = actor.role, actor.name, actor.uid
        else:
            who, user, uid = actor, "root" if actor == "harness" else actor, None
        with self._lock:
            self.steps.append(Step(t or time.time(), who, user, uid, action, result, errno,
                                   None if ms is None else round(ms, 2), detail or {}))

    def note(self, text: str, **detail) -> None:
        self.step("harness", text, detail=detail)

    # -- observation (the harness as root: evidence, never an actor's capability) -------
    def facts(self, path: str, label: str | None = None) -> dict:
        f = self.run.stat(path)
        d = _plain(f)
        if label:
            d["label"] = label
        self.files.append(d)
        return d

    def waits_for_socket(self, kind: str, timeout: float = 5.0) -> str | None:
        """Wait (as the observing harness, root) until a ``kind`` socket exists under the
        temp base, and record the files' facts (directory and sockets) while they exist."""
        t0 = time.time()
        found = self.run.tool("find_sockets", ["--base", self.run.temp_base, "--kind", kind,
                                               "--wait", f"{timeout:g}"],
                              as_user="root", timeout=timeout + 30)
        path = found.get("path")
        if not path:
            self.step("harness", f"waits for a {kind} socket", "none appeared", t=t0,
                      ms=(time.time() - t0) * 1000)
            return None
        self.step("harness", f"sees the {kind} socket appear", path, t=t0,
                  ms=found.get("waited_ms"))
        d = path.rsplit("/", 1)[0]
        socks = sorted(f["path"] for f in found.get("found", [])
                       if f["path"].startswith(d + "/"))
        for f in self.run.stat_many([d, *socks]):
            fd = _plain(f)
            fd["label"] = "wrap directory" if f.path == d else \
                f"{f.path.rsplit('/', 1)[-1].split('-', 1)[0]} socket"
            self.files.append(fd)
        return path

    def files_not_as_claimed(self, wrap: Wrap) -> list[str]:
        """Compare the recorded file facts with the server's ``wrap_init`` event (its
        ``fs_isolation`` and ``modes``); return what differs (empty: as claimed)."""
        init = next((e for e in self.events(wrap.session) if e.get("type") == "wrap_init"),
                    None)
        if not init or not self.files:
            return []
        wrong = []
        modes = {p: int(str(m), 8) for p, m in (init.get("modes") or {}).items()}
        iso = init.get("fs_isolation")
        uid = self.owner.uid
        for f in self.files:
            if not f.get("exists"):
                continue
            path, mode = f["path"], f.get("mode")
            if path in modes and mode is not None and mode != modes[path]:
                wrong.append(f"{path} is {mode:04o}, the server says {modes[path]:04o}")
            is_dir = f.get("kind") == "dir"
            if iso == "chown" and f.get("uid") != uid:
                wrong.append(f"{path} is owned by uid {f.get('uid')}, not the caller {uid}")
            elif iso == "acl" and not any(f":{uid}:" in e for e in (f.get("acl") or [])):
                wrong.append(f"{path} has no ACL entry for uid {uid}: {f.get('acl')}")
            elif iso == "none" and mode is not None and mode != (0o711 if is_dir else 0o666):
                wrong.append(f"{path} is {mode:04o}, fallback means 0711/0666")
        return wrong

    def events(self, session: str | None) -> list[dict]:
        """The session's event list (SPEC §4), read through the API as the observer."""
        if not session:
            return []
        if session not in self._sessions:
            self._sessions.append(session)
        status, body = self.run.api_request("GET", f"/api/v1/sessions/{session}/events")
        if status != 200 or not isinstance(body, Mapping):
            raise HarnessError(f"events of {session}: HTTP {status} {body!r}")
        return list(body.get("events") or [])

    def waits_until(self, what: str, check: Callable[[], Any], deadline: float,
                    pause: float = 0.2) -> Any:
        """Poll ``check()`` (each poll is a lab round trip) until it is truthy or the epoch
        time ``deadline`` passes; records the wait as a step; returns the last value."""
        t0 = time.time()
        while True:
            value = check()
            if value or time.time() >= deadline:
                self.step("harness", f"waits until {what}", "yes" if value else
                          "deadline passed", t=t0, ms=(time.time() - t0) * 1000)
                return value
            time.sleep(pause)  # between lab round trips, never instead of the condition

    def waits_for_wrap_end(self, wrap: Wrap, timeout: float) -> bool:
        """Until the wrap's loops have ended and its directory is gone (server events), so a
        later wrap's socket is the only one to be found; True at once if wrap-init failed."""
        def ended() -> bool:
            ev = self.events(wrap.session)
            return not any(e.get("type") == "wrap_init" for e in ev) or (
                any(e.get("type") in LOOP_ENDS for e in ev)
                and any(e.get("type") == "dir_removed" for e in ev))
        return bool(self.waits_until("the wrap's loops ended and its directory is gone",
                                     ended, time.time() + timeout))

    # -- verdicts -----------------------------------------------------------------------
    def defended(self, reason: str, guard: str | None = None) -> Judgement:
        return Judgement(DEFENDED, reason, guard)

    def vulnerable(self, reason: str, guard: str | None = None) -> Judgement:
        return Judgement(VULNERABLE, reason, guard)

    def broken(self, reason: str) -> Judgement:
        return Judgement(BROKEN, reason)

    def error(self, reason: str) -> Judgement:
        return Judgement(ERROR, reason)

    def earliest_dial(self, wrap: Wrap) -> float:
        """The earliest moment the owner's client can have dialled: it sleeps
        ``connect_delay`` after the wrap-init answer, which comes after the server's
        ``wrap_init`` event (else: after the client started)."""
        init = [float(e.get("ts") or 0) for e in self.events(wrap.session)
                if e.get("type") == "wrap_init"]
        return max([wrap.dials_after] + [t + wrap.connect_delay for t in init])

    def owner_kinds(self) -> list[str]:
        """The handoffs the owner's client makes for this cell's socket kind."""
        return {"notify": ["notify"], "signal": ["notify", "signal"],
                "ptrace": ["ptrace"]}[self.socket]

    def judge(self, wrap: Wrap, attacks: Iterable[Intrusion | Flood] = (),
              *, first: bool = True) -> Judgement:
        """The common verdict of a handoff under attack.

        - vulnerable: a handoff from anyone but the owner was accepted (its token arrived);
          or the owner failed after the attacker reached the server (denial of service);
          or the token that arrived is not the owner's.
        - broken: the owner failed and no attacker got past the kernel.
        - defended: the owner's token arrived for every handoff, and no one else's did.
        ``first``: the attacks must have been made before the owner could dial.
        """
        attacks = list(attacks)
        owner_uid = wrap.actor.uid  # the owner of this wrap (a scenario may have several)
        events = self.events(wrap.session)
        attacker_uids = {a.uid for a in attacks}
        foreign = [e for e in events if e.get("type") == "handoff_ok"
                   and e.get("peer_uid") != owner_uid]
        intruder_tokens = {a.token for a in attacks if isinstance(a, Intrusion) and a.token}
        stolen = [e for e in events if e.get("type") == "handoff_ok"
                  and e.get("token") in intruder_tokens]
        rejected = [e for e in events if e.get("type") == "peer_rejected"
                    and e.get("peer_uid") in attacker_uids]
        self.metrics["server_rejections"] = rejections_of(events, attacker_uids)
        reached = bool(rejected) or any(a.reached_server for a in attacks)
        dial = self.earliest_dial(wrap) if first else 0.0
        for a in attacks:
            if first and isinstance(a, Intrusion) and a.attempts and a.finished > dial:
                return self.error(f"the {a.actor.role} finished at +"
                                  f"{a.finished - wrap.started:.2f}s, after the owner could "
                                  f"dial (+{dial - wrap.started:.2f}s): not first")
        if foreign or stolen or any(a.accepted for a in attacks):
            e = (foreign or stolen or [{}])[0]
            return self.vulnerable(
                f"a handoff from uid {e.get('peer_uid', '?')} was accepted on the "
                f"{e.get('kind', self.socket)} socket (token {e.get('token')!r}); "
                + ("the owner's wrap then " + wrap.failure() if not wrap.ok
                   else "the owner's wrap still reported ok"))
        # Did the server pull the wrap directory out from under a loop still waiting for the
        # owner? (AGENTSH.md G8: the notify loop removes the shared directory while the
        # signal loop waits.) Then the owner's next dial races the removal whatever an
        # attacker does: broken, whichever way this run's race went.
        g8 = _removed_under(events, self.owner_kinds())
        if not wrap.ok and g8:
            return self.broken(g8 + f"; the owner's wrap then {wrap.failure()}")
        if not wrap.ok:
            # Did the attacker cause it? Only if the attacker ended or consumed the loop of
            # the socket the owner failed on (an accept-once rejection, a first-wins
            # connection), or filled its backlog (EAGAIN on connect while flooding). An
            # owner failure of another cause (a directory already removed by another loop,
            # AGENTSH.md G8) is ``broken`` even with an attacker around.
            failed_kind = (wrap.step or "").partition("-")[2] or None
            # A loop ended by a rejected peer that is not the owner counts too: the server
            # may see the attacker under another uid (unmapped: the overflow uid).
            ended = [e for e in events if e.get("type") in ("handoff_ok", "handoff_failed")
                     and e.get("kind") == failed_kind
                     and (e.get("peer_uid") in attacker_uids
                          or (e.get("reason") == "wrong_peer"
                              and e.get("peer_uid") != owner_uid))]
            flooded = wrap.errno == "EAGAIN" and any(isinstance(a, Flood) and a.reached_server
                                                     for a in attacks)
            if reached and not (ended or flooded):
                return self.broken(
                    f"the owner's wrap {wrap.failure()}; the attacker reached the server but "
                    f"did not end or fill the {failed_kind} loop, so it did not cause it")
            if reached:
                who = ", ".join(sorted({a.actor.role for a in attacks})) or "the attacker"
                return self.vulnerable(
                    f"denial of service: the owner's wrap {wrap.failure()} after the {who} "
                    f"reached the server ({len(rejected)} peer_rejected events, "
                    f"{self.metrics['server_rejections']} rejections counted)",
                    guard="peer-check" if rejected else None)
            return self.broken(f"the owner's wrap {wrap.failure()}; no attacker got past "
                               "the kernel, so the attacker did not cause it"
                               if attacks else f"the owner's wrap {wrap.failure()}")
        mine = [e for e in events if e.get("type") == "handoff_ok"
                and e.get("peer_uid") == owner_uid]
        for kind in self.owner_kinds():
            got = [e for e in mine if e.get("kind") == kind]
            if not got:
                return self.error(f"the owner's client reported ok but the server recorded "
                                  f"no handoff_ok on {kind} from uid {owner_uid}")
            if kind != "ptrace" and got[0].get("token") != wrap.token:
                return self.vulnerable(f"the {kind} fd that arrived holds token "
                                       f"{got[0].get('token')!r}, not the owner's "
                                       f"{wrap.token!r}")
        if g8:
            return self.broken(g8 + "; the owner's dial won the race this time")
        if not attacks:
            return self.defended(f"the owner's token arrived ({', '.join(self.owner_kinds())})")
        if not reached:
            refused = "; ".join(a.refusals() if isinstance(a, Intrusion) else a.summary()
                                for a in attacks)
            return self.defended("the kernel refused the attacker before the server saw it "
                                 f"({refused}); the owner's token arrived", guard="kernel")
        return self.defended(
            f"the server's peer check rejected the attacker "
            f"({self.metrics['server_rejections']} rejections); the owner's token arrived",
            guard="peer-check")


#: When one scenario run judges several handoffs, the worst decides: the harness failing
#: first, then the owner failing by itself (no attack can be told apart then), then an attack
#: that worked once.
PRECEDENCE = (ERROR, BROKEN, VULNERABLE, DEFENDED)


def combine(judgements: list[Judgement]) -> Judgement:
    """One verdict from several (see :data:`PRECEDENCE`); the reason counts them."""
    if not judgements:
        return Judgement(ERROR, "nothing was judged")
    worst = min(judgements, key=lambda j: PRECEDENCE.index(j.verdict))
    tally = ", ".join(f"{sum(j.verdict is v for j in judgements)} {v}" for v in PRECEDENCE
                      if any(j.verdict is v for j in judgements))
    return Judgement(worst.verdict, f"{len(judgements)} handoffs ({tally}); "
                     f"the {worst.verdict} one: {worst.reason}", worst.guard)


def claim_foreign_pid(ctx, kind: str):
    """The victim starts a process; the owner hands over on its own ``kind`` socket naming
    that process's pid (ptrace: the pid to trace; notify: the wrapper pid in the metadata).
    The steps of ptrace-foreign-pid and wrapper-pid-not-child."""
    victim = ctx.run.spawn(ctx.victim.user_role, ["sleep", "60"])
    ctx._pending.append(victim)
    ctx.step(ctx.victim, "runs sleep 60 (the process to be claimed)", f"pid {victim.pid}")
    argv = ["python3", "-m", "wraplab.actors.pidclaim", "--kind", kind, "--api", ctx.api,
            "--target-uid", str(ctx.victim.uid), "--target-comm", "sleep"]
    res = ctx.run.exec(ctx.owner.user_role, argv, timeout=60)
    try:
        out = res.json()
    except ValueError:
        out = {}
    if not out or (out.get("error") and out.get("http") in (None, 200)):
        return ctx.error(f"pidclaim: {out.get('error') or (res.stderr or '').strip()[-300:]}")
    what = "asks the tracer to attach" if kind == "ptrace" else "names as its wrapper"
    ctx.step(ctx.owner, f"{what} pid {out.get('claimed_pid')} ({out.get('claimed_comm')}, "
             f"uid {ctx.victim.uid}) on its own {kind} socket",
             out.get("result") or out.get("error", ""), errno=out.get("errno"),
             ms=out.get("ms"), detail=out)
    events = ctx.events(out.get("session"))
    claimed = out.get("claimed_pid")
    field = "pid" if kind == "ptrace" else "wrapper_pid"
    ok = [e for e in events if e.get("type") == "handoff_ok" and e.get("kind") == kind]
    failed = [e for e in events if e.get("type") == "handoff_failed" and e.get("kind") == kind]
    ctx.metrics.update(claimed_pid=claimed, answer=out.get("result"),
                       server=(ok or failed or [{}])[0].get("reason") or
                       ("handoff_ok" if ok else None))
    if any(e.get(field) == claimed for e in ok) or out.get("result") in ("ACK", "status 1"):
        return ctx.vulnerable(
            f"the server accepted pid {claimed} of uid {ctx.victim.uid} from alice "
            f"({out.get('result')}; handoff_ok {field}={ok[0].get(field) if ok else '?'})")
    w = ctx.owner.wraps()
    if out.get("errno") or out.get("error"):
        if not w.ok:
            return ctx.broken(f"alice could not reach her own socket "
                              f"({out.get('errno') or out.get('error')}), nor could her wrap: "
                              f"{w.failure()}")
        return ctx.defended(f"alice could not hand over ({out.get('errno')})", guard="kernel")
    verdict = ctx.judge(w)
    if verdict.verdict is not DEFENDED:
        return verdict
    why = failed[0].get("reason") if failed else "?"
    detail = failed[0].get("detail") if failed else None
    return ctx.defended(f"the server refused pid {claimed} ({out.get('result')}, {why}: "
                        f"{detail}); alice's own wrap then worked", guard="pid-check")


def _removed_under(events: list[dict], kinds: list[str]) -> str | None:
    """Why the wrap directory was removed while a loop of ``kinds`` had not ended, or None."""
    removed = [float(e.get("ts") or 0) for e in events if e.get("type") == "dir_removed"]
    if not removed:
        return None
    t = min(removed)
    for kind in kinds:
        ends = [float(e.get("ts") or 0) for e in events if e.get("kind") == kind
                and e.get("type") in LOOP_ENDS]
        if not any(x <= t for x in ends):
            return (f"the server removed the wrap directory while its {kind} loop still "
                    "waited (G8: the notify loop cleans up for the whole wrap)")
    return None


def rejections_of(events: list[dict], uids: set) -> int:
    """Rejections of ``uids`` counted by the server (running counts and final tallies)."""
    per_kind: dict[str, int] = {}
    for e in events:
        if e.get("type") == "peer_rejected" and e.get("peer_uid") in uids:
            k = e.get("kind", "?")
            per_kind[k] = max(per_kind.get(k, 0), int(e.get("count") or 1))
    total = sum(per_kind.values())
    finals = sum(int(e.get("rejections") or 0) for e in events
                 if e.get("type") in LOOP_ENDS)
    return max(total, finals)


# --------------------------------------------------------------------------------------
# Running a cell
# --------------------------------------------------------------------------------------


def make_lab(kind: str, base: str = "bookworm"):
    from wraplab import labs

    if kind == "docker":
        return labs.DockerLab(base=base)
    if kind == "local":
        return labs.LocalLab()
    raise ValueError(f"unknown lab {kind!r} (docker or local)")


def run_cell(cell: Cell, *, scenario: Scenario | None = None, lab=None,
             target: targets_mod.Target | None = None) -> Outcome:
    """Start the target in a fresh lab, run the scenario's steps, judge, collect evidence."""
    scenario = scenario or get_scenario(cell.scenario)
    target = target or targets_mod.reference(cell.profile)
    t0 = time.time()
    timings: dict = {}
    ctx = None
    run = None
    judgement = Judgement(ERROR, "the scenario did not finish")
    error = None
    server: dict = {}
    log: list[dict] = []
    events: list[dict] = []
    try:
        lab = lab or make_lab(cell.lab, cell.base)
        spec = target.server_spec(
            placement=cell.placement, socket=cell.socket, transport=cell.transport,
            lab=cell.lab, **scenario.server)
        with lab.start(spec) as run:
            timings["setup_s"] = round(time.time() - t0, 3)
            ctx = Context(scenario, cell, run, target)
            t1 = time.time()
            try:
                judgement = scenario.run(ctx)
                if not isinstance(judgement, Judgement):
                    judgement = Judgement(ERROR, f"run() returned {judgement!r}, not a verdict")
            except HarnessError as exc:
                judgement = Judgement(ERROR, str(exc))
            except Exception as exc:
                judgement = Judgement(ERROR, f"{type(exc).__name__}: {exc}")
                error = traceback.format_exc()
            finally:
                for h in ctx._pending:
                    try:
                        h.kill()
                    except Exception:
                        pass
            timings["scenario_s"] = round(time.time() - t1, 3)
            for session in ctx._sessions:
                try:
                    events.extend(ctx.events(session))
                except Exception:
                    pass
            try:
                server = _plain(run.server_info())
            except Exception as exc:
                server = {"error": repr(exc)}
            try:
                log = list(run.server_log())
            except Exception:
                log = []
    except Exception as exc:
        judgement = Judgement(ERROR, f"lab: {type(exc).__name__}: {exc}")
        error = traceback.format_exc()
    timings["total_s"] = round(time.time() - t0, 3)
    steps = list(ctx.steps) if ctx else []
    srv_uid = server.get("uid") if isinstance(server, dict) else None
    for group in _event_runs(events):
        e = group[0]
        if len(group) <= 3:
            steps.extend(Step(float(x.get("ts") or 0), "server", "server", srv_uid,
                              f"event {x.get('type')}", _event_text(x), detail=x)
                         for x in group)
            continue
        last = group[-1]
        steps.append(Step(
            float(e.get("ts") or 0), "server", "server", srv_uid,
            f"event peer_rejected x{len(group)}",
            f"kind={e.get('kind')} peer_uid={e.get('peer_uid')} expected_uid="
            f"{e.get('expected_uid')} count={e.get('count')}..{last.get('count')} "
            f"over {float(last.get('ts') or 0) - float(e.get('ts') or 0):.3f}s",
            ms=(float(last.get("ts") or 0) - float(e.get("ts") or 0)) * 1000,
            detail={"first": e, "last": last, "n": len(group)}))
    steps.sort(key=lambda s: s.t)
    return Outcome(
        cell=cell, verdict=judgement.verdict, reason=judgement.reason, guard=judgement.guard,
        steps=steps, files=ctx.files if ctx else [], events=events, log=_log_excerpt(log),
        metrics=ctx.metrics if ctx else {}, timings=timings, server=server, error=error,
    )


def _event_runs(events: list[dict]) -> list[list[dict]]:
    """Events in order, consecutive peer_rejected of one kind and peer grouped together."""
    runs: list[list[dict]] = []
    for e in sorted(events, key=lambda x: float(x.get("ts") or 0)):
        prev = runs[-1][-1] if runs else None
        if (prev is not None and e.get("type") == "peer_rejected"
                and prev.get("type") == "peer_rejected"
                and (e.get("kind"), e.get("peer_uid")) == (prev.get("kind"), prev.get("peer_uid"))):
            runs[-1].append(e)
        else:
            runs.append([e])
    return runs


_EVENT_FIELDS = {
    "wrap_init": ("caller_uid", "uid_source", "transport", "fs_isolation", "modes"),
    "peer_rejected": ("kind", "peer_uid", "peer_pid", "expected_uid", "count"),
    "handoff_ok": ("kind", "peer_uid", "peer_pid", "token", "wrapper_pid", "pid", "rejections"),
    "handoff_failed": ("kind", "peer_uid", "peer_pid", "reason", "rejections"),
    "peer_dropped": ("kind", "peer_uid", "peer_pid", "reason", "count"),
    "window_expired": ("kind", "rejections", "dropped"),
    "dir_removed": ("dir",),
}


def _event_text(e: dict) -> str:
    fields = _EVENT_FIELDS.get(e.get("type"), tuple(k for k in e if k not in
                                                      ("type", "ts", "session", "wrap")))
    return " ".join(f"{k}={_short(e[k])}" for k in fields if e.get(k) is not None)


def _short(v) -> str:
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k.rsplit('/', 1)[-1]}: {x}" for k, x in v.items()) + "}"
    return str(v)


def _log_excerpt(log: list[dict], limit: int = 60) -> list[dict]:
    """Warnings and errors first, then the rest, at most ``limit`` lines."""
    keep = [r for r in log if str(r.get("level", "")).lower() in ("warn", "warning", "error")]
    if len(keep) < limit:
        keep = log[:limit] if len(log) <= limit else keep + [
            r for r in log if r not in keep][: limit - len(keep)]
    return keep[:limit]


def run_cells(cells: list[Cell], *, jobs: int = 1,
              on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run ``cells`` with ``jobs`` at a time (each cell its own lab); cells of an
    ``EXCLUSIVE`` scenario (floods) run afterwards, one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    scenarios = {s: get_scenario(s) for s in {c.scenario for c in cells}}
    outcomes: dict[int, Outcome] = {}
    lock = threading.Lock()

    def one(i: int) -> None:
        out = run_cell(cells[i], scenario=scenarios[cells[i].scenario])
        with lock:
            outcomes[i] = out
            if on_done:
                on_done(out)

    shared = [i for i, c in enumerate(cells) if not scenarios[c.scenario].exclusive]
    alone = [i for i, c in enumerate(cells) if scenarios[c.scenario].exclusive]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in [pool.submit(one, i) for i in shared]:
            fut.result()
    for i in alone:
        one(i)
    return [outcomes[i] for i in range(len(cells))]


if __name__ == "__main__":  # pragma: no cover
    for s in discover():
        print(s.slug, "-", s.title)
    sys.exit(0)
