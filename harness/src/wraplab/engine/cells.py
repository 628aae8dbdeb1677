"""Cells (one scenario run against one point of the axes) and their outcomes: the verdict,
its reason and guard, and the evidence (transcript steps, file facts, events, metrics)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from wraplab.engine.verdicts import ERROR, NOT_RUN, Expected, Verdict

__all__ = ["Cell", "Step", "Outcome", "make_cells", "plain"]


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
    expected_guard: str | None = None
    multi_placement: bool = False
    multi_transport: bool = False
    #: The target's name (``wrapref:agentsh``, a target file's name); ``profile`` is its
    #: column label (the profile of a built-in target, else the name).
    target: str = ""
    #: Why the target file expects this verdict (a per-scenario override), or None.
    expect_reason: str | None = None
    #: Why this cell is not run (the target lacks what the scenario needs), or None.
    not_run: str | None = None
    #: What a run may show instead when the owner wins the server's own race (G8), or None.
    expected_race: Expected | None = None

    def __post_init__(self) -> None:
        if not self.target:
            object.__setattr__(self, "target", f"wrapref:{self.profile}")

    @property
    def expectation(self) -> Expected:
        return Expected(self.expected, self.expected_guard, self.expected_race)

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
                "base": self.base, "expected": str(self.expected),
                "expected_guard": self.expected_guard, "id": self.name,
                "target": self.target, "expect_reason": self.expect_reason,
                "not_run": self.not_run,
                "expected_race": self.expected_race.to_dict() if self.expected_race else None}


def make_cells(scenarios: Iterable, *, lab: str = "docker", base: str = "bookworm",
               profiles=None, sockets=None, placements=None, transports=None,
               targets=None) -> list[Cell]:
    """The cells of ``scenarios`` against ``targets`` (:class:`~wraplab.targets.Target`),
    or the built-in targets of ``profiles`` (default: every profile)."""
    from wraplab.targets import PROFILES, reference

    if targets is None:
        targets = [reference(p) for p in PROFILES if profiles is None or p in set(profiles)]
    out: list[Cell] = []
    for s in scenarios:
        for t in targets:
            out.extend(t.cells(s, sockets=sockets, placements=placements,
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
    #: Epoch seconds the step ended (its result was known); None: an instant (ends at ``t``).
    end: float | None = None

    @property
    def until(self) -> float:
        """When the step ended: ``end``, else ``t`` plus its ``ms``, else ``t``."""
        if self.end is not None:
            return self.end
        return self.t + (self.ms or 0) / 1000 if self.ms is not None else self.t

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Step:
        """A step back from :meth:`to_dict` (keys this version does not know are ignored)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


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
    #: Every process the lab ran for the cell (argv, uid, exit code, output tails, start and
    #: end): :func:`wraplab.engine.runner.process_records`.
    processes: list[dict] = field(default_factory=list)
    #: Where it ran: lab, image tag and id, container (or local directory), kept or not.
    lab_info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.cell.expectation.met_by(self.verdict, self.guard)

    @property
    def guard_mismatch(self) -> bool:
        """The verdict is as expected, but another guard decided it."""
        return (self.verdict not in (ERROR, NOT_RUN) and self.verdict == self.cell.expected
                and not self.ok)

    def to_dict(self) -> dict:
        return {
            "cell": self.cell.to_dict(), "verdict": str(self.verdict),
            "expected": str(self.cell.expected), "expected_guard": self.cell.expected_guard,
            "ok": self.ok, "reason": self.reason,
            "guard": self.guard, "metrics": self.metrics, "timings": self.timings,
            "steps": [s.to_dict() for s in self.steps], "files": self.files,
            "events": self.events, "log": self.log, "server": self.server,
            "error": self.error, "processes": self.processes, "lab_info": self.lab_info,
        }


def plain(obj) -> Any:
    """Dataclasses, enums, mappings and sequences as plain JSON-able values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj
