"""``wraplab list``, ``wraplab run SCENARIO`` and ``wraplab matrix``: the scenario commands.

:func:`register` adds them to the ``wraplab`` command's subparsers (cli.py); each sets
``func`` to a callable taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import docker.errors

from wraplab import engine, report
from wraplab.targets import PLACEMENTS, PROFILES, SOCKETS, TRANSPORTS


def _say(msg: str) -> None:
    print(f"wraplab: {msg}", file=sys.stderr, flush=True)


#: Exit code when a lab the user named cannot run here (2 stays argparse's usage error).
EXIT_LAB_UNAVAILABLE = 3


class LabUnavailable(Exception):
    """A lab the user asked for by name cannot run here (the message says why)."""


@dataclass
class LabChoice:
    """Which labs were asked for, which will run, and why any was left out."""

    requested: list[str]
    labs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"requested": self.requested, "ran": self.labs, "notes": self.notes}


def _docker_problem(base: str) -> str | None:
    from wraplab import labs

    return labs.DockerLab(base=base).problem()


def _local_problem() -> str | None:
    from wraplab import labs

    return labs.LocalLab().problem()


def resolve_labs(wanted: list[str] | None, base: str) -> LabChoice:
    """The labs to run in. ``auto`` (the default) is Docker where it can be had, else the
    local lab, and says so (on stderr and in the reports). A lab named explicitly
    (``docker``, ``local``, ``both``) is never swapped for another: when it cannot run here,
    :class:`LabUnavailable` says why."""
    choice = LabChoice(requested=list(wanted or ["auto"]))
    for w in choice.requested:
        names = ["docker", "local"] if w == "both" else [w]
        for name in names:
            if name in choice.labs:
                continue
            if name == "auto":
                problem = _docker_problem(base)
                if problem is None:
                    name = "docker"
                else:
                    note = (f"--lab auto: the Docker lab cannot run here ({problem}); "
                            "the local lab runs instead")
                    _say(note)
                    choice.notes.append(note)
                    name = "local"
                if name in choice.labs:
                    continue
            problem = _docker_problem(base) if name == "docker" else _local_problem()
            if problem is not None:
                raise LabUnavailable(f"the {name} lab cannot run here: {problem}")
            choice.labs.append(name)
    return choice


def prepare_labs(choice: LabChoice, base: str) -> None:
    """Build the Docker lab image once, up front (with the base bootstrapped offline when
    missing), so parallel cells do not race to build it and the wait is said. When it
    cannot be had, ``--lab auto`` falls back to the local lab (said); a Docker lab asked
    for by name raises :class:`LabUnavailable`."""
    if "docker" not in choice.labs:
        return
    from wraplab import images, labs

    t0 = time.time()
    try:
        img = labs.DockerLab(base=base).image(log=lambda m: _say(m))
    except (images.ImageError, labs.LabError, images.paths.SourcesMissing,
            docker.errors.DockerException) as exc:
        problem = f"no lab image for {base}: {_one_line(exc)}"
        if {"docker", "both"} & set(choice.requested):
            raise LabUnavailable(f"the docker lab cannot run here: {problem}") from exc
        choice.labs.remove("docker")
        if "local" not in choice.labs:
            local = _local_problem()
            if local is not None:
                raise LabUnavailable(f"the docker lab cannot run here ({problem}), and the "
                                     f"local lab cannot either: {local}") from exc
            choice.labs.append("local")
        note = f"--lab auto: {problem}; the local lab runs instead"
        _say(note)
        choice.notes.append(note)
        return
    took = time.time() - t0
    if took > 1:
        _say(f"lab image {getattr(img, 'tag', img)} ready in {took:.0f} s")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


LAB_HELP = ("where actors run: auto (the default) is the Docker lab where it can run, else "
            "the local lab, and the reports say which ran; docker, local and both are never "
            "swapped for another lab: when one cannot run here the command fails (exit 3)")


def _add_common(p: argparse.ArgumentParser, *, many: bool) -> None:
    """The options ``run`` (one cell or a few: ``many=False``) and ``matrix`` share; their
    defaults differ, and each help text says the command's own."""
    nargs = {"action": "append"} if many else {}
    p.add_argument("--lab", choices=("auto", "docker", "local", "both"), **nargs,
                   help=LAB_HELP + ("; repeatable" if many else
                                    "; run takes the first lab of both"))
    p.add_argument("--base", choices=engine.BASES, default="bookworm",
                   help="image base for the Docker lab (default bookworm)")
    p.add_argument("--profile", choices=PROFILES, action="append",
                   help="server profile(s), repeatable (default: " +
                   ("every profile)" if many else "agentsh)"))
    p.add_argument("--socket", choices=SOCKETS, action="append",
                   help="socket kind(s), repeatable (default: " +
                   ("every kind the scenario has)" if many else
                    "the scenario's first socket kind)"))
    p.add_argument("--placement", choices=PLACEMENTS, action="append",
                   help="server placement(s), repeatable (default: every one the scenario has)")
    p.add_argument("--transport", choices=TRANSPORTS, action="append",
                   help="API transport(s), repeatable (default: every one the scenario has)")


