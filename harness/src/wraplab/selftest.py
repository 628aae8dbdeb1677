"""``wraplab selftest``: weaken one rule of the hardened server, and some cell must say so.

The test of the matrix (issue 9 item 3, docs/rules.md): for each rule H1..H13 of SPEC §3
(and the client's H19), take a scratch copy of the reference package
(``ref/src/wrapref``), drop in a small module that weakens that one rule -- in one socket
kind, or one placement, or everywhere -- run the cells docs/rules.md names for the rule
against the ``hardened`` profile of that copy, and print rule -> cell -> verdict. A
weakening is *caught* when at least one of its cells comes out ``vulnerable``; the command
exits 1 if any weakening run was caught by no cell
(``--allow-uncaught`` lists the ones known to be, see docs/rules.md).

The copy runs in place of the project's: LocalLab copies it into the lab's ``lib/``
(``LocalLab(wrapref_src=)``), DockerLab puts it over the image's wrapref in each container
(``DockerLab(wrapref_src=)``); server and owner's client both come from it (H12 weakens the
client). Nothing of it is committed; each copy is removed when its cells are done. Every
cell, of every weakening and of the control, goes through the matrix's scheduler
(:func:`wraplab.engine.run_cells`, ``-j``): side by side, exclusive cells afterwards.

    wraplab selftest                       # every weakening, local lab
    wraplab selftest --rule H6 --rule H7   # some rules
    wraplab selftest --only H6-signal --lab docker
    wraplab selftest --list                # the weakenings and their cells
    wraplab selftest --control             # also run the cells on the unweakened copy
    wraplab selftest -j 1                  # one cell at a time
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from wraplab import cli, paths

#: Shared by every weakening module: weaken switches of one loop kind or of the server.
PRELUDE = '''
"""Scratch weakening for wraplab selftest: never part of the project."""
import dataclasses
import errno
import os

from . import client as _c
from . import server as _s
from . import wrapdir as _w


def per_kind(kind, **fields):
    """The accept loops of ``kind`` ("*": every kind) run with these profile switches."""
    orig = _s.AcceptLoop.__init__

    def __init__(self, wrap, k, listener, deadline):
        orig(self, wrap, k, listener, deadline)
        if kind in ("*", k):
            self.profile = dataclasses.replace(self.profile, **fields)
            self.limiter = _s.RejectionLimiter(self.profile.rate_limit_logs)
            self.drop_limiter = _s.RejectionLimiter(self.profile.rate_limit_logs)

    _s.AcceptLoop.__init__ = __init__


def server_wide(**fields):
    """The whole server runs with these profile switches (layout, cleanup, backlog...)."""
    orig = _s.WrapServer.__init__

    def __init__(self, *a, **kw):
        orig(self, *a, **kw)
        self.profile = dataclasses.replace(self.profile, **fields)
        if "backlog" in fields and kw.get("backlog") is None:
            self.backlog = fields["backlog"]

    _s.WrapServer.__init__ = __init__
'''


@dataclass(frozen=True)
class Weakening:
    """One realistic single mistake in the hardened server (or its client)."""

    id: str  # "H6-signal"
    rule: str  # "H6"
    how: str  # what was weakened, in words
    patch: str  # Python run at import of the scratch copy (after PRELUDE)
    cells: tuple[tuple[str, str, str, str], ...]  # (scenario, socket, placement, transport)
    labs: tuple[str, ...] = ("local", "docker")
    known_uncaught: str = ""  # why no cell can catch it (docs/rules.md), if so


def _w(id_, rule, how, patch, cells, **kw) -> Weakening:
    return Weakening(id_, rule, how, textwrap.dedent(patch).strip() + "\n", tuple(cells), **kw)


KINDS = ("notify", "signal", "ptrace")
PLACES = ("root", "root-no-chown", "service")

WEAKENINGS: tuple[Weakening, ...] = (
    _w("H1-unix-as-tcp", "H1",
       "resolve_caller treats a Unix API caller like a TCP one: identity from the body, "
       "none (legacy, anyone) when the body names no caller_uid",
       """
       _orig = _s.WrapServer.resolve_caller
       def resolve_caller(self, body, peer):
           if peer.transport == "unix":
               peer = _s.Peer("tcp", peer.uid, peer.pid, peer.gid)
           return _orig(self, body, peer)
       _s.WrapServer.resolve_caller = resolve_caller
       """,
       [("legacy-no-caller-uid", k, "root", "unix") for k in KINDS]),
    _w("H2-no-range", "H2",
       "check_uid_range accepts every uid (no upper bound, 65534 allowed)",
       """
       _s.WrapServer.check_uid_range = lambda self, uid: None
       """,
       [("uid-range-tcp", "notify", "root", "tcp"), ("uid-range", "notify", "root", "unix")]),
    _w("H3-agentsh-order", "H3",
       "layout in agentsh's order: the directory chowned to the caller before the sockets "
       "are bound, sockets chowned/chmodded by path afterwards (follows symlinks)",
       """
       server_wide(layout="agentsh")
       """,
       [("symlink-race", "notify", "root", "unix"), ("symlink-race", "ptrace", "root", "unix")],
       labs=("docker",)),
    _w("H3-handover-open", "H3",
       "the chown hand-over leaves the directory 0711 and the sockets 0666 (chmod forgotten; "
       "validation expects the same)",
       """
       _orig_hand = _w.WrapDir.hand_over
       _orig_exp = _w.WrapDir.expected
       def hand_over(self):
           _orig_hand(self)
           if self.fs_isolation == _w.ISOLATION_CHOWN:
               for p in self.sockets.values():
                   os.chmod(p, 0o666)
               os.fchmod(self.dirfd, 0o711)
       def expected(self, is_dir):
           mode, owner, acl = _orig_exp(self, is_dir)
           if self.fs_isolation == _w.ISOLATION_CHOWN:
               mode = 0o711 if is_dir else 0o666
           return mode, owner, acl
       _w.WrapDir.hand_over = hand_over
       _w.WrapDir.expected = expected
       """,
       [("filesystem-layer", k, "root", "unix") for k in KINDS]),
    _w("H4-no-acl", "H4",
       "no POSIX ACLs: where chown is impossible the layout falls back to 0711/0666 "
       "(as if the filesystem had no ACL support)",
       """
       def set_acl(self, target, entries):
           raise OSError(errno.EOPNOTSUPP, "ACLs weakened away")
       _w.WrapDir.set_acl = set_acl
       """,
       [("filesystem-layer", k, p, "unix") for p in ("root-no-chown", "service")
        for k in KINDS]),
    _w("H5-no-validation", "H5",
       "no validation after the hand-over (lstat, mode, owner, type, ACL unchecked)",
       """
       _w.WrapDir.validate_strict = lambda self: None
       """,
       [("filesystem-layer", "notify", "root", "unix"),
        ("symlink-race", "notify", "root", "unix")],
       known_uncaught="the hardened order (H3) leaves no one who could tamper with the "
       "directory before validation runs: validation is a self-check, never reached by an "
       "attacker below root (see docs/rules.md)"),
    *(_w(f"H6-{k}", "H6", f"no peer check on the {k} socket (admit() lets every uid in)",
         f"""
         per_kind("{k}", peer_check=False)
         """,
         [("dac-override-intruder", k, p, "unix") for p in PLACES]) for k in KINDS),
    _w("H6-service", "H6",
       "no peer check when the server runs as a non-root service user (every kind)",
       """
       if os.geteuid() != 0:
           per_kind("*", peer_check=False)
       """,
       [("dac-override-intruder", k, "service", "unix") for k in KINDS]),
    *(_w(f"H7-{k}-no-deadline", "H7", f"no handshake deadline on the {k} socket",
         f"""
         per_kind("{k}", handshake_deadline_all=False)
         """,
         [("deputy-stall", k, "root", "unix")]) for k in ("notify", "signal")),
    *(_w(f"H7-{k}-stall-ends-loop", "H7",
         f"a stalled {k} peer ends the loop (B19) instead of being dropped",
         f"""
         per_kind("{k}", drop_stalled_peers=False)
         """,
         [("deputy-stall", k, "root", "unix")]
         + ([("slow-client", k, "root", "unix")] if k != "signal" else []))
      for k in KINDS),
    *(_w(f"H8-{k}", "H8", f"the {k} fd received without MSG_CMSG_CLOEXEC (agentsh's way)",
         f"""
         per_kind("{k}", cloexec="agentsh")
         """,
         [("fd-cloexec", k, "root", "unix")]) for k in ("notify", "signal")),
    _w("H9-unbound", "H9", "the ptrace pid is not tied to the peer",
       """
       per_kind("ptrace", ptrace_pid_bound=False)
       """,
       [("deputy-handoff", "ptrace", "root", "unix"),
        ("ptrace-foreign-pid", "ptrace", "root", "unix")]),
    _w("H10-unchecked", "H10", "the notify wrapper pid is not validated",
       """
       per_kind("notify", validate_wrapper_pid=False)
       """,
       [("deputy-handoff", "notify", "root", "unix"),
        ("wrapper-pid-not-child", "notify", "root", "unix")]),
    _w("H11-notify-owns", "H11",
       "agentsh's cleanup: the notify loop's end removes the directory while the signal "
       "loop still waits",
       """
       server_wide(cleanup="notify-owns")
       """,
       [("signal-squat", "signal", "root", "unix"),
        ("signal-after-notify", "signal", "root", "unix")]),
    _w("H12-client-once", "H12",
       "the hardened client dials once, non-blocking (agentsh's client)",
       """
       _orig_dial = _c.dial
       def dial(path, mode, deadline, retry_interval=0.005):
           return _orig_dial(path, "once", deadline, retry_interval)
       _c.dial = dial
       """,
       [("dac-override-flood", k, "root", "unix") for k in KINDS]),
    _w("H12-backlog", "H12", "the listen backlog is 4096 (Go's somaxconn) instead of 8",
       """
       server_wide(backlog=4096)
       """,
       [("dac-override-flood", k, "root", "unix") for k in KINDS],
       known_uncaught="with the retrying client (the other half of H12) a large backlog "
       "only makes alice's handoff wait behind queued flood connections (its latency is in "
       "the cell's reason); no handoff is lost, so no cell turns vulnerable"),
    *(_w(f"H13-{k}", "H13", f"a log line for every rejection on the {k} socket",
         f"""
         per_kind("{k}", rate_limit_logs=False)
         """,
         [("dac-override-rejections", k, "root", "unix")]) for k in KINDS),
    _w("H19-wrap-unchecked", "H19",
       "the hardened client hands its fd to whoever listens at the wrap socket's path "
       "(agentsh's client: no SO_PEERCRED check of the listener)",
       """
       _c.WrapClient.check_wrap_peer = lambda self, kind, sock: None
       """,
       [("dac-override-swap", "notify", p, "unix") for p in ("root", "root-no-chown",
                                                            "service")]),
)


def scratch_copy(weakening: Weakening | None, into: Path) -> Path:
    """A copy of wrapref with ``weakening`` applied at import (None: unweakened)."""
    dest = into / "wrapref"
    shutil.copytree(paths.wrapref_package(), dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if weakening is not None:
        (dest / "_weaken.py").write_text(PRELUDE + "\n\n" + weakening.patch)
        with (dest / "__init__.py").open("a") as f:
            f.write(f"\n# wraplab selftest: {weakening.id}\nfrom . import _weaken  # noqa\n")
    return dest


def _make_lab(kind: str, base: str, src: Path):
    from wraplab import labs

    if kind == "local":
        return labs.LocalLab(wrapref_src=src)
    return labs.DockerLab(base=base, wrapref_src=src)


def run_weakening(w: Weakening | None, cells, lab_kind: str, base: str, say,
                  jobs: int = 1) -> list[dict]:
    """The rows of one weakening's cells (None: the unweakened control)."""
    return run_plan([(w, cells)], lab_kind, base, say, jobs)[0]


