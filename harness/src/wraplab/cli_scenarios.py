"""``wraplab list``, ``wraplab run SCENARIO`` and ``wraplab matrix``: the scenario commands.

:func:`register` adds them to the ``wraplab`` command's subparsers (cli.py); each sets
``func`` to a callable taking the parsed arguments and returning the exit code.
"""

from __future__ import annotations

import argparse
import sys
import time

from wraplab import engine, report
from wraplab.targets import PLACEMENTS, PROFILES, SOCKETS, TRANSPORTS


def _say(msg: str) -> None:
    print(f"wraplab: {msg}", file=sys.stderr, flush=True)


def resolve_labs(wanted: list[str] | None, base: str) -> list[str]:
    """The labs to run in: ``auto`` (default) is Docker where it can be had, else the local
    lab (said on stderr); ``both`` is Docker and local."""
    from wraplab import labs

    wanted = wanted or ["auto"]
    out: list[str] = []
    for w in wanted:
        names = ["docker", "local"] if w == "both" else [w]
        for name in names:
            if name in ("auto", "docker"):
                problem = labs.DockerLab(base=base).problem()
                if problem is None:
                    out.append("docker")
                    continue
                _say(f"the Docker lab cannot run here ({problem}); "
                     "falling back to the local lab")
                name = "local"
            if name == "local":
                problem = labs.LocalLab().problem()
                if problem is not None:
                    raise SystemExit(f"wraplab: the local lab cannot run here either: {problem}")
            if name not in out:
                out.append(name)
    return out


def prepare_labs(labs_: list[str], base: str) -> None:
    """Build the Docker lab image once, up front (with the base bootstrapped offline when
    missing), so parallel cells do not race to build it and the wait is said."""
    if "docker" not in labs_:
        return
    from wraplab import labs

    t0 = time.time()
    img = labs.DockerLab(base=base).image(log=lambda m: _say(m))
    took = time.time() - t0
    if took > 1:
        _say(f"lab image {getattr(img, 'tag', img)} ready in {took:.0f} s")


def _add_common(p: argparse.ArgumentParser, *, many: bool) -> None:
    nargs = {"action": "append"} if many else {}
    p.add_argument("--lab", choices=("auto", "docker", "local", "both"), **nargs,
                   help="where actors run (default auto: Docker, else local)")
    p.add_argument("--base", choices=engine.BASES, default="bookworm",
                   help="image base for the Docker lab (default bookworm)")
    p.add_argument("--profile", choices=PROFILES, action="append",
                   help="server profile(s) (default: all)")
    p.add_argument("--socket", choices=SOCKETS, action="append",
                   help="socket kind(s) (default: all the scenario has)")
    p.add_argument("--placement", choices=PLACEMENTS, action="append",
                   help="server placement(s) (default: all the scenario has)")
    p.add_argument("--transport", choices=TRANSPORTS, action="append",
                   help="API transport(s) (default: all the scenario has)")


def cmd_list(args) -> int:
    try:
        scenarios = engine.discover()
    except engine.ScenarioError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
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


def cmd_run(args) -> int:
    try:
        scenario = engine.get_scenario(args.scenario)
    except engine.ScenarioError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    labs_ = resolve_labs([args.lab] if args.lab else None, args.base)
    if not args.profile:
        args.profile = ["agentsh"]
    if not args.socket:
        args.socket = [scenario.sockets[0]]
    prepare_labs(labs_[:1], args.base)
    cells = _cells(args, [scenario], labs_[:1])
    if not cells:
        why = scenario.lab_notes.get(labs_[0])
        print(f"wraplab: {scenario.slug} does not run in the {labs_[0]} lab: {why}" if why else
              "wraplab: no cell matches those options (see `wraplab list`)", file=sys.stderr)
        return 2
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
    labs_ = resolve_labs(args.lab, args.base)
    cells = _cells(args, scenarios, labs_)
    if not cells:
        print("wraplab: no cell to run", file=sys.stderr)
        return 2
    prepare_labs(labs_, args.base)
    _say(f"{len(cells)} cells ({len(scenarios)} scenarios, labs {', '.join(labs_)}, "
         f"{args.jobs} at a time)")
    t0 = time.time()
    outcomes = _run_with_progress(cells, args.jobs, rich=report.use_rich(sys.stderr))
    wall = time.time() - t0
    report.print_matrix(outcomes, wall)
    report.write_reports(outcomes, wall=wall, json_path=args.json, junit_path=args.junit,
                         markdown_path=args.markdown, title=args.title or
                         f"wraplab verdicts ({', '.join(labs_)}, base {args.base})")
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


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario slug (see `wraplab list`)")
    _add_common(p, many=False)
    p.epilog = ("Without --profile the agentsh profile is run; without --socket the "
                "scenario's first socket kind; every placement/transport it has otherwise.")


def _configure_matrix(p: argparse.ArgumentParser) -> None:
    _add_common(p, many=True)
    p.add_argument("--scenario", action="append", help="only these scenario(s)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="cells at a time (default 2)")
    p.add_argument("--json", metavar="FILE", help="write the outcomes as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown verdict table")
    p.add_argument("--title", help="title of the Markdown table")


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
