"""Progress of run and matrix: one plain line per finished cell off a terminal (CI logs), a
live display with done/running/failed and the time left on one; the time-left estimate."""

from __future__ import annotations

import io
import re

import pytest
from harness_support import make_outcome
from wraplab import timeline
from wraplab.progress import Progress, eta_seconds


def test_eta_counts_cells_not_started_and_what_running_ones_still_need():
    assert eta_seconds([], 10, [], 2, 100.0) is None  # nothing finished: no estimate
    # mean 10 s; 4 not started, one running for 4 s (needs 6 more); 2 at a time
    assert eta_seconds([8.0, 12.0], 4, [96.0], 2, 100.0) == pytest.approx((40 + 6) / 2)
    # a running cell past the mean needs nothing more (never negative)
    assert eta_seconds([10.0], 0, [50.0], 1, 100.0) == 0


def test_plain_progress_is_one_line_per_finished_cell():
    buf = io.StringIO()
    good, bad = make_outcome(), make_outcome("vulnerable", "defended", profile="permissive")
    with Progress(2, rich=False, stream=buf) as p:
        for o in (good, bad):
            p.started(o.cell)
            p.finished(o)
        assert (p.done, p.failed, len(p.running)) == (2, 1, 0)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[  1/2\] wrong-uid\[agentsh-notify-docker\] +defended +ok 1\.5s",
                        lines[0])
    assert "vulnerable" in lines[1] and "MISMATCH (expected defended)" in lines[1]


def test_live_progress_says_done_running_failed_and_time_left():
    buf = io.StringIO()
    a, b = make_outcome(), make_outcome("vulnerable", "defended", profile="permissive")
    with Progress(3, jobs=2, rich=True, stream=buf) as p:
        p.started(a.cell)
        p.started(b.cell)
        assert p.status().startswith("0/3 done, 2 running, 0 failed, ETA ?")
        p.finished(a)
        p.finished(b)
        assert re.match(r"2/3 done, 0 running, 1 failed, ETA 0:0\d", p.status())
    out = buf.getvalue()
    assert "MISMATCH" in out and "2/3 done, 0 running, 1 failed" in out


def test_the_compact_timeline_has_one_row_per_step():
    from rich.console import Console

    o = make_outcome()
    o.steps.append(o.steps[0].__class__(t=1.2, actor="server", user="server", uid=0,
                                        action="event wrap_init " + "x" * 300))
    con = Console(file=io.StringIO(), width=120)
    con.print(timeline.rich_table(o.steps, "t"))
    rows = [line for line in con.file.getvalue().splitlines() if line.startswith("│")]
    assert len(rows) == 2 and "…" in rows[1]
