"""``wraplab doctor`` says which labs are usable, and why not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import docker_problem, root_problem


def doctor(*args: str, env: dict | None = None) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "doctor", *args],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, **(env or {})})
    return out.returncode, out.stdout + out.stderr


def test_doctor_reports_each_lab():
    code, text = doctor("--json")
    report = json.loads(text)
    labs = {v["lab"]: v for v in report["labs"]}
    assert set(labs) == {"docker-bookworm", "docker-trixie", "local"}
    for name in ("docker-bookworm", "docker-trixie"):
        assert labs[name]["usable"] == (docker_problem() is None), labs[name]
    assert labs["local"]["usable"] == (root_problem() is None), labs["local"]
    assert code == (0 if report["usable"] else 1)
    if os.environ.get("CI"):
        assert all(v["usable"] for v in labs.values()), labs


def test_doctor_says_why_docker_is_unusable():
    code, text = doctor("--plain", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert "docker-bookworm  UNUSABLE" in text and "Docker is not reachable" in text, text
    assert ("usable labs: local" in text) == (root_problem() is None), text
    assert code == (0 if root_problem() is None else 1)
