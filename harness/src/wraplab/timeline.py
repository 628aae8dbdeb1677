"""The transcript of one run as a timeline that reads in order.

Every step (an actor's, the harness's, a server event) has a start and an end on one clock
(epoch seconds; the lab shares the host's clock). A line is placed where its result was
known -- its end -- so the owner's client that ran for 1.5 s and failed appears after the
server events that happened meanwhile, not at +0.000; each line also says when it started.
Times are shown relative to the earliest start of the run.

:func:`lines` is the plain text (``wraplab run`` off a terminal, ``wraplab show``, JUnit);
:func:`rich_table` the compact view on a terminal (a bar per step over the run's span).
"""

from __future__ import annotations

from collections.abc import Sequence

from wraplab.engine import Step

#: A step shorter than this is an instant (no "from +start" is shown).
INSTANT_S = 0.0005
#: Width of the span bars of the terminal view.
BAR = 24


def who(s: Step) -> str:
    if s.actor == "harness":
        return "harness"
    if s.uid is None:
        return s.actor
    return f"{s.actor} {s.user}({s.uid})"


def ordered(steps: Sequence[Step]) -> list[Step]:
    """The steps in the order their results were known (end, then start)."""
    return sorted(steps, key=lambda s: (s.until, s.t))


def origin(steps: Sequence[Step]) -> float:
    """Zero of the run's clock: the earliest start."""
    return min((s.t for s in steps), default=0.0)


def lines(steps: Sequence[Step]) -> list[str]:
    """One line per step: ``+END  who  action -> result [ms]  (took D s from +START)``."""
    t0 = origin(steps)
    out = []
    for s in ordered(steps):
        ms = "" if s.ms is None else f" [{s.ms:.1f} ms]"
        res = f" -> {s.result}" if s.result else ""
        took = s.until - s.t
        span = f"  (took {took:.3f} s from +{s.t - t0:.3f})" if took >= INSTANT_S else ""
        at = f"+{s.until - t0:.3f}"
        out.append(f"  {at:>8}s  {who(s):<22} {s.action}{res}{ms}{span}")
    return out


def bar(start: float, end: float, t0: float, total: float, width: int = BAR) -> str:
    """A span as a bar of ``width`` cells over the run's ``total`` seconds."""
    if total <= 0:
        return "|".ljust(width)
    a = min(width - 1, int((start - t0) / total * width))
    b = max(a + 1, min(width, round((end - t0) / total * width)))
    return " " * a + ("|" if b - a == 1 and end - start < INSTANT_S else "█" * (b - a)) \
        + " " * (width - b)


def rich_table(steps: Sequence[Step], title: str):
    """The compact terminal view, one row per step: end, span bar, who, action, result
    (long texts cut to the row; ``--plain`` prints them whole)."""
    from rich.markup import escape as esc
    from rich.table import Table

    t0 = origin(steps)
    total = max((s.until for s in steps), default=t0) - t0
    t = Table(title=esc(title), expand=True, show_lines=False, pad_edge=False)
    t.add_column("at", justify="right", no_wrap=True)
    t.add_column(f"span (0-{total:.1f} s)", no_wrap=True)
    t.add_column("who", no_wrap=True)
    t.add_column("action", overflow="ellipsis", no_wrap=True, ratio=3)
    t.add_column("result", overflow="ellipsis", no_wrap=True, ratio=2)
    t.add_column("ms", justify="right", no_wrap=True)
    for s in ordered(steps):
        style = "dim" if s.actor == "server" else ("cyan" if s.actor == "harness" else None)
        colour = "red" if s.errno else ("grey50" if s.actor == "server" else "blue")
        t.add_row(f"+{s.until - t0:.3f}", f"[{colour}]{bar(s.t, s.until, t0, total)}[/]",
                  esc(who(s)), esc(s.action), f"[red]{esc(s.result)}[/]" if s.errno
                  else esc(s.result), "" if s.ms is None else f"{s.ms:.1f}", style=style)
    return t
