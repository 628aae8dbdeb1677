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
from wraplab import targets as targets_
from wraplab.progress import Progress
from wraplab.targets import NO_EVENTS_ENV, PLACEMENTS, PROFILES, SOCKETS, TRANSPORTS


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
    p.add_argument("--target", action="append", metavar="FILE|NAME",
                   help="the server(s) under test, repeatable: a target file (TOML, "
                   "docs/targets.md) or a built-in target wrapref:<profile> (`wraplab "
                   "targets`)")
    p.add_argument("--profile", choices=PROFILES, action="append",
                   help="server profile(s), repeatable: shorthand for --target "
                   "wrapref:<profile>; without --target (default: " +
                   ("every profile)" if many else "agentsh)"))
    p.add_argument("--no-events", action="store_true",
                   help="hide the server's events from the judge: every verdict from what "
                   f"the actors saw (also: {NO_EVENTS_ENV}=1)")
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


def chosen_targets(args, *, default: list[str] | None = None) -> list[targets_.Target]:
    """``--target`` and ``--profile`` (shorthand for ``wrapref:<profile>``), each once, in
    the order given; ``default`` profiles when neither is given (None: every profile).
    Raises :class:`~wraplab.targets.TargetError` for a target that cannot be had. Sets
    the events switch for ``--no-events``."""
    import os

    if getattr(args, "no_events", False):
        os.environ[NO_EVENTS_ENV] = "1"
    names = list(args.target or [])
    names += [f"wrapref:{p}" for p in args.profile or []]
    if not names:
        names = [f"wrapref:{p}" for p in (default or PROFILES)]
    out: dict[str, targets_.Target] = {}
    for name in names:
        t = targets_.get(name)
        if t.name in out and out[t.name] != t:
            raise targets_.TargetError(f"two different targets are named {t.name!r}")
        out[t.name] = targets_.register(t) if t.source else t
    return list(out.values())


def _cells(args, scenarios, labs_: list[str], chosen=None) -> list[engine.Cell]:
    cells: list[engine.Cell] = []
    for lab in labs_:
        cells += engine.make_cells(scenarios, lab=lab, base=args.base, targets=chosen,
                                   profiles=args.profile, sockets=args.socket,
                                   placements=args.placement, transports=args.transport)
    return cells


def _say_targets(chosen) -> None:
    hidden = targets_.events_hidden()
    for t in chosen:
        _say(f"target {t.name}" + (f" ({t.source})" if t.source else "")
             + (": events hidden from the judge" if hidden and t.has_events else ""))


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
    repeat = getattr(args, "repeat", 1)
    if repeat < 1:
        print("wraplab: --repeat needs a number >= 1", file=sys.stderr)
        return 2
    if getattr(args, "keep", False) and repeat > 1:
        print("wraplab: --keep keeps the lab of one run; it takes no --repeat", file=sys.stderr)
        return 2
    try:
        choice = _choose_labs([args.lab] if args.lab else None, args.base, first_only=True)
    except LabUnavailable as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return EXIT_LAB_UNAVAILABLE
    labs_ = choice.labs
    try:
        chosen = chosen_targets(args, default=["agentsh"])
    except targets_.TargetError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    if not args.socket:
        args.socket = [scenario.sockets[0]]
    cells = _cells(args, [scenario], labs_, chosen)
    if not cells:
        why = scenario.lab_notes.get(labs_[0])
        print(f"wraplab: {scenario.slug} does not run in the {labs_[0]} lab: {why}" if why else
              "wraplab: no cell matches those options (see `wraplab list`)", file=sys.stderr)
        return 2
    _say(f"lab: {labs_[0]}" + (f" (asked for {'/'.join(choice.requested)})"
                               if choice.requested != labs_ else ""))
    _say_targets(chosen)
    try:
        for t in chosen:
            t.prepare()
    except targets_.TargetError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    outcomes = []
    t0 = time.time()
    with Progress(len(cells) * repeat, label="runs" if repeat > 1 else "cells") as progress:
        for cell in cells:
            for _ in range(repeat):
                progress.started(cell)
                out = engine.run_cell(cell, scenario=scenario, keep=args.keep)
                progress.finished(out)
                outcomes.append(out)
    wall = time.time() - t0
    report.print_run(outcomes, repeat)
    if args.keep:
        for out in outcomes:
            _say_kept(out)
    if args.json:
        report.write_json(args.json, report.run_json(
            outcomes, wall=wall, labs=choice.as_dict(), argv=getattr(args, "argv", []),
            repeat=repeat))
    return 0 if all(o.ok for o in outcomes) else 1


