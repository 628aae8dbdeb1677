"""The command line tells the truth: --version, help texts that match behaviour, an explicit
lab never swapped for another, clear one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from harness_support import REPO, requires_root
from wraplab import __version__, cli, images

NO_DOCKER = "unix:///nonexistent.sock"


def wraplab(*args: str, env: dict | None = None, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "wraplab.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env={**os.environ, **(env or {})})


def test_version_names_the_release_and_the_commit():
    out = wraplab("--version")
    assert out.returncode == 0
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    m = re.fullmatch(r"wraplab (\S+)(?: \(git ([0-9a-f]+)(-dirty)?\))?\n", out.stdout)
    assert m, out.stdout
    assert m.group(1) == __version__
    if commit:  # a git checkout: the commit is named
        assert m.group(2) and commit.startswith(m.group(2))


def _option_help(command: str, option: str) -> str:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    action = next(a for a in sub._actions if option in a.option_strings)
    return action.help


def test_run_and_matrix_help_say_their_own_defaults():
    assert "(default: agentsh)" in _option_help("run", "--profile")
    assert "(default: every profile)" in _option_help("matrix", "--profile")
    assert "first socket kind" in _option_help("run", "--socket")
    full = wraplab("run", "--help").stdout
    assert "default: all" not in full and "every profile" not in full
    assert full.count("agentsh)") == 1  # one place says the default, and only one


@pytest.mark.parametrize("argv", [
    ["matrix", "--lab", "docker", "--scenario", "wrong-uid"],
    ["matrix", "--lab", "both", "--scenario", "wrong-uid"],
    ["run", "wrong-uid", "--lab", "docker"],
], ids=["matrix-docker", "matrix-both", "run-docker"])
def test_an_explicit_docker_lab_without_an_engine_fails_and_runs_nothing(argv, tmp_path):
    j = tmp_path / "r.json"
    extra = ["--json", str(j)] if argv[0] == "matrix" else []
    out = wraplab(*argv, *extra, env={"DOCKER_HOST": NO_DOCKER})
    assert out.returncode == 3, out.stdout + out.stderr
    assert "the docker lab cannot run here: Docker is not reachable" in out.stderr
    assert "Traceback" not in out.stderr
    assert "local" not in out.stdout and not j.exists()  # no cell ran, no report


def test_auto_falls_back_to_local_and_the_report_says_so(tmp_path, check_report):
    requires_root("the local lab makes real users by uid")
    j = tmp_path / "r.json"
    out = wraplab("matrix", "--lab", "auto", "--scenario", "wrong-uid", "--profile", "hardened",
                  "--socket", "notify", "--json", str(j), env={"DOCKER_HOST": NO_DOCKER})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the local lab runs instead" in out.stderr
    data = check_report(j)
    assert data["labs"]["requested"] == ["auto"] and data["labs"]["ran"] == ["local"]
    assert "Docker is not reachable" in data["labs"]["notes"][0]
    assert {o["cell"]["lab"] for o in data["outcomes"]} == {"local"}


def test_images_without_an_engine_is_one_clear_line():
    out = wraplab("images", "--base", "bookworm", env={"DOCKER_HOST": NO_DOCKER})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("images: no Docker engine is reachable")
    assert "Traceback" not in out.stdout + out.stderr


class _FakeClient:
    def ping(self):
        return True

    def close(self):
        pass


def test_images_without_debootstrap_is_one_clear_line(monkeypatch, tmp_path, capsys):
    """No base image present and no debootstrap on PATH: one line naming the package."""
    import contextlib

    monkeypatch.setattr(images, "docker_client", lambda timeout=600: _FakeClient())
    monkeypatch.setattr(images, "image_id", lambda client, ref: None)
    monkeypatch.setattr(images, "_lock", contextlib.nullcontext)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no debootstrap
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    code = cli.main(["images", "--base", "bookworm"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == ["images: bookworm: cannot bootstrap wraplab/base:bookworm: "
                                "debootstrap is not installed (apt-get install debootstrap)"]


def test_list_json_and_groups_cover_every_scenario_once_per_lab():
    from wraplab import engine

    scenarios = {s.slug: s for s in engine.discover()}
    data = json.loads(wraplab("list", "--json").stdout)
    assert [d["slug"] for d in data] == list(scenarios)
    groups = json.loads(wraplab("list", "--groups").stdout)
    for lab in engine.LABS:
        runnable = sorted(s for s, sc in scenarios.items() if sc.cells(lab=lab))
        mine = [g for g in groups if g["lab"] == lab]
        grouped = sorted(x for g in mine for x in g["scenarios"])
        assert grouped == runnable  # each once, none missing
        exclusive = next(g for g in mine if g["group"] == "exclusive")
        assert sorted(exclusive["scenarios"]) == sorted(
            s for s in runnable if scenarios[s].exclusive)
        for g in mine:
            assert g["cells"] == sum(len(scenarios[s].cells(lab=lab)) for s in g["scenarios"])
    ci = json.loads(wraplab("list", "--ci-matrix").stdout)["include"]
    docker_groups = [g for g in groups if g["lab"] == "docker"]
    assert len([c for c in ci if c["lab"] == "docker"]) == len(docker_groups) * len(engine.BASES)
    assert wraplab("list", "--groups", "0").returncode == 2