def run_plan(plan, lab_kind: str, base: str, say, jobs: int = 1) -> list[list[dict]]:
    """Run every ``(weakening or None, cells)`` of ``plan`` against its own scratch copy,
    all cells through the matrix's runner (``jobs`` at a time; exclusive cells afterwards,
    one attacking at a time); the rows of each entry, in its cells' order. A finished cell
    is said at once, tagged with its weakening."""
    from wraplab import engine

    tmp = Path(tempfile.mkdtemp(prefix="wraplab-selftest-"))
    try:
        rows: list[list] = [[None] * len(cells) for _, cells in plan]
        todo, slots, copies, tags = [], [], [], {}
        for k, (w, cells) in enumerate(plan):
            src = scratch_copy(w, tmp / (w.id if w else "control"))
            for j, (slug, sock, place, transport) in enumerate(cells):
                scenario = engine.get_scenario(slug)
                if lab_kind not in scenario.labs:
                    rows[k][j] = {
                        "cell": f"{slug}[hardened-{sock}-{place}-{transport}-{lab_kind}]",
                        "verdict": "skipped",
                        "reason": scenario.lab_notes.get(lab_kind, "not in this lab")}
                    continue
                found = scenario.cells(profiles=["hardened"], sockets=[sock],
                                       placements=[place], transports=[transport],
                                       lab=lab_kind, base=base)
                if len(found) != 1:
                    raise SystemExit(f"selftest: {slug} has no cell {sock}/{place}/{transport}")
                tags[id(found[0])] = w.id if w else "control"
                todo.append(found[0])
                slots.append((k, j))
                copies.append(src)

        def said(out) -> None:
            guard = f"({out.guard})" if out.guard else ""
            say(f"    {tags[id(out.cell)]:<24} {out.cell.name:<60} {out.verdict!s:<10} {guard}")
            if str(out.verdict) in ("error", "broken"):
                say(f"      why: {out.reason}")

        outs = engine.run_cells(todo, jobs=jobs, on_done=said,
                                lab_for=lambda i: _make_lab(lab_kind, base, copies[i]))
        for (k, j), out in zip(slots, outs):
            timings = out.timings or {}
            rows[k][j] = {"cell": out.cell.name, "verdict": str(out.verdict),
                          "guard": out.guard, "reason": out.reason,
                          "seconds": timings.get("total_s")}
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _jobs(text: str) -> int:
    from wraplab.cli_scenarios import _jobs as matrix_jobs

    return matrix_jobs(text)


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rule", action="append", help="only these rules (H1..H13, H19)")
    p.add_argument("--only", action="append", help="only these weakenings (ids, see --list)")
    p.add_argument("--lab", choices=("local", "docker"), default="local")
    p.add_argument("--base", choices=("bookworm", "trixie"), default="bookworm")
    p.add_argument("--control", action="store_true",
                   help="first run every chosen cell on an unweakened copy (must be defended)")
    p.add_argument("--list", action="store_true", help="list the weakenings and their cells")
    p.add_argument("-j", "--jobs", type=_jobs, default="auto",
                   help="cells at a time, or auto (the matrix's default); exclusive cells "
                        "(floods, leak counts) run afterwards, never attacking side by side")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--strict", action="store_true",
                   help="fail also on weakenings documented as uncaught")


