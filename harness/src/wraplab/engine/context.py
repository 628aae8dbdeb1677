"""The scenario context: what a scenario's ``run(ctx)`` works with — the actors by role,
the cell, the lab run, the target, the transcript, the observer's reads (as root: evidence,
never an actor's capability), and the verdict helpers (``ctx.judge`` is
:func:`wraplab.engine.judge.judge`)."""

from __future__ import annotations

import posixpath
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wraplab.engine.actors import Actor, HarnessError
from wraplab.engine.axes import engine_options
from wraplab.engine.cells import Cell, Step, plain
from wraplab.engine.evidence import LOOP_ENDS, Flood, Intrusion, Wrap, settled
from wraplab.engine.verdicts import BROKEN, DEFENDED, ERROR, VULNERABLE, Judgement

__all__ = ["Context"]


class Context:
    """One cell's run of a scenario. Every actor step lands in :attr:`steps`."""

    #: Seconds the owner's client has for its handoffs once it dials (SERVER client_budget).
    client_budget = 4.0

    def __init__(self, scenario, cell: Cell, run, target, cores=None):
        self.scenario = scenario
        #: An exclusive cell's hold on the cores (:mod:`wraplab.engine.cores`), or None.
        self.cores = cores
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
        self.client_budget = float(engine_options(scenario.server).get(
            "client_budget", type(self).client_budget))
        self._lock = threading.Lock()
        self.pending: list = []
        self.sessions: list[str] = []
        self.barrier_parents: set = set()
        self._events: dict[str, list[dict]] = {}
        #: Every run of the owner's client in this cell (what ``broken`` checks for lateness).
        self.wraps: list[Wrap] = []
        self.api = target.api(run, cell.transport)
        self.actors = {role: Actor(self, role, user_role)
                       for role, user_role in scenario.actors.items()}

    def __getattr__(self, name: str) -> Actor:
        actors = self.__dict__.get("actors", {})
        if name in actors:
            return actors[name]
        raise AttributeError(f"scenario has no actor or attribute {name!r} "
                             f"(actors: {', '.join(actors)})")

    def attack_over(self) -> None:
        """An exclusive scenario's attack is over: what is left is waiting (accept windows
        ending, the server cleaning up), so the next exclusive cell may attack
        (:mod:`wraplab.engine.cores`). Nothing for a scenario that is not exclusive."""
        if self.cores is not None:
            self.cores.release()

    @property
    def attackers(self) -> list[Actor]:
        """Every actor but the owner."""
        return [a for role, a in self.actors.items() if role != "owner"]

    # -- bookkeeping --------------------------------------------------------------------
    def track(self, handle):
        """A background process of this cell: killed at its end if still running."""
        self.pending.append(handle)
        return handle

    def barrier(self, actor: Actor, peer: bool = False):
        """A :class:`~wraplab.engine.actors.Barrier` between ``actor`` and the harness."""
        from wraplab.engine.actors import Barrier

        return Barrier(self, actor, peer)

    def watch_session(self, session: str) -> None:
        """A session whose events belong to this cell's evidence."""
        if session and session not in self.sessions:
            self.sessions.append(session)

    # -- transcript ---------------------------------------------------------------------
    def step(self, actor: Actor | str, action: str, result: str = "", *, errno=None,
             t: float | None = None, ms: float | None = None, detail: dict | None = None,
             end: float | None = None):
        """One transcript line: ``t`` when it started (default now), ``end`` when its result
        was known (default ``t`` + ``ms``; a step recorded after the fact with a ``t`` but
        no ``ms`` ended now); ``ms`` the figure the step measured (a latency, a wait)."""
        if isinstance(actor, Actor):
            who, user, uid = actor.label, actor.name, actor.uid
        else:
            who, user, uid = actor, "root" if actor == "harness" else actor, None
        now = time.time()
        if end is None and t and ms is None:
            end = now
        with self._lock:
            self.steps.append(Step(t or now, who, user, uid, action, result, errno,
                                   None if ms is None else round(ms, 2), detail or {},
                                   end=end))

    def note(self, text: str, **detail) -> None:
        self.step("harness", text, detail=detail)

    # -- observation (the harness as root) ----------------------------------------------
    def facts(self, path: str, label: str | None = None) -> dict:
        d = plain(self.run.stat(path))
        if label:
            d["label"] = label
        self.files.append(d)
        return d

    def record_files(self, sockets: Mapping[str, str]) -> None:
        """The facts (owner, mode, type, ACL) of announced sockets and their directories,
        as they are now."""
        paths = [p for p in sockets.values() if p]
        dirs = sorted({posixpath.dirname(p) for p in paths})
        labels = {p: f"{k} socket" for k, p in sockets.items() if p}
        labels.update({d: "wrap directory" for d in dirs})
        for f in self.run.stat_many([*dirs, *paths]):
            fd = plain(f)
            fd["label"] = labels.get(f.path, "")
            self.files.append(fd)

    def files_not_as_claimed(self, wrap: Wrap) -> list[str]:
        """Compare the recorded file facts with what the server announced (its
        ``fs_isolation``; the ``wrap_init`` event's modes corroborate); what differs."""
        init = next((e for e in self.events(wrap.session, fresh=False)  # wrap_init: read once
                     if e.get("type") == "wrap_init"),
                    None) or {}
        if not self.files:
            return []
        wrong = []
        modes = {p: int(str(m), 8) for p, m in (init.get("modes") or {}).items()}
        iso = wrap.data.get("fs_isolation") or init.get("fs_isolation")
        uid = wrap.actor.uid
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

    def events(self, session: str | None, *, fresh: bool = True) -> list[dict]:
        """The session's event list (SPEC §4), read through the API as the observer;
        ``fresh=False`` reuses the last read. Empty for a target that keeps none."""
        if not session:
            return []
        self.watch_session(session)
        if not fresh and session in self._events:
            return self._events[session]
        if not getattr(self.target, "has_events", True):
            return []
        status, body = self.run.api_request("GET", f"/api/v1/sessions/{session}/events")
        if status != 200 or not isinstance(body, Mapping):
            raise HarnessError(f"events of {session}: HTTP {status} {body!r}")
        self._events[session] = list(body.get("events") or [])
        return self._events[session]

    def final_events(self, session: str) -> list[dict]:
        """The session's events for the report: the last read where it already shows the
        session settled (:func:`~wraplab.engine.evidence.settled`), else a fresh read;
        so a cell whose judge saw the end reads the events once."""
        cached = self._events.get(session)
        return self.events(session, fresh=cached is None or not settled(cached))

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
        """Until the wrap's loops have ended and its directory is gone, so a later wrap's
        socket is the only one to be found; True at once if wrap-init failed. The server's
        events say so where it keeps them; else the announced sockets must be gone."""
        def ended() -> bool:
            ev = self.events(wrap.session)
            if not ev and wrap.paths:
                return not any(f.exists for f in self.run.stat_many(list(wrap.paths.values())))
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
        """The owner could not wrap, attack or not -- unless a client of the owner dialled
        only after the window because the harness was slow: then nothing is known
        (``error``)."""
        late = next(filter(None, map(self.dialled_too_late, self.wraps)), None)
        if late:
            return Judgement(ERROR, f"no verdict: {late} (else: broken, {reason})")
        return Judgement(BROKEN, reason)

    def error(self, reason: str) -> Judgement:
        return Judgement(ERROR, reason)

    #: The server's accept window when a scenario sets none (wrapref's default, SPEC §1).
    default_window = 30.0

    def dialled_too_late(self, wrap: Wrap) -> str | None:
        """Why the owner's failure says nothing about the server: its client dialled only
        after the accept window (counted from the wrap-init answer) had ended, because the
        harness was slow to release it on a loaded machine. None if it dialled in time."""
        window = float(self.scenario.server.get("accept_window") or self.default_window)
        t0, dial = wrap.data.get("t_announce"), wrap.t_dial
        if wrap.ok or t0 is None or dial is None or dial <= float(t0) + window:
            return None
        return (f"the owner's client was released {dial - float(t0):.1f} s after wrap-init, "
                f"past the server's {window:g} s accept window (the harness was too slow)")

    def owner_kinds(self) -> list[str]:
        """The handoffs the owner's client makes for this cell's socket kind."""
        return {"notify": ["notify"], "signal": ["notify", "signal"],
                "ptrace": ["ptrace"]}[self.socket]

    def judge(self, wrap: Wrap, attacks: Iterable[Intrusion | Flood] | None = None, *,
              first: bool = True) -> Judgement:
        """The common verdict of a handoff under attack (see :func:`wraplab.engine.judge.
        judge`). ``attacks=None``: the owner alone (no attack was meant)."""
        from wraplab.engine.judge import judge

        return judge(self, wrap, None if attacks is None else list(attacks), first=first)
