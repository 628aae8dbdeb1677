"""Verdicts, the guard that decided them, and how several combine.

``defended`` (the attack reached a live boundary and the boundary stopped it; the owner's
handoff worked), ``vulnerable`` (the attack worked: the attacker's handoff was taken, or it
denied the owner), ``broken`` (the owner failed without the attacker causing it), ``error``
(the harness could not decide — the attack did not happen, or the evidence disagrees;
always a failure); ``not-run`` (the target lacks what the scenario needs: neither a pass
nor a failure, the report says why). A scenario's ``EXPECT`` may name the guard too:
``DEFENDED.by("kernel")``; where a race inside the server itself decides between two
outcomes, :func:`broken_by_g8` and :func:`flood_before_g8` name both.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Verdict", "DEFENDED", "VULNERABLE", "BROKEN", "ERROR", "NOT_RUN", "Expected",
           "Judgement", "PRECEDENCE", "broken_by_g8", "combine", "flood_before_g8"]


class Verdict(str, enum.Enum):
    DEFENDED = "defended"
    VULNERABLE = "vulnerable"
    BROKEN = "broken"
    ERROR = "error"
    NOT_RUN = "not-run"

    def __str__(self) -> str:
        return self.value

    def by(self, guard: str) -> Expected:
        """This verdict, decided by ``guard`` (see ``wraplab.engine.axes.GUARDS``)."""
        return Expected(self, guard)


DEFENDED, VULNERABLE, BROKEN, ERROR = (Verdict.DEFENDED, Verdict.VULNERABLE, Verdict.BROKEN,
                                       Verdict.ERROR)
NOT_RUN = Verdict.NOT_RUN


@dataclass(frozen=True)
class Expected:
    """An expectation: a verdict and, where the scenario promises one, the guard; ``race``
    is what a run may show instead when the owner wins a race the server runs against
    itself (see :func:`broken_by_g8`); a race alternative's ``when`` says when, in words."""

    verdict: Verdict
    guard: str | None = None
    race: Expected | None = None
    when: str | None = None  # of a race alternative: when a run shows it

    def __str__(self) -> str:
        own = f"{self.verdict} ({self.guard})" if self.guard else str(self.verdict)
        if self.race is None:
            return own
        return f"{own}, or {self.race} if {self.race.when or 'the owner outruns G8'}"

    @classmethod
    def of(cls, value) -> Expected:
        return value if isinstance(value, Expected) else cls(value)

    def met_by(self, verdict: Verdict, guard: str | None) -> bool:
        if self.race is not None and self.race.met_by(verdict, guard):
            return True
        return verdict not in (ERROR, NOT_RUN) and verdict == self.verdict and (
            self.guard is None or guard == self.guard)

    def to_dict(self) -> dict:
        out = {"verdict": str(self.verdict), "guard": self.guard}
        return {**out, "when": self.when} if self.when else out

    @classmethod
    def from_dict(cls, d: dict | None) -> Expected | None:
        return cls(Verdict(d["verdict"]), d.get("guard"), when=d.get("when")) if d else None


def broken_by_g8(otherwise) -> Expected:
    """``broken`` by AGENTSH.md G8, or ``otherwise`` when the owner's dial wins G8's race.

    G8 is a race inside the server: its notify loop removes the whole wrap directory right
    after its ACK, and the owner's client dials the signal socket right after receiving
    that ACK. The removal nearly always comes first (the dial fails, or the server's events
    show the directory gone while the signal loop still waited): ``broken``. Rarely, under
    load, the notify loop is descheduled between its ACK and its cleanup, the owner's signal
    handoff completes first, and the run shows what the attack alone does: ``otherwise``.
    No barrier outside the server can order two steps of one server thread, so the cell
    accepts both, each with its evidence; any other verdict is a mismatch.
    """
    return Expected(BROKEN, race=Expected.of(otherwise))


def flood_before_g8(verdict: Verdict = VULNERABLE) -> Expected:
    """``verdict`` (the flood's first connection ends the signal loop before the owner
    dials), or ``broken`` by AGENTSH.md G8 when the notify loop's cleanup comes first.

    The other side of G8's race, under a flood: the signal loop ends with the flood's first
    connection, normally long before the owner's notify handoff and the cleanup that
    follows it. On a saturated machine the signal loop may not get a turn between the
    flood's start and that cleanup (seen once in 1,200 runs with two CPU burners): then the
    owner's signal dial meets no socket, and the run shows G8. Two steps of server threads;
    no barrier outside the server orders them.
    """
    return Expected(verdict, race=Expected(
        BROKEN, when="G8's cleanup comes before the signal loop's first accept"))


@dataclass
class Judgement:
    verdict: Verdict
    reason: str
    guard: str | None = None  # what stopped the attack: kernel (mode/ACL), peer-check...


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
