"""Running cells: a fresh lab per cell, the scenario's steps, the verdict, and the
evidence gathered into an :class:`~wraplab.engine.cells.Outcome` (the server's events are
read once at the end and merged into the transcript)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from wraplab import targets
from wraplab.engine.actors import HarnessError
from wraplab.engine.axes import server_options
from wraplab.engine.cells import Cell, Outcome, Step, plain
from wraplab.engine.context import Context
from wraplab.engine.cores import Cores
from wraplab.engine.records import kept_or_closed, process_records, run_info
from wraplab.engine.scenarios import Scenario, get_scenario
from wraplab.engine.verdicts import ERROR, NOT_RUN, Judgement
from wraplab.targets import Target, TargetError

__all__ = ["auto_jobs", "exclusive_jobs", "interleaved", "make_lab", "run_cell", "run_cells"]


def make_lab(kind: str, base: str = "bookworm"):
    from wraplab import labs

    if kind == "docker":
        return labs.DockerLab(base=base)
    if kind == "local":
        return labs.LocalLab()
    raise ValueError(f"unknown lab {kind!r} (docker or local)")


def run_cell(cell: Cell, *, scenario: Scenario | None = None, lab=None,
             target: Target | None = None, keep: bool = False) -> Outcome:
    """Start the target in a fresh lab, run the scenario's steps, judge, collect evidence.
    A cell the target cannot run (``cell.not_run``) is an outcome ``not-run`` at once; with
    the events hidden (``WRAPLAB_NO_EVENTS``) the judge decides from the actors alone.
    ``keep``: leave the lab (and its server) running afterwards, labelled so that
    ``wraplab clean`` removes it; ``outcome.lab_info`` says where it is."""
    if cell.not_run:
        return Outcome(cell=cell, verdict=NOT_RUN, reason=cell.not_run)
    scenario = scenario or get_scenario(cell.scenario)
    target = target or targets.get(cell.target)
    hidden = targets.events_hidden() and target.has_events
    if hidden:
        target = target.without_events()
    t0 = time.time()
    timings: dict = {}
    ctx = None
    run = None
    cores = Cores() if scenario.exclusive else None  # held until its attack is over
    judgement = Judgement(ERROR, "the scenario did not finish")
    error = None
    server: dict = {}
    log: list[dict] = []
    events: list[dict] = []
    processes: list[dict] = []
    lab_info: dict = {}
    try:
        if cores is not None:
            cores.hold()  # the cell's time starts once it has the cores
            timings["cores_wait_s"] = round(time.time() - t0, 3)
            t0 = time.time()
        target.prepare()
        lab = lab or make_lab(cell.lab, cell.base)
        spec = target.server_spec(
            placement=cell.placement, socket=cell.socket, transport=cell.transport,
            lab=cell.lab, **server_options(scenario.server))
        if keep:
            spec = dataclasses.replace(spec, keep=True)
        with kept_or_closed(lab.start(spec), keep) as run:
            timings["setup_s"] = round(time.time() - t0, 3)
            ctx = Context(scenario, cell, run, target, cores)
            if hidden:
                ctx.metrics["events_hidden"] = True
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
                for h in ctx.pending:
                    try:
                        h.kill()
                    except Exception:
                        pass
            timings["scenario_s"] = round(time.time() - t1, 3)
            for session in ctx.sessions:
                try:
                    events.extend(ctx.final_events(session))
                except Exception:
                    pass
            try:
                server = plain(run.server_info())
            except Exception as exc:
                server = {"error": repr(exc)}
            try:
                log = list(run.server_log())
            except Exception:
                log = []
            processes = process_records(run.transcript)
            lab_info = run_info(run, keep)
    except TargetError as exc:
        judgement = Judgement(ERROR, f"target: {exc}")
    except Exception as exc:
        judgement = Judgement(ERROR, f"lab: {type(exc).__name__}: {exc}")
        error = traceback.format_exc()
    finally:
        if cores is not None:
            cores.release()
            timings["cores_held_s"] = cores.held_s
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
        processes=processes, lab_info=lab_info,
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


#: ``-j auto``'s cells per core. Most of a cell is waiting (accept windows, budgets, the
#: server's cleanup), so one per core leaves the cores idle. On 2 cores (2026-12-01): the
#: whole catalog on both labs took 455 s at 2 cells at a time, 348 s at 4; the 800 cells
#: that are not exclusive, interleaved (:func:`interleaved`), 169 s at 4, 155 s at 6 and
#: 147 s at 8, every cell as expected in each run.
CELLS_PER_CORE = 4


def cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def auto_jobs() -> int:
    """``-j auto``: :data:`CELLS_PER_CORE` cells per core this process may run on.
    Exclusive cells (floods, races, leak counts) still run afterwards, and only one attacks
    at a time, so no flood shares the CPU with another cell's attack."""
    return cores() * CELLS_PER_CORE


