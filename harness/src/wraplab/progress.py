"""Progress of ``wraplab run`` and ``wraplab matrix``: cells done, running, failed, and an
estimate of the time left. On a terminal (stderr) a live rich display; otherwise (CI logs)
one plain line per finished cell::

    [  3/40] wrong-uid[agentsh-notify-docker]                   defended   ok 12.3s

The display goes to stderr, so stdout keeps only the results (the transcript, the table).
Use as a context manager, calling :meth:`Progress.started` and :meth:`Progress.finished`
(``engine.run_cells(on_start=, on_done=)``).
"""

from __future__ import annotations

import sys
import threading
import time

from wraplab.engine import Cell, Outcome


def eta_seconds(durations: list[float], remaining: int, running: list[float], jobs: int,
                now: float) -> float | None:
    """Seconds left: the mean cell time so far times the cells not started, spread over
    ``jobs``, plus what the running cells still need (each at least nothing); None before a
    first cell ended."""
    if not durations:
        return None
    mean = sum(durations) / len(durations)
    left_running = sum(max(0.0, mean - (now - t)) for t in running)
    return (remaining * mean + left_running) / max(1, jobs)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Counts and display of one command's cells (thread-safe)."""

    def __init__(self, total: int, *, jobs: int = 1, rich: bool | None = None, stream=None,
                 label: str = "cells"):
        self.total = total
        self.jobs = jobs
        self.stream = stream or sys.stderr
        self.label = label
        if rich is None:
            from wraplab.report import use_rich

            rich = use_rich(self.stream)
        self.rich = rich
        self.done = 0
        self.failed = 0
        self.running: dict[int, float] = {}  # id(cell) -> start (epoch)
        self.durations: list[float] = []
        self._lock = threading.Lock()
        self._live = None
        self._task = None

    # -- numbers ------------------------------------------------------------------------
    def eta(self) -> float | None:
        now = time.time()
        remaining = self.total - self.done - len(self.running)
        return eta_seconds(self.durations, remaining, list(self.running.values()), self.jobs,
                           now)

    def status(self) -> str:
        return (f"{self.done}/{self.total} done, {len(self.running)} running, "
                f"{self.failed} failed, ETA {_clock(self.eta())}")

    # -- events -------------------------------------------------------------------------
    def started(self, cell: Cell) -> None:
        with self._lock:
            self.running[id(cell)] = time.time()
            self._refresh(cell.name)

    def finished(self, out: Outcome) -> None:
        with self._lock:
            start = self.running.pop(id(out.cell), None)
            took = out.timings.get("total_s") or (time.time() - start if start else 0.0)
            self.durations.append(float(took))
            self.done += 1
            not_run = str(out.verdict) == "not-run"  # the target lacks what the cell needs
            self.failed += not out.ok and not not_run
            if self.rich:
                self._rich_done(out)
            else:
                flag = "ok" if out.ok else f"(not run: {out.reason})" if not_run else \
                    f"MISMATCH (expected {out.cell.expectation})"
                print(f"[{self.done:>3}/{self.total}] {out.cell.name:<58} "
                      f"{str(out.verdict):<10} {flag} {float(took):.1f}s",
                      file=self.stream, flush=True)

    # -- rich ---------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        if self.rich:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._live = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                console=Console(file=self.stream), transient=False)
            self._live.__enter__()
            self._task = self._live.add_task(self.label, total=self.total,
                                             status=self.status())
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    def _refresh(self, description: str | None = None) -> None:
        if self._live is None:
            return
        from rich.markup import escape

        fields = {"status": self.status()}
        if description:
            fields["description"] = escape(description[:40])
        self._live.update(self._task, completed=self.done, **fields)

    def _rich_done(self, out: Outcome) -> None:
        from rich.markup import escape

        self._refresh(out.cell.name)
        if not out.ok and str(out.verdict) != "not-run" and self._live is not None:
            self._live.console.print(f"[red]MISMATCH[/] {escape(out.cell.name)}: {out.verdict}"
                                     f" (expected {out.cell.expectation})", highlight=False)
