"""Scenarios as data: one file each under ``wraplab/scenarios/`` (the slug is the file
name), loaded and checked here.

A scenario file has a module docstring telling the attack, and declares::

    SLUG = "wrong-uid"                       # must equal the file stem
    ACTORS = {"owner": "owner", "intruder": "attacker"}   # scenario role -> users.conf role
    SOCKETS = ("notify", "signal", "ptrace")
    PLACEMENTS = ("root",)                   # root | root-no-chown | service
    TRANSPORTS = ("unix",)                   # unix | tcp
    EXPECT = {"hardened": DEFENDED.by("kernel"), "agentsh": {"*": DEFENDED, "tcp": VULNERABLE}}
    SERVER = {"accept_window": 6}            # optional: see wraplab.engine.axes.SERVER_OPTIONS
    NEEDS = ("events",)                      # optional: "wrapref" (starts it itself), "events"
    def run(ctx): ...                        # steps; returns ctx.judge(...) or ctx.<verdict>(...)

``EXPECT`` names every profile. A value is a verdict (or ``verdict.by(guard)``), or a mapping
from a variant key to one: ``"*"``, or placement/transport/socket names joined by ``/``
(``"tcp"``, ``"service/ptrace"``); the most specific matching key wins.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wraplab.engine.axes import (
    GUARDS,
    LABS,
    PLACEMENTS,
    PROFILES,
    SERVER_OPTIONS,
    SOCKETS,
    TRANSPORTS,
    USER_ROLES,
)
from wraplab.engine.cells import Cell
from wraplab.engine.verdicts import ERROR, Expected, Verdict

__all__ = ["Scenario", "ScenarioError", "load_scenario", "discover", "get_scenario",
           "SCENARIO_DIR"]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"


class ScenarioError(Exception):
    """A scenario file cannot be loaded (no docstring, slug != file name, bad data...)."""


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
    run: Callable
    server: Mapping[str, Any] = field(default_factory=dict)
    order: int = 100
    exclusive: bool = False  # runs alone (a flood needs the machine's cores to itself)
    labs: tuple[str, ...] = LABS  # where it can run; LAB_NOTES say why not elsewhere
    lab_notes: Mapping[str, str] = field(default_factory=dict)
    #: What the scenario needs of the target beyond the protocol (``"wrapref"``: it starts
    #: the reference server itself; ``"events"``: it reads the server's events); a target
    #: without it reports the cells not run.
    needs: tuple[str, ...] = ()
    needs_why: str = ""  # NEEDS_WHY: why, in the words the not-run reason shows

    @property
    def title(self) -> str:
        return self.doc.strip().splitlines()[0].strip()

    def expectation(self, profile: str, socket: str = "notify", placement: str = "root",
                    transport: str = "unix") -> Expected:
        value = self.expect[profile]
        if isinstance(value, (Verdict, Expected)):
            return Expected.of(value)
        have = {socket, placement, transport}
        best, best_n, tie = None, -1, None
        for key, expected in value.items():
            parts = [] if key == "*" else key.split("/")
            if not all(p in have for p in parts):
                continue
            if len(parts) > best_n:
                best, best_n, tie = expected, len(parts), None
            elif len(parts) == best_n and expected != best:
                tie = key
        if tie is not None:
            raise ScenarioError(f"{self.slug}: EXPECT[{profile!r}] is ambiguous for {socket} "
                                f"{placement} {transport} (key {tie!r} ties another key)")
        if best is None:
            raise ScenarioError(
                f"{self.slug}: no expectation for {profile} {socket} {placement} {transport}")
        return Expected.of(best)

    def expected(self, profile: str, socket: str = "notify", placement: str = "root",
                 transport: str = "unix") -> Verdict:
        return self.expectation(profile, socket, placement, transport).verdict

    def cells(self, *, profiles: Iterable[str] | None = None,
              sockets: Iterable[str] | None = None, placements: Iterable[str] | None = None,
              transports: Iterable[str] | None = None, lab: str = "docker",
              base: str = "bookworm") -> list[Cell]:
        def pick(mine, wanted):
            return [x for x in mine if wanted is None or x in set(wanted)]

        if lab not in self.labs:
            return []  # LAB_NOTES[lab] says why (wraplab list shows it)
        out = []
        for profile in pick(PROFILES, profiles):
            for placement in pick(self.placements, placements):
                for transport in pick(self.transports, transports):
                    for sock in pick(self.sockets, sockets):
                        e = self.expectation(profile, sock, placement, transport)
                        out.append(Cell(self.slug, profile, sock, placement, transport, lab,
                                        base, e.verdict, expected_guard=e.guard,
                                        expected_race=e.race,
                                        multi_placement=len(self.placements) > 1,
                                        multi_transport=len(self.transports) > 1))
        return out


#: What a scenario may need of a target (``NEEDS``): ``wrapref`` (it starts the reference
#: server itself), ``events`` (it reads what only the server's events tell).
NEEDS = ("wrapref", "events")

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _tuple_of(name: str, value, allowed: tuple[str, ...], path: Path) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ScenarioError(f"{path}: {name} must be a tuple of strings")
    value = tuple(value)
    bad = [v for v in value if v not in allowed]
    if bad or not value:
        raise ScenarioError(f"{path}: {name} {value!r}: each must be one of {allowed}")
    return value


def _check_expect(expect, path: Path) -> dict:
    if not isinstance(expect, Mapping):
        raise ScenarioError(f"{path}: EXPECT must map every profile to a verdict")
    missing = [p for p in PROFILES if p not in expect]
    if missing:
        raise ScenarioError(f"{path}: EXPECT has no verdict for {', '.join(missing)}")
    for profile, value in expect.items():
        if profile not in PROFILES:
            raise ScenarioError(f"{path}: EXPECT names unknown profile {profile!r}")
        values = list(value.values()) if isinstance(value, Mapping) else [value]
        for v in values:
            e = Expected.of(v) if isinstance(v, (Verdict, Expected)) else None
            if e is None or e.verdict is ERROR:
                raise ScenarioError(
                    f"{path}: EXPECT[{profile!r}] = {v!r}: expect defended, vulnerable or broken")
            if e.guard is not None and e.guard not in GUARDS:
                raise ScenarioError(f"{path}: EXPECT[{profile!r}] names guard {e.guard!r} "
                                    f"(known: {', '.join(GUARDS)})")
    return dict(expect)


def _server_options(server, path: Path) -> dict:
    if not isinstance(server, Mapping):
        raise ScenarioError(f"{path}: SERVER must be a dict of server and lab options")
    unknown = sorted(set(server) - set(SERVER_OPTIONS))
    if unknown:
        raise ScenarioError(f"{path}: SERVER has unknown option(s) {', '.join(unknown)} "
                            f"(known: {', '.join(SERVER_OPTIONS)})")
    return dict(server)


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
    run = getattr(module, "run", None)
    if not callable(run):
        raise ScenarioError(f"{path}: a scenario needs run(ctx)")
    labs = _tuple_of("LABS", getattr(module, "LABS", LABS), LABS, path)
    lab_notes = getattr(module, "LAB_NOTES", {})
    if not isinstance(lab_notes, Mapping) or any(
            not isinstance(lab_notes.get(lab), str) or not lab_notes[lab].strip()
            for lab in LABS if lab not in labs):
        raise ScenarioError(f"{path}: LAB_NOTES must say why the scenario cannot run in each "
                            "lab it leaves out")
    scenario = Scenario(
        slug=slug, path=path, doc=doc, actors=dict(actors),
        sockets=_tuple_of("SOCKETS", getattr(module, "SOCKETS", SOCKETS), SOCKETS, path),
        placements=_tuple_of("PLACEMENTS", getattr(module, "PLACEMENTS", ("root",)),
                             PLACEMENTS, path),
        transports=_tuple_of("TRANSPORTS", getattr(module, "TRANSPORTS", ("unix",)),
                             TRANSPORTS, path),
        expect=_check_expect(getattr(module, "EXPECT", None), path), run=run,
        server=_server_options(getattr(module, "SERVER", {}), path),
        order=int(getattr(module, "ORDER", 100)),
        exclusive=bool(getattr(module, "EXCLUSIVE", False)), labs=labs,
        lab_notes={k: v for k, v in lab_notes.items() if k not in labs},
        needs=_tuple_of("NEEDS", module.NEEDS, NEEDS, path) if hasattr(module, "NEEDS")
        else (), needs_why=str(getattr(module, "NEEDS_WHY", "")),
    )
    scenario.cells(lab=labs[0])  # every cell must have an expectation (raises otherwise)
    return scenario


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