@cli.subcommand("selftest", help="weaken one rule of the hardened server at a time (scratch "
                "copy) and check that some cell of docs/rules.md turns vulnerable",
                configure=_configure)
def cmd_selftest(args: argparse.Namespace) -> int:
    chosen = [w for w in WEAKENINGS
              if (not args.rule or w.rule in args.rule) and (not args.only or w.id in args.only)]
    if args.list:
        for w in chosen:
            print(f"{w.id:<22} {w.how}")
            for c in w.cells:
                print(f"{'':<24}{c[0]}[hardened-{c[1]}-{c[2]}-{c[3]}]  labs: {','.join(w.labs)}")
            if w.known_uncaught:
                print(f"{'':<24}known uncaught: {w.known_uncaught}")
        return 0
    if not chosen:
        print("selftest: nothing chosen", file=sys.stderr)
        return 2
    say = cli._say
    runnable = [w for w in chosen if args.lab in w.labs]
    plan = [(w, w.cells) for w in runnable]
    if args.control:
        cells = sorted({c for w in runnable for c in w.cells})
        plan.insert(0, (None, cells))
    say(f"selftest ({args.lab}): {len(runnable)} weakenings"
        + (f" and the control ({len(plan[0][1])} cells on an unweakened copy)"
           if args.control else "")
        + f", {sum(len(c) for _, c in plan)} cells, {args.jobs} at a time")
    rows_of = dict(zip((w.id if w else "control" for w, _ in plan),
                       run_plan(plan, args.lab, args.base, say, args.jobs)))
    results = []
    if args.control:
        rows = rows_of["control"]
        bad = [r for r in rows if r["verdict"] not in ("defended", "skipped")]
        results.append({"id": "control", "rows": rows, "ok": not bad})
        if bad:
            say(f"control: {len(bad)} cells are not defended unweakened: the cells prove "
                "nothing until that is fixed")
    for w in chosen:
        if args.lab not in w.labs:
            say(f"{w.id}: not in the {args.lab} lab (runs in {', '.join(w.labs)})")
            results.append({"id": w.id, "rule": w.rule, "how": w.how, "rows": [],
                            "caught": None, "lab": args.lab})
            continue
        say(f"{w.id} ({w.rule}): {w.how}")
        rows = rows_of[w.id]
        for r in rows:
            say(f"    {r['cell']:<60} {r['verdict']:<10} "
                f"{('(' + r['guard'] + ')') if r.get('guard') else ''}")
        caught = [r["cell"] for r in rows if r["verdict"] == "vulnerable"]
        say(f"  -> {'CAUGHT by ' + ', '.join(caught) if caught else 'NOT CAUGHT'}"
            + (f" (known: {w.known_uncaught})" if not caught and w.known_uncaught else ""))
        results.append({"id": w.id, "rule": w.rule, "how": w.how, "rows": rows,
                        "caught": bool(caught), "caught_by": caught, "lab": args.lab,
                        "known_uncaught": w.known_uncaught})
    say("")
    say(f"{'weakening':<24} {'rule':<5} result")
    for r in results:
        if r["id"] == "control":
            say(f"{'control':<24} {'-':<5} {'all defended' if r['ok'] else 'NOT all defended'}")
            continue
        if r["caught"] is None:
            res = f"not run ({args.lab})"
        elif r["caught"]:
            res = "caught: " + ", ".join(r["caught_by"])
        else:
            res = "NOT caught: " + ", ".join(f"{x['cell']}={x['verdict']}" for x in r["rows"])
        say(f"{r['id']:<24} {r['rule']:<5} {res}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = [r for r in results if r.get("caught") is False
              and (args.strict or not r.get("known_uncaught"))]
    control_bad = any(r["id"] == "control" and not r["ok"] for r in results)
    return 1 if failed or control_bad else 0