#: How many groups ``wraplab list --groups`` packs the non-exclusive scenarios into, per lab.
DEFAULT_GROUPS = 4


def scenario_groups(scenarios, *, parts: int = DEFAULT_GROUPS,
                    labs: tuple[str, ...] = engine.LABS) -> list[dict]:
    """CI groups derived from the scenario files, per lab: the exclusive scenarios (floods
    and races, which need the machine to themselves) in one group ``exclusive``, the others
    packed into ``parts``
    groups of about the same number of cells (largest first onto the lightest group).
    Deterministic: the same scenario files give the same groups."""
    out: list[dict] = []
    for lab in labs:
        here = [(s, len(s.cells(lab=lab))) for s in scenarios]
        here = [(s, n) for s, n in here if n]
        alone = [(s, n) for s, n in here if s.exclusive]
        if alone:
            out.append({"lab": lab, "group": "exclusive", "scenarios": [s.slug for s, _ in alone],
                        "cells": sum(n for _, n in alone)})
        rest = sorted(((s, n) for s, n in here if not s.exclusive),
                      key=lambda x: (-x[1], x[0].order, x[0].slug))
        k = max(1, min(parts, len(rest)))
        bins: list[list] = [[] for _ in range(k)]
        loads = [0] * k
        for s, n in rest:
            i = loads.index(min(loads))
            bins[i].append(s)
            loads[i] += n
        for i, (members, load) in enumerate(zip(bins, loads), 1):
            if not members:
                continue
            members.sort(key=lambda s: (s.order, s.slug))
            out.append({"lab": lab, "group": f"set{i}", "scenarios": [s.slug for s in members],
                        "cells": load})
    return out


def ci_matrix(groups: list[dict], bases: tuple[str, ...] = engine.BASES) -> list[dict]:
    """A GitHub Actions ``matrix.include`` list: every Docker group once per image base,
    every local group once (the local lab runs on the runner; its base is the first)."""
    out = []
    for g in groups:
        for base in (bases if g["lab"] == "docker" else bases[:1]):
            out.append({"lab": g["lab"], "base": base, "group": g["group"],
                        "scenarios": ",".join(g["scenarios"]), "cells": g["cells"]})
    return out


def scenario_record(s) -> dict:
    return {"slug": s.slug, "title": s.title, "order": s.order, "exclusive": s.exclusive,
            "sockets": list(s.sockets), "placements": list(s.placements),
            "transports": list(s.transports), "labs": list(s.labs),
            "lab_notes": dict(s.lab_notes),
            "cells": {lab: len(s.cells(lab=lab)) for lab in engine.LABS}}


def cmd_list(args) -> int:
    try:
        scenarios = engine.discover()
    except engine.ScenarioError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    if args.ci_matrix:
        data = {"include": ci_matrix(scenario_groups(scenarios, parts=args.groups or
                                                     DEFAULT_GROUPS))}
        print(json.dumps(data, separators=(",", ":")))
        return 0
    if args.groups is not None:
        if args.groups < 1:
            print("wraplab: --groups needs a number >= 1", file=sys.stderr)
            return 2
        groups = scenario_groups(scenarios, parts=args.groups)
        if args.lab:
            groups = [g for g in groups if g["lab"] in args.lab]
        print(json.dumps(groups, separators=(",", ":")) if args.compact else
              json.dumps(groups, indent=1))
        return 0
    if args.json:
        data = [scenario_record(s) for s in scenarios]
        print(json.dumps(data, separators=(",", ":")) if args.compact else
              json.dumps(data, indent=1))
        return 0
    for line in report.list_lines(scenarios):
        print(line)
    if args.verbose:
        for s in scenarios:
            print(f"\n== {s.slug} ==\n{s.doc}")
    return 0


