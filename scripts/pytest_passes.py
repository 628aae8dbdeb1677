#!/usr/bin/env python3
"""Run a pytest selection in two passes: the parallel one (xdist, ``not exclusive``) and the
exclusive one (floods and races, after it; xdist too, but only one cell attacks at a time:
each holds the machine's cores while it does, ``wraplab.engine.cores``), as
``tox -e integration`` does.

    python scripts/pytest_passes.py tests/integration [PYTEST ARGS...]

- A ``-m EXPR`` given by the caller narrows both passes (``(EXPR) and not exclusive``,
  ``(EXPR) and exclusive``) instead of replacing the pass's own marker.
- A pass that selects nothing (pytest's exit 5) is fine when the other pass ran tests;
  both selecting nothing is exit 5. Otherwise the exit status is the first failing pass's.
- Each pass writes its own JUnit file: ``$WRAPLAB_REPORT_DIR/junit-<suite>-<pass>.xml``
  (default ``reports/``), or, when the caller gives ``--junitxml FILE``,
  ``FILE`` with ``-parallel`` / ``-exclusive`` before its suffix. Nothing is overwritten by
  the other pass. The integration tests also write their outcomes (wraplab's JSON report)
  to ``$WRAPLAB_REPORT_DIR/outcomes-<suite>-<pass>-<worker>.json``; this run's old ones are
  removed first.

Stdlib only but for :func:`workers`, which asks wraplab (when ``$WRAPLAB_JOBS`` is unset).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NO_TESTS = 5  # pytest.ExitCode.NO_TESTS_COLLECTED


def workers(exclusive: bool = False) -> list[str]:
    """xdist workers: ``$WRAPLAB_JOBS``, else as many as ``wraplab matrix -j auto`` runs
    cells in that pass (wraplab is installed wherever the integration tests run)."""
    jobs = os.environ.get("WRAPLAB_JOBS")
    if not jobs:
        from wraplab.engine.runner import auto_jobs, exclusive_jobs
        jobs = str(exclusive_jobs(auto_jobs()) if exclusive else auto_jobs())
    return ["-n", jobs]


#: (name, marker expression, extra pytest arguments)
PASSES = (
    ("parallel", "not exclusive", workers),
    ("exclusive", "exclusive", lambda: workers(exclusive=True)),
)


def split_args(args: list[str]) -> tuple[list[str], str | None, str | None]:
    """The caller's arguments without ``-m``/``--junitxml`` (and those two values)."""
    rest: list[str] = []
    marker = junit = None
    it = iter(args)
    for a in it:
        if a == "-m":
            marker = next(it, None)
        elif a.startswith("-m") and len(a) > 2 and not a.startswith("-m="):
            marker = a[2:]
        elif a.startswith("-m="):
            marker = a[3:]
        elif a in ("--junitxml", "--junit-xml"):
            junit = next(it, None)
        elif a.startswith(("--junitxml=", "--junit-xml=")):
            junit = a.split("=", 1)[1]
        else:
            rest.append(a)
    return rest, marker, junit


def junit_path(given: str | None, report_dir: Path, suite: str, name: str) -> Path:
    if given:
        p = Path(given)
        return p.with_name(f"{p.stem}-{name}{p.suffix or '.xml'}")
    return report_dir / f"junit-{suite}-{name}.xml"


def combine(codes: dict[str, int]) -> int:
    ran = {name: code for name, code in codes.items() if code != NO_TESTS}
    if not ran:
        return NO_TESTS
    for code in ran.values():
        if code != 0:
            return code
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: pytest_passes.py TEST_PATH [PYTEST ARGS...]", file=sys.stderr)
        return 2
    target, rest = args[0], args[1:]
    rest, marker, junit = split_args(rest)
    if marker is None and "-m" in args:
        print("pytest_passes.py: -m needs an expression", file=sys.stderr)
        return 2
    suite = Path(target).name or "tests"
    report_dir = Path(os.environ.get("WRAPLAB_REPORT_DIR", "reports"))
    report_dir.mkdir(parents=True, exist_ok=True)
    for old in report_dir.glob(f"outcomes-{suite}-*.json"):
        old.unlink()
    codes: dict[str, int] = {}
    for name, expr, extra in PASSES:
        mark = f"({marker}) and ({expr})" if marker else expr
        xml = junit_path(junit, report_dir, suite, name)
        cmd = [sys.executable, "-m", "pytest", target, *extra(), "-m", mark,
               f"--junitxml={xml}", "-o", f"junit_suite_name={suite}-{name}", *rest]
        print(f"pytest_passes: {name}: {' '.join(cmd[1:])}", flush=True)
        env = dict(os.environ, WRAPLAB_PASS=name, WRAPLAB_REPORT_DIR=str(report_dir),
                   WRAPLAB_SUITE=suite)
        codes[name] = subprocess.run(cmd, env=env).returncode
    code = combine(codes)
    print("pytest_passes: " + ", ".join(
        f"{n} {'selected nothing' if c == NO_TESTS else f'exit {c}'}" for n, c in codes.items())
        + f" -> exit {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
