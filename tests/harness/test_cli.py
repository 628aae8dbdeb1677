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
from wraplab import __version__, cli, engine, images

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
                  "--socket", "notify", "--json", str(j), "--markdown", str(tmp_path / "r.md"),
                  env={"DOCKER_HOST": NO_DOCKER})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the local lab runs instead" in out.stderr
    data = check_report(j)
    assert data["labs"]["requested"] == ["auto"] and data["labs"]["ran"] == ["local"]
    assert "Docker is not reachable" in data["labs"]["notes"][0]
    assert {o["cell"]["lab"] for o in data["outcomes"]} == {"local"}
    md = (tmp_path / "r.md").read_text()
    assert "the local lab runs instead" in md and "(local, base bookworm)" in md


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


@pytest.fixture
def no_lab_image(monkeypatch):
    """An engine that answers but no lab image can be had (as with debootstrap missing):
    the Docker lab's problem() is None, its image() raises ImageError."""
    from wraplab import cli_scenarios, labs

    def image(self, log=None):
        raise images.ImageError("cannot bootstrap wraplab/base:bookworm: debootstrap is not "
                                "installed (apt-get install debootstrap)")

    monkeypatch.setattr(cli_scenarios, "_docker_problem", lambda base: None)
    monkeypatch.setattr(cli_scenarios, "_local_problem", lambda: None)
    monkeypatch.setattr(labs.DockerLab, "image", image)
    return cli_scenarios


@pytest.mark.parametrize("wanted,ran", [
    (["auto"], ["local"]),
    (["auto", "local"], ["local"]),  # make demo's choice: what can run
])
def test_auto_without_a_lab_image_runs_local_and_says_why(no_lab_image, wanted, ran):
    choice = no_lab_image.resolve_labs(wanted, "bookworm")
    assert choice.labs == ["docker", "local"][: len(wanted)]  # the engine answers
    no_lab_image.prepare_labs(choice, "bookworm")
    assert choice.labs == ran
    assert choice.as_dict()["requested"] == wanted
    assert "debootstrap is not installed" in choice.notes[0]


@pytest.mark.parametrize("wanted", [["docker"], ["both"], ["auto", "docker"]])
def test_an_explicit_docker_lab_without_a_lab_image_is_refused(no_lab_image, wanted):
    choice = no_lab_image.resolve_labs(wanted, "bookworm")
    with pytest.raises(no_lab_image.LabUnavailable, match="debootstrap is not installed"):
        no_lab_image.prepare_labs(choice, "bookworm")


def test_report_merges_job_reports_into_one_table(tmp_path, check_report):
    from harness_support import make_outcome
    from wraplab import report

    jobs = tmp_path / "artifacts"
    for i, (lab, verdict) in enumerate((("docker", "defended"), ("local", "defended"))):
        d = jobs / f"wraplab-{lab}-{i}"
        report.write_reports([make_outcome(verdict, lab=lab)],
                             json_path=str(d / f"outcomes-integration-parallel-gw{i}.json"))
    (jobs / "verdicts.json").write_text("not even json")  # not outcomes-*: not read
    md, merged = tmp_path / "v.md", tmp_path / "v.json"
    out = wraplab("report", str(jobs), "--markdown", str(md), "--json", str(merged))
    assert out.returncode == 0, out.stderr
    assert "lab docker/bookworm" in md.read_text() and "lab local" in md.read_text()
    assert check_report(merged)["summary"]["cells"] == 2
    # a mismatch anywhere makes the merged report fail
    report.write_reports([make_outcome("vulnerable", lab="local")],
                         json_path=str(jobs / "outcomes-integration-exclusive-main.json"))
    assert wraplab("report", str(jobs)).returncode == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = wraplab("report", str(empty))
    assert bad.returncode == 2 and bad.stderr.startswith("report: no report files")
    missing = wraplab("report", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "not a readable JSON report" in missing.stderr


def test_matrix_jobs_take_a_number_or_auto_and_refuse_the_rest():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["matrix"]
    assert sub.parse_args(["-j", "3"]).jobs == 3
    per_core = engine.runner.CELLS_PER_CORE
    assert sub.parse_args(["-j", "auto"]).jobs == len(os.sched_getaffinity(0)) * per_core
    assert sub.parse_args([]).jobs == len(os.sched_getaffinity(0)) * per_core  # the default
    for bad in ("0", "-1", "many"):
        out = wraplab("matrix", "-j", bad)
        assert out.returncode == 2 and "want" in out.stderr, (bad, out.stderr)