def _cells(args, scenarios, labs_: list[str]) -> list[engine.Cell]:
    cells: list[engine.Cell] = []
    for lab in labs_:
        cells += engine.make_cells(scenarios, lab=lab, base=args.base, profiles=args.profile,
                                   sockets=args.socket, placements=args.placement,
                                   transports=args.transport)
    return cells


def _choose_labs(wanted: list[str] | None, base: str, *, first_only: bool = False) -> LabChoice:
    if first_only and wanted:  # run: the first lab of both is Docker; local need not work
        wanted = ["docker" if w == "both" else w for w in wanted]
    choice = resolve_labs(wanted, base)
    if first_only:
        choice.labs = choice.labs[:1]
    prepare_labs(choice, base)
    return choice


def cmd_run(args) -> int:
    try:
        scenario = engine.get_scenario(args.scenario)
    except engine.ScenarioError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    try:
        choice = _choose_labs([args.lab] if args.lab else None, args.base, first_only=True)
    except LabUnavailable as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return EXIT_LAB_UNAVAILABLE
    labs_ = choice.labs
    if not args.profile:
        args.profile = ["agentsh"]
    if not args.socket:
        args.socket = [scenario.sockets[0]]
    cells = _cells(args, [scenario], labs_)
    if not cells:
        why = scenario.lab_notes.get(labs_[0])
        print(f"wraplab: {scenario.slug} does not run in the {labs_[0]} lab: {why}" if why else
              "wraplab: no cell matches those options (see `wraplab list`)", file=sys.stderr)
        return 2
    _say(f"lab: {labs_[0]}" + (f" (asked for {'/'.join(choice.requested)})"
                               if choice.requested != labs_ else ""))
    failed = 0
    for i, cell in enumerate(cells):
        if i:
            print()
        out = engine.run_cell(cell, scenario=scenario)
        report.print_outcome(out)
        failed += not out.ok
    return 1 if failed else 0


