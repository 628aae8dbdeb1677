"""Rates with their uncertainty: the Wilson score interval, the verdicts of repeated runs,
and a race's pooled win rate (outcomes whose metrics carry ``tries`` and ``wins``)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

#: 95 % two-sided.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Rate:
    """``hits`` of ``n`` with its Wilson score interval (``low``..``high``, fractions)."""

    hits: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float | None:
        return self.hits / self.n if self.n else None

    def text(self, what: str = "") -> str:
        if not self.n:
            return f"no {what or 'trials'}"
        return (f"{self.hits}/{self.n}{' ' + what if what else ''} = {_pct(self.value)} "
                f"(95 % Wilson interval {_pct(self.low)}-{_pct(self.high)})")

    def as_dict(self) -> dict:
        return {"hits": self.hits, "n": self.n, "rate": self.value, "low": self.low,
                "high": self.high, "confidence": 0.95}


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    p = 100 * x
    return f"{p:.2f} %" if p < 10 else f"{p:.1f} %"


def wilson(hits: int, n: int, z: float = Z95) -> Rate:
    """The Wilson score interval of ``hits`` successes in ``n`` trials (good at rates near
    0 and 1 and at small ``n``, where the normal approximation is not)."""
    if n < 0 or hits < 0 or hits > n:
        raise ValueError(f"bad counts: {hits} of {n}")
    if n == 0:
        return Rate(0, 0, 0.0, 1.0)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return Rate(hits, n, low, high)


def verdicts(outcomes: Sequence) -> dict[str, int]:
    """How many outcomes had each verdict."""
    return dict(Counter(str(o.verdict) for o in outcomes))


def race_rate(outcomes: Sequence) -> Rate | None:
    """The pooled win rate of a race (every outcome's ``wins`` of ``tries``); None when no
    outcome is a race."""
    tries = wins = 0
    seen = False
    for o in outcomes:
        m = o.metrics or {}
        if isinstance(m.get("tries"), int) and isinstance(m.get("wins"), int):
            seen = True
            tries += m["tries"]
            wins += m["wins"]
    return wilson(wins, tries) if seen else None


def repeat_summary(outcomes: Sequence) -> dict:
    """What ``--repeat`` reports for one cell: the verdict distribution, the rate of the
    expected verdict over the runs, and a race's pooled win rate."""
    if not outcomes:
        return {}
    cell = outcomes[0].cell
    out = {"cell": cell.name, "runs": len(outcomes), "verdicts": verdicts(outcomes),
           "as_expected": wilson(sum(o.ok for o in outcomes), len(outcomes)).as_dict()}
    race = race_rate(outcomes)
    if race is not None:
        out["race"] = race.as_dict()
    return out
