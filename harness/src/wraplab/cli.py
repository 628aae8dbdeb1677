"""The ``wraplab`` command line: ``doctor``, ``images``, ``clean``, ``report``.

Adding a subcommand: decorate a function ``(args) -> int`` with :func:`subcommand`, and
declare its arguments with ``configure=``. Modules named in :data:`PLUGIN_MODULES` are
imported (when present) before parsing, so the scenario engine can keep its commands in
its own module::

    from wraplab.cli import subcommand

    @subcommand("list", help="list scenarios", configure=lambda p: p.add_argument("--json"))
    def cmd_list(args) -> int: ...
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]
Configure = Callable[[argparse.ArgumentParser], None]

#: Modules that register further subcommands when imported (missing ones are skipped).
PLUGIN_MODULES: tuple[str, ...] = ("wraplab.cli_scenarios", "wraplab.cli_targets",
                                   "wraplab.selftest")


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    handler: Handler
    configure: Configure | None


_SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, help: str,
               configure: Configure | None = None) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        _SUBCOMMANDS[name] = Subcommand(name, help, handler, configure)
        return handler

    return register


def _say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ doctor


def _configure_doctor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plain", action="store_true", help="plain text even on a terminal")


@subcommand("doctor", help="say which labs are usable here, and why not",
            configure=_configure_doctor)
def cmd_doctor(args: argparse.Namespace) -> int:
    from wraplab import doctor

    report = doctor.diagnose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    elif sys.stdout.isatty() and not args.plain:
        doctor.render_rich(report)
    else:
        print(doctor.render_plain(report))
    return 0 if report.usable else 1


# ------------------------------------------------------------------ images


def _configure_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", default="all",
                   help="bookworm, trixie, all (default), or a Debian-family image reference")


@subcommand("images", help="bootstrap missing base images offline and build the lab images",
            configure=_configure_images)
def cmd_images(args: argparse.Namespace) -> int:
    import docker.errors

    from wraplab import images

    names = list(images.DEBIAN_SUITES) if args.base == "all" else [args.base]
    started = time.monotonic()
    try:
        client = images.docker_client()
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"images: no Docker engine is reachable ({_first_line(exc)}); start one "
              "(`make docker-up`, as root) or set DOCKER_HOST", file=sys.stderr)
        return 1
    failed = False
    with contextlib.closing(client):
        for name in names:
            try:
                image = images.ensure_lab_image(name, client=client, log=_say)
            except (images.ImageError, images.paths.SourcesMissing) as exc:
                # one line for what is missing; a failed build keeps its log tail below it
                print(f"images: {name}: {str(exc).strip()}", file=sys.stderr)
                failed = True
                continue
            except docker.errors.DockerException as exc:
                print(f"images: {name}: the Docker engine failed: {_first_line(exc)}",
                      file=sys.stderr)
                failed = True
                continue
            what = ("built" if image.built else "up to date")
            if image.base_made:
                what += f", base {image.base.image} bootstrapped"
            _say(f"{name}: {image.tag} {what} ({image.seconds:.1f}s)")
    _say(f"images: {'failed' if failed else 'done'} in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


def _first_line(exc: BaseException) -> str:
    """An exception as one line of text (the first; long tails belong in logs)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ------------------------------------------------------------------ clean


def _configure_clean(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="also remove the containers of runs still going (any owner, any host)")
    p.add_argument("--all", action="store_true",
                   help="also remove the current lab images and the base images")


@subcommand("clean", help="remove what dead wraplab runs left (containers, volumes, local "
            "labs) and old lab images; --force: running labs too", configure=_configure_clean)
