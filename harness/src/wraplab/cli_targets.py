"""``wraplab targets``: the built-in targets; ``wraplab targets check FILE...``: check target
files (docs/targets.md) and say every problem with its line and key. Nothing is built,
copied or started."""

from __future__ import annotations

import argparse
import sys

from wraplab import targets
from wraplab.cli import subcommand


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=("list", "check"), default="list",
                   help="list (default): the built-in targets; check: check target files")
    p.add_argument("files", nargs="*", metavar="FILE", help="with check: target files (TOML)")
    p.epilog = "Exit status: 0 every file is valid, 1 a file has problems, 2 bad usage."


def describe(t: targets.Target) -> str:
    kinds = "/".join(t.sockets)
    where = "/".join(t.placements)
    api = "/".join(t.transports)
    if t.expect.like:
        expect = f"expects {t.expect.like}"
    else:
        expect = f"expects {t.expect.default} everywhere"
    if t.expect.scenarios:
        expect += f", {len(t.expect.scenarios)} scenario override(s)"
    return (f"{t.name:<22} {t.description or '-'}\n{'':<22} sockets {kinds}; placements "
            f"{where}; API {api}; ready by {t.ready_kind}; client dial {t.dial}; events "
            f"{'yes' if t.has_events else 'no'}; {expect}")


@subcommand("targets", help="list the built-in targets (wrapref:<profile>); `targets check "
            "FILE...` checks target files and names every problem with its line and key",
            configure=_configure)
def cmd_targets(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.files:
            print("wraplab targets: list takes no files (did you mean `targets check`?)",
                  file=sys.stderr)
            return 2
        for name in targets.builtin_names():
            print(describe(targets.get(name)))
        print("\nA target file (TOML, docs/targets.md) describes any other server: "
              "`wraplab targets check FILE`, then `wraplab matrix --target FILE`.")
        return 0
    if not args.files:
        print("wraplab targets check: name at least one target file", file=sys.stderr)
        return 2
    from wraplab.target_files import load

    bad = 0
    for name in args.files:
        try:
            t = load(name)
        except targets.TargetError as exc:
            print(str(exc), file=sys.stderr)
            bad += 1
            continue
        print(f"{name}: valid\n{describe(t)}")
        for slug, o in t.expect.scenarios.items():
            print(f"{'':<22} {slug}: expected {o.verdict} - {o.reason}")
    return 1 if bad else 0
