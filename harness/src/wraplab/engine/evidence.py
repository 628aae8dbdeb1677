"""Views of what the actors saw: the owner's client run (:class:`Wrap`), an intruder's
attempts (:class:`Intrusion`), a flood (:class:`Flood`); and the few readings of the
server's events that corroborate them (SPEC §4: events corroborate, they do not decide)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Wrap", "Intrusion", "Flood", "LOOP_ENDS", "GONE", "KERNEL_REFUSALS",
           "rejections_of", "removed_under", "settled", "json_of"]

#: The events that end an accept loop: exactly one per loop (docs/design.md §1).
LOOP_ENDS = ("handoff_ok", "handoff_failed", "window_expired")
#: connect errnos that mean no live socket was there: the boundary was not reached.
GONE = ("ENOENT", "ECONNREFUSED", "ENOTDIR")
#: connect errnos of the kernel's permission check: the boundary was reached and held.
KERNEL_REFUSALS = ("EACCES", "EPERM")


def json_of(result) -> dict | None:
    """The JSON object an actor printed (its last JSON line), or None."""
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
    """The owner's client run (docs/design.md §2 output)."""

    actor: Any
    started: float
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
    def t_dial(self) -> float | None:
        """When the client started dialling (its own clock); None if it never dialled."""
        t = self.data.get("t_dial")
        return None if t is None else float(t)

    @property
    def dial_ms(self) -> float | None:
        """From the first dial to the end of the handoffs (the latency an owner feels)."""
        t0, t1 = self.data.get("t_dial"), self.data.get("t_end")
        return None if not (t0 and t1) else round((t1 - t0) * 1000, 2)

    @property
    def failed_kind(self) -> str | None:
        """The socket kind the client failed on (``connect-signal`` -> ``signal``)."""
        if self.ok:
            return None
        return (self.step or "").partition("-")[2] or None

    def failure(self) -> str:
        why = self.errno or self.data.get("error") or f"exit {self.exit_code}"
        if self.data.get("http_status") and self.step in ("session", "wrap-init"):
            why = f"HTTP {self.data['http_status']}: {why}"
        return f"failed at {self.step or '?'} ({why})"


@dataclass
class Intrusion:
    """An intruder's run of ``wraplab.actors.intrude``: what it found, what the kernel and
    the server answered it."""

    actor: Any
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
    def live_attempts(self) -> list[dict]:
        """Attempts that met a live socket (a refusal, a connection), not a missing one."""
        return [s for s in self.attempts if s.get("errno") not in GONE]

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
    def live_after_reaching(self) -> bool:
        """After an attempt reached the server, a later attempt still met a live socket:
        the attacker's rejected connection did not end the loop (what a server's
        ``peer_rejected``-but-no-loop-end events say, seen from outside)."""
        reached = False
        for s in sorted(self.attempts, key=lambda s: s.get("t", 0)):
            # A bare connect reset before the server said anything was still pending on a
            # listener that closed (Linux resets its embryos; a connection the server took
            # and closed reads EOF): the loop had ended, so it shows no live socket. (A
            # handoff may be reset by a live loop too: it closes on unread data.)
            reset = s.get("action") == "connect" and "ECONNRESET" in (s.get("errno"),
                                                                       s.get("server"))
            if reached and s.get("errno") not in GONE and not reset:
                return True
            reached = reached or s.get("errno") is None or bool(s.get("connected"))
        return False

    @property
    def kernel_refused(self) -> bool:
        live = self.live_attempts
        return bool(live) and all(s.get("errno") in KERNEL_REFUSALS for s in live)

    @property
    def accepted(self) -> bool:
        """The attacker saw its handoff taken: status 1 / ACK, or its token read from the
        pipe it passed (the attacker kept a copy of the read end and saw it drained)."""
        return any(s.get("accepted") or (s.get("status") is None and s.get("consumed"))
                   for s in self.attempts)

    @property
    def refused_outright(self) -> bool:
        """The attacker saw a definite no: a kernel refusal, or a status 0 / NACK."""
        return bool(self.attempts) and all(
            s.get("errno") in KERNEL_REFUSALS or s.get("accepted") is False
            and s.get("status") == 0 for s in self.attempts)

    def did_not_happen(self) -> str | None:
        """Why this attack did not reach a live boundary, or None if it did."""
        if not self.path:
            return f"the {self.actor.role} found no socket to attack"
        if not self.attempts:
            return f"the {self.actor.role} made no attempt on {self.path}"
        if not self.live_attempts:
            errs = ", ".join(sorted({s.get("errno") for s in self.attempts}))
            return f"every attempt of the {self.actor.role} met no live socket ({errs})"
        return None

    def refusals(self) -> str:
        return ", ".join(f"{s['action']}: {s.get('result') or s.get('errno') or 'connected'}"
                         for s in self.attempts) or "no attempt"


@dataclass
class Flood:
    """A flooder's report (``wraplab.actors.flood`` or ``churn``)."""

    actor: Any
    data: dict

    @property
    def uid(self) -> int | None:
        return self.data.get("uid", self.actor.uid)

    @property
    def path(self) -> str | None:
        return self.data.get("path")

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
        live = {k for k, v in self.outcomes.items() if v and k not in GONE}
        return bool(live) and live <= set(KERNEL_REFUSALS)

    @property
    def accepted(self) -> bool:
        return False

    @property
    def refused_outright(self) -> bool:
        return self.kernel_refused

    @property
    def finished(self) -> float:
        return float(self.data.get("t1") or 0)

    @property
    def gone_at(self) -> float | None:
        """When the flood first met no socket (the owner's announced socket, there when the
        flood started: the loop it flooded had ended), or None."""
        t = self.data.get("first_gone")
        return None if t is None else float(t)

    def did_not_happen(self) -> str | None:
        if not self.attempts:
            return f"the {self.actor.role}'s flood made no attempt " \
                   f"({self.data.get('error') or 'no socket'})"
        if all(k in GONE for k, v in self.outcomes.items() if v):
            return f"the {self.actor.role}'s flood met no live socket ({self.outcomes})"
        return None

    def summary(self) -> str:
        outs = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items(),
                                                          key=lambda kv: -kv[1]))
        return f"{self.attempts} connects in {self.data.get('seconds', '?')} s " \
               f"({self.rate:,.0f}/s): {outs or 'none'}"


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


def removed_under(events: list[dict], kinds: list[str]) -> str | None:
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


def settled(events: list[dict]) -> bool:
    """True when ``events`` (one session's) show every wrap of the session over: each
    socket's loop ended (``LOOP_ENDS``) and the directory removed (or its cleanup given
    up). Nothing more can happen to such a session, so its events need no second read;
    a session without a wrap_init event is never settled (a read may still find one)."""
    inits = [e for e in events if e.get("type") == "wrap_init"]
    if not inits:
        return False
    for init in inits:
        wrap = init.get("wrap")
        kinds = set((init.get("sockets") or {}).keys())
        mine = [e for e in events if e.get("wrap") == wrap]
        ended = {e.get("kind") for e in mine if e.get("type") in LOOP_ENDS}
        if not kinds or not kinds <= ended:
            return False
        if not any(e.get("type") in ("dir_removed", "cleanup_incomplete") for e in mine):
            return False
    return True