def kept_lines(out) -> list[str]:
    """How to enter a lab kept by ``run --keep``, and how to remove it."""
    info = out.lab_info or {}
    if not info.get("kept"):
        return [f"{out.cell.name}: no lab was kept (it failed to start)"]
    owner = next((s for s in out.steps if s.actor == "owner" and s.uid is not None), None)
    lines = [f"{out.cell.name}: the lab is kept, its server still running "
             f"({' '.join(info.get('server_argv') or [])})"]
    if info.get("container"):
        name = info["container"]
        lines += [f"  enter it as root:    docker exec -it {name} bash"]
        if owner:
            lines += [f"  as the owner:        docker exec -it -u {owner.user} {name} bash"]
        lines += [f"  API {info.get('api')}, temp base {info.get('temp_base')}, image "
                  f"{info.get('image')} ({info.get('image_id')})"]
        if info.get("peer_container"):
            lines += [f"  peer container:      docker exec -it {info['peer_container']} bash"]
        names = " ".join([name, *([info["peer_container"]] if info.get("peer_container")
                                  else [])])
        rm = f"docker rm -f -v {names}"
        if info.get("volumes"):
            rm += f" && docker volume rm {' '.join(info['volumes'])}"
        lines += [f"  remove it:           {rm}   (or: wraplab clean)"]
    elif info.get("dir"):
        d = info["dir"]
        lines += [f"  its directory:       cd {d}   (API {info.get('api')}, temp base "
                  f"{info.get('temp_base')}, server log {d}/log/server.log)"]
        if owner:
            lines += [f"  a shell as the owner: setpriv --reuid={owner.uid} --regid={owner.uid} "
                      f"--clear-groups env PATH={d}/bin:$PATH PYTHONPATH={d}/lib bash"]
        lines += ["  remove it:           wraplab clean"]
    return lines


def _say_kept(out) -> None:
    for line in kept_lines(out):
        print(line, file=sys.stderr, flush=True)


def cmd_export(args) -> int:
    from wraplab import export, targets

    try:
        scenario = engine.get_scenario(args.scenario)
        target = targets.get(args.target) if args.target else targets.reference(args.profile)
    except (engine.ScenarioError, ValueError) as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    cells = scenario.cells(profiles=[target.profile],
                           sockets=[args.socket] if args.socket else [scenario.sockets[0]],
                           placements=[args.placement] if args.placement else None,
                           transports=["unix"], lab="docker", base=args.base)
    if not cells:
        print(f"wraplab: {scenario.slug} has no cell for those options (sockets "
              f"{'/'.join(scenario.sockets)}, placements {'/'.join(scenario.placements)})",
              file=sys.stderr)
        return 2
    cell = cells[0]
    if cell.scenario not in export.RECIPES:
        print(f"wraplab: no export recipe for {cell.scenario} yet (exportable: "
              f"{', '.join(sorted(export.RECIPES))})", file=sys.stderr)
        return 2
    observed = None
    if not args.no_run:
        try:
            _choose_labs(["docker"], args.base, first_only=True)
        except LabUnavailable as exc:
            print(f"wraplab: {exc} (--no-run exports without observing)", file=sys.stderr)
            return EXIT_LAB_UNAVAILABLE
        _say(f"observing {cell.name} once before the export (--no-run skips it)")
        observed = engine.run_cell(cell, scenario=scenario, target=target)
        _say(f"observed: {observed.verdict} - {observed.reason}")
    try:
        out = export.export(cell, args.output, target=target, observed=observed)
    except export.ExportError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    print(f"{out}: {cell.name}, expected {cell.expectation}; run {out}/run-with-docker.sh "
          "(exit 1: the attack succeeded, 0: it failed, 2: inconclusive)")
    return 0