def cmd_clean(args: argparse.Namespace) -> int:
    from wraplab import images
    from wraplab.labs import cleanup
    from wraplab.labs.local import local_base

    removed = cleanup.sweep_stale_local(Path(local_base()), log=_say, kept=True)
    try:
        client = images.docker_client(timeout=60)
        client.ping()
    except Exception as exc:
        _say(f"clean: Docker not reachable ({type(exc).__name__}); removed {removed} local lab(s)")
        return 0
    with contextlib.closing(client):
        if args.force:
            containers = cleanup.remove_all_containers(client, log=_say)
        else:
            containers = cleanup.sweep_stale_containers(client, log=_say, kept=True)
            live = cleanup.live_containers(client)
            if live:
                names = ", ".join(sorted(cleanup.name_of(c) for c in live))
                _say(f"clean: kept {len(live)} container(s) of runs still going "
                     f"({names}); --force removes them")
        cleanup.sweep_stale_volumes(client, log=_say, everyone=args.force, kept=True)
        old = images.remove_stale_lab_images(client, log=_say)
        extra = 0
        if args.all:
            for image in client.images.list(filters={"label": "wraplab.image=lab"}):
                for tag in image.tags:
                    client.images.remove(tag, force=True)
                extra += 1
            for name in images.DEBIAN_SUITES:
                ref = images.resolve_base(name).image
                if images.image_id(client, ref):
                    client.images.remove(ref, force=True)
                    extra += 1
                    _say(f"removed {ref}")
    _say(f"clean: {containers} container(s), {removed} local lab(s), "
         f"{old + extra} image(s) removed")
    return 0


# ------------------------------------------------------------------ report


def _configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="JSON",
                   help="wraplab JSON reports (wraplab matrix --json, the integration tests); "
                   "a directory stands for every outcomes-*.json under it (what the integration "
                   "tests write with WRAPLAB_REPORT_DIR)")
    p.add_argument("--json", metavar="FILE", help="write the merged outcomes as one JSON report")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML of every outcome")
    p.add_argument("--markdown", metavar="FILE",
                   help="write the verdict table as Markdown ('-' for stdout)")
    p.add_argument("--html", metavar="DIR", help="write a static HTML report into DIR (the "
                   "verdict table linking each cell to its transcript, race win rates and "
                   "flood latencies as plots)")
    p.add_argument("--title", default="wraplab verdicts",
                   help="title of the Markdown table and the HTML report")


@subcommand("report", help="merge JSON reports (of several CI jobs) into one verdict table, "
            "JSON and JUnit; exit 1 when a cell differed from its expectation",
            configure=_configure_report)
def cmd_report(args: argparse.Namespace) -> int:
    from wraplab import report

    files: list[Path] = []
    for name in args.inputs:
        path = Path(name)
        files += sorted(path.rglob("outcomes-*.json")) if path.is_dir() else [path]
    try:
        merged = report.merge_reports(files)
    except report.ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    outcomes = merged.outcomes
    if args.markdown == "-":
        print(report.to_markdown(outcomes, None, args.title, merged.labs))
    report.write_reports(outcomes, wall=None, json_path=args.json, junit_path=args.junit,
                         markdown_path=None if args.markdown == "-" else args.markdown,
                         title=args.title, labs=merged.labs)
    if args.html:
        from wraplab import htmlreport

        index = htmlreport.write_html(outcomes, args.html, title=args.title, labs=merged.labs)
        print(f"report: HTML report {index}", file=sys.stderr)
    if args.markdown != "-":
        print(report.render_matrix(outcomes))
    counts = report.summary_counts(outcomes)
    _say(f"report: {len(files)} file(s), {counts['cells']} cells, {counts['ok']} as expected")
    return 0 if counts["ok"] == counts["cells"] else 1


# ------------------------------------------------------------------ main


def version_text() -> str:
    """``wraplab X.Y.Z`` and, in a git checkout, the commit (``-dirty`` with local changes)."""
    import subprocess

    from wraplab import __version__

    text = f"wraplab {__version__}"
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty",
                                 "--abbrev=12", "--exclude=*"], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.SubprocessError):
        return text
    if commit.returncode == 0 and commit.stdout.strip():
        text += f" (git {commit.stdout.strip()})"
    return text


def build_parser() -> argparse.ArgumentParser:
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    parser = argparse.ArgumentParser(prog="wraplab", description="wraplab: real multi-user labs "
                                     "for testing agentsh's wrap handoff")
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in _SUBCOMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.configure:
            cmd.configure(p)
        p.set_defaults(handler=cmd.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # ``python -m wraplab.cli``: run the registry of the imported module ``wraplab.cli``
    # (where the plugin modules register their subcommands), not this __main__ copy.
    from wraplab.cli import main as _main

    sys.exit(_main())