def exclusive_jobs(jobs: int) -> int:
    """Exclusive cells at a time: ``jobs``, but at most one per core. Only one attacks at a
    time, but the others' waiting is not idle (a server expiring 1,100 wraps, a reuse
    check): at eight at a time a reconnect-flood cell lost its race in CI (2026-12-01;
    perhaps only the chance that five handoffs left, since twelve: ``FLOOD_HANDOFFS``),
    and the pass is bound by the attacks anyway (117.6 s held of its 118 s)."""
    return max(1, min(jobs, cores()))


def interleaved(items: list, scenario_of: Callable[[Any], str]) -> list:
    """``items`` (cells, or pytest items of cells) taken one scenario at a time, round robin
    in their order: a scenario's cells mostly wait (windows, budgets) or mostly work (short
    attacks, lab set-up), so running them in catalog order leaves the cores idle through
    the waiting ones and queues the working ones; mixed, the waits overlap the work."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(scenario_of(item), []).append(item)
    queues = [list(reversed(g)) for g in groups.values()]
    out: list = []
    while queues:
        out.extend(q.pop() for q in queues)
        queues = [q for q in queues if q]
    return out


def run_cells(cells: list[Cell], *, jobs: int = 1,
              on_done: Callable[[Outcome], None] | None = None,
              on_start: Callable[[Cell], None] | None = None,
              lab_for: Callable[[int], Any] | None = None) -> list[Outcome]:
    """Run ``cells`` with ``jobs`` at a time (each cell its own lab, in a container checked
    clean and reused where one is idle: :mod:`wraplab.labs.warm`); cells of an
    ``EXCLUSIVE`` scenario (floods) run afterwards, :func:`exclusive_jobs` at a time, one
    attacking at a time (:mod:`wraplab.engine.cores`): the others start, or wait for
    windows to end, meanwhile. Each pass takes its cells :func:`interleaved` by scenario.
    Each target is prepared (``install.build``) first; a failure raises
    :class:`~wraplab.targets.TargetError`.
    ``on_start(cell)`` and ``on_done(outcome)`` are called as each cell starts and ends
    (progress displays). ``lab_for(i)``: the lab for ``cells[i]`` (default: the cell's
    own, :func:`make_lab`), e.g. one running a scratch copy of the server."""
    from concurrent.futures import ThreadPoolExecutor

    from wraplab.labs import warm

    scenarios = {s: get_scenario(s) for s in {c.scenario for c in cells}}
    outcomes: dict[int, Outcome] = {}
    lock = threading.Lock()

    for name in dict.fromkeys(c.target for c in cells if not c.not_run):
        targets.get(name).prepare()  # install.build once, before any cell (TargetError)

    def one(i: int) -> None:
        if on_start:
            with lock:
                on_start(cells[i])
        out = run_cell(cells[i], scenario=scenarios[cells[i].scenario],
                       lab=lab_for(i) if lab_for else None)
        with lock:
            outcomes[i] = out
            if on_done:
                on_done(out)

    def scenario_of(i: int) -> str:
        return cells[i].scenario

    shared = interleaved([i for i, c in enumerate(cells) if not scenarios[c.scenario].exclusive],
                         scenario_of)
    alone = interleaved([i for i, c in enumerate(cells) if scenarios[c.scenario].exclusive],
                        scenario_of)
    with warm.reuse():  # containers checked clean serve the next cell of the same kind
        for cells_of_pass, workers in ((shared, max(1, jobs)), (alone, exclusive_jobs(jobs))):
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for fut in [pool.submit(one, i) for i in cells_of_pass]:
                    fut.result()
    return [outcomes[i] for i in range(len(cells))]