def cmd_show(args) -> int:
    try:
        data = report.read_report(args.file)
        outcomes = report.outcomes_from_json(data)
    except report.ReportError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, ValueError) as exc:
        print(f"wraplab: {args.file}: an outcome cannot be read ({exc!r})", file=sys.stderr)
        return 2
    if args.cell:
        outcomes = [o for o in outcomes if o.cell.name == args.cell]
        if not outcomes:
            print(f"wraplab: no cell {args.cell} in {args.file}", file=sys.stderr)
            return 2
    repeat = int(data.get("repeat") or 1) if not args.cell else 1
    report.print_run(outcomes, repeat, plain=args.plain)
    return 0 if all(o.ok for o in outcomes) else 1


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
    try:
        chosen = chosen_targets(args)
    except targets_.TargetError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    cells = _cells(args, scenarios, labs_, chosen)
    if not cells:
        print("wraplab: no cell to run", file=sys.stderr)
        return 2
    _say(f"{len(cells)} cells ({len(scenarios)} scenarios, labs {', '.join(labs_)}, "
         f"{args.jobs} at a time)")
    _say_targets(chosen)
    t0 = time.time()
    try:
        with Progress(len(cells), jobs=args.jobs) as progress:
            outcomes = engine.run_cells(cells, jobs=args.jobs, on_start=progress.started,
                                        on_done=progress.finished)
    except targets_.TargetError as exc:
        print(f"wraplab: {exc}", file=sys.stderr)
        return 2
    wall = time.time() - t0
    report.print_matrix(outcomes, wall)
    for note in choice.notes:
        print(f"note: {note}")
    report.write_reports(outcomes, wall=wall, json_path=args.json, junit_path=args.junit,
                         markdown_path=args.markdown, title=args.title or
                         f"wraplab verdicts of {', '.join(t.name for t in chosen)} "
                         f"({', '.join(labs_)}, base {args.base})",
                         labs=choice.as_dict())
    if args.html:
        from wraplab import htmlreport

        index = htmlreport.write_html(outcomes, args.html, title=args.title or
                                      "wraplab verdicts", wall=wall, labs=choice.as_dict())
        _say(f"HTML report: {index}")
    counts = report.summary_counts(outcomes)
    return 0 if counts["ok"] == counts["cells"] else 1


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
    p.add_argument("--json", metavar="FILE",
                   help="write the whole outcome as JSON: every step (start and end), every "
                   "process the lab ran (argv, uid, exit code, output tails), file facts, "
                   "server events, the image, wraplab's version and commit; `wraplab show "
                   "FILE` prints it again")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run each cell N times (a fresh lab each time) and print the verdict "
                   "distribution; for a race, the pooled win rate with its 95 %% Wilson "
                   "interval")
    p.add_argument("--keep", action="store_true",
                   help="leave the lab and its server running afterwards and say how to enter "
                   "and remove it (`wraplab clean` removes it too)")
    p.epilog = ("Exit status: 0 every cell as expected, 1 a cell differed, 2 bad usage, "
                "3 the lab asked for cannot run here.")


def _jobs(text: str) -> int:
    """``-j N`` (N >= 1) or ``-j auto`` (:func:`~wraplab.engine.runner.auto_jobs`)."""
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
    p.add_argument("-j", "--jobs", type=_jobs, default="auto",
                   help=f"cells at a time, or auto: {engine.runner.CELLS_PER_CORE} per core "
                        "(the default); exclusive cells (floods, races, leak counts) never "
                        "attack side by side")
    p.add_argument("--json", metavar="FILE", help="write the outcomes as JSON")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--markdown", metavar="FILE", help="write a Markdown verdict table")
    p.add_argument("--html", metavar="DIR", help="write a static HTML report into DIR: the "
                   "verdict table linking each cell to its transcript, race win rates and "
                   "flood latencies as plots")
    p.add_argument("--title", help="title of the Markdown table and the HTML report")
    p.epilog = ("Exit status: 0 every cell as expected, 1 a cell differed, 2 bad usage, "
                "3 the lab asked for cannot run here.")


def _configure_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE",
                   help="a JSON file of `wraplab run --json` (or any JSON report)")
    p.add_argument("--cell", metavar="ID", help="only this cell (e.g. "
                   "'symlink-race[agentsh-notify-docker]')")
    p.add_argument("--plain", action="store_true", help="plain text even on a terminal")


def _configure_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="scenario slug (exportable so far: symlink-race, wrong-uid, "
                   "reconnect-flood)")
    p.add_argument("--profile", choices=PROFILES, default="agentsh",
                   help="server profile (default agentsh)")
    p.add_argument("--target", help="target by name (wrapref:PROFILE); overrides --profile")
    p.add_argument("--socket", choices=SOCKETS,
                   help="socket kind (default: the scenario's first)")
    p.add_argument("--placement", choices=PLACEMENTS,
                   help="server placement (default: the scenario's first)")
    p.add_argument("--base", choices=engine.BASES, default="bookworm",
                   help="lab image base for the observation run (default bookworm)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="the folder to write (must not exist or be empty)")
    p.add_argument("--no-run", action="store_true",
                   help="do not run the cell once to record the observed outcome")


COMMANDS = (
    ("list", "the scenarios, one line each", _configure_list, cmd_list),
    ("run", "run one scenario against one profile and show what happened", _configure_run,
     cmd_run),
    ("matrix", "run every scenario x profile cell and print the verdict table",
     _configure_matrix, cmd_matrix),
    ("show", "print a saved outcome (wraplab run --json) again, as the run printed it",
     _configure_show, cmd_show),
    ("export", "write one attack as a self-contained reproduction folder (Docker only, no "
     "wraplab): README, Dockerfile, server and per-actor scripts", _configure_export,
     cmd_export),
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
