"""Helpers of the harness tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wraplab.engine import Cell, Outcome, Step, Verdict

REPO = Path(__file__).resolve().parents[2]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def requires_root(why: str) -> None:
    """Gate: skip with the reason on a developer's machine, fail when CI is set."""
    if os.geteuid() == 0:
        return
    if in_ci():
        pytest.fail(f"requires_root: {why} (CI is set: a missing prerequisite is a failure)",
                    pytrace=False)
    pytest.skip(f"requires_root: {why}")


def make_outcome(verdict: str = "defended", expected: str = "defended", *, scenario="wrong-uid",
                 profile="agentsh", socket="notify", lab="docker", reason="the kernel refused",
                 guard: str | None = "kernel", steps=None, error=None) -> Outcome:
    cell = Cell(scenario, profile, socket, "root", "unix", lab, "bookworm", Verdict(expected))
    return Outcome(cell=cell, verdict=Verdict(verdict), reason=reason, guard=guard,
                   steps=steps or [Step(t=1.0, actor="owner", user="alice", uid=1001,
                                        action="connect notify", result="ok", ms=1.5)],
                   timings={"setup_s": 0.5, "scenario_s": 1.0, "total_s": 1.5}, error=error)


def collected_ids(directory: Path, *args: str) -> list[str]:
    """``pytest --collect-only -q ARGS`` in ``directory`` (which must succeed): the ids
    collected, in order, without their file part."""
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                          "no:cacheprovider", *args],
                         cwd=directory, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return [line.rsplit("::", 1)[-1] for line in run.stdout.splitlines() if "::" in line]