def cmd_matrix(args) -> int:
    try:
        scenarios = engine.discover()
    except engine.ScenarioError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    if args.scenario:
        unknown = set(args.scenario) - {s.slug for s in scenarios}
        if unknown:
            print(f"wraplab: unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        scenarios = [s for s in scenarios if s.slug in args.scenario]
    try:
        choice = _choose_labs(args.lab, args.base)
    except LabUnavailable as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return EXIT_LAB_UNAVAILABLE
    labs_ = choice.labs
    cells = _cells(args, scenarios, labs_)
    if not cells:
        print("wraplab: no cell to run", file=sys.stderr)
        return 2
    _say(f"{len(cells)} cells ({len(scenarios)} scenarios, labs {', '.join(labs_)}, "
         f"{args.jobs} at a time)")
    t0 = time.time()
    outcomes = _run_with_progress(cells, args.jobs, rich=report.use_rich(sys.stderr))
    wall = time.time() - t0
    report.print_matrix(outcomes, wall)
    for note in choice.notes:
        print(f"note: {note}")
    report.write_reports(outcomes, wall=wall, json_path=args.json, junit_path=args.junit,
                         markdown_path=args.markdown, title=args.title or
                         f"wraplab verdicts ({', '.join(labs_)}, base {args.base})",
                         labs=choice.as_dict())
    counts = report.summary_counts(outcomes)
    return 0 if counts["ok"] == counts["cells"] else 1


def _run_with_progress(cells, jobs: int, *, rich: bool):
    if rich:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), transient=False, console=None) as prog:
            task = prog.add_task("cells", total=len(cells))

            from rich.markup import escape

            def done(o):
                mark = "" if o.ok else f"  [red]{o.verdict} (expected {o.cell.expectation})[/]"
                prog.update(task, advance=1, description=escape(o.cell.name[:60]) + mark)
                if not o.ok:
                    prog.console.print(f"[red]MISMATCH[/] {escape(o.cell.name)}: {o.verdict}"
                                       f" (expected {o.cell.expectation})", highlight=False)

            return engine.run_cells(cells, jobs=jobs, on_done=done)
    n = [0]

    def line(o):
        n[0] += 1
        flag = "ok" if o.ok else f"MISMATCH (expected {o.cell.expectation})"
        print(f"[{n[0]:>3}/{len(cells)}] {o.cell.name:<58} {str(o.verdict):<10} {flag} "
              f"{o.timings.get('total_s', 0):.1f}s", file=sys.stderr, flush=True)

    return engine.run_cells(cells, jobs=jobs, on_done=line)


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="print each docstring too")
    p.add_argument("--json", action="store_true",
                   help="the scenarios as JSON (slug, title, sockets, labs, cells per lab...)")
    p.add_argument("--groups", type=int, nargs="?", const=DEFAULT_GROUPS, metavar="N",
                   help="CI groups as JSON, per lab: the exclusive scenarios together, the rest "
                   f"in N groups of about equal cell counts (default N={DEFAULT_GROUPS})")
    p.add_argument("--lab", choices=engine.LABS, action="append",
                   help="with --groups: only this lab's groups (repeatable)")
    p.add_argument("--compact", action="store_true", help="JSON on one line (for CI outputs)")
    p.add_argument("--ci-matrix", action="store_true",
                   help="the groups as a GitHub Actions matrix (one line of JSON: include = "
                   "lab, base, group, scenarios): every Docker group per image base")


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario slug (see `wraplab list`)")
    _add_common(p, many=False)
    p.epilog = ("Exit status: 0 every cell as expected, 1 a cell differed, 2 bad usage, "
                "3 the lab asked for cannot run here.")


def _jobs(text: str) -> int:
    """``-j N`` (N >= 1) or ``-j auto`` (the cores this process may use)."""
    if text == "auto":
        return engine.runner.auto_jobs()
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: want a number or auto") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want at least 1")
    return jobs


def _configure_matrix(p: argparse.ArgumentParser) -> None:
    _add_common(p, many=True)
    p.add_argument("--scenario", action="append", help="only these scenario(s)")
    p.add_argument("-j", "--jobs", type=_jobs, default=2,
                   help="cells at a time, or auto: one per core (default 2); exclusive "
                        "cells (floods, races, leak counts) always run alone")
    p.add_argument("--json", metavar="FILE", help="write the outcomes as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown verdict table")
    p.add_argument("--title", help="title of the Markdown table")
    p.epilog = ("Exit status: 0 every cell as expected, 1 a cell differed, 2 bad usage, "
                "3 the lab asked for cannot run here.")


COMMANDS = (
    ("list", "the scenarios, one line each", _configure_list, cmd_list),
    ("run", "run one scenario against one profile and show what happened", _configure_run,
     cmd_run),
    ("matrix", "run every scenario x profile cell and print the verdict table",
     _configure_matrix, cmd_matrix),
)


def register(subparsers) -> None:
    """Add ``list``, ``run`` and ``matrix`` to an argparse subparsers object; each parser
    gets ``func`` (and ``handler``) = the command, ``(args) -> exit code``."""
    for name, help_, configure, handler in COMMANDS:
        p = subparsers.add_parser(name, help=help_, description=help_)
        configure(p)
        p.set_defaults(func=handler, handler=handler)


def _register_with_cli() -> None:
    """Register with ``wraplab.cli`` (its :func:`subcommand` registry) when imported from
    there (cli.PLUGIN_MODULES)."""
    cli = sys.modules.get("wraplab.cli")
    if cli is None or not hasattr(cli, "subcommand"):
        return
    for name, help_, configure, handler in COMMANDS:
        cli.subcommand(name, help=help_, configure=configure)(handler)


_register_with_cli()


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m wraplab.cli_scenarios``) until cli.py wires us in."""
    ap = argparse.ArgumentParser(prog="wraplab")
    sub = ap.add_subparsers(dest="command", required=True)
    register(sub)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
