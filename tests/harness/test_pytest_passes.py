"""scripts/pytest_passes.py, the two pytest passes of ``tox -e integration``: a filter that
leaves one pass empty passes; both empty fails; each pass keeps its own JUnit file."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import junitparser
import pytest
from harness_support import REPO

SCRIPT = REPO / "scripts" / "pytest_passes.py"
spec = importlib.util.spec_from_file_location("pytest_passes", SCRIPT)
passes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(passes)


@pytest.mark.parametrize("codes,want", [
    ({"parallel": 0, "exclusive": 5}, 0),
    ({"parallel": 5, "exclusive": 0}, 0),
    ({"parallel": 5, "exclusive": 5}, 5),
    ({"parallel": 1, "exclusive": 5}, 1),
    ({"parallel": 5, "exclusive": 1}, 1),
    ({"parallel": 0, "exclusive": 1}, 1),
    ({"parallel": 2, "exclusive": 0}, 2),
    ({"parallel": 0, "exclusive": 0}, 0),
])
def test_combine(codes, want):
    assert passes.combine(codes) == want


def test_split_args_takes_the_callers_marker_and_junit_out():
    rest, marker, junit = passes.split_args(["-k", "x", "-m", "docker", "--junitxml=a/b.xml", "-q"])
    assert (rest, marker, junit) == (["-k", "x", "-q"], "docker", "a/b.xml")
    assert passes.split_args(["-mdocker"])[1] == "docker"
    assert passes.split_args(["--junitxml", "c.xml"])[2] == "c.xml"
    p = passes.junit_path("out/j.xml", Path("reports"), "integration", "exclusive")
    assert p == Path("out/j-exclusive.xml")
    p = passes.junit_path(None, Path("reports"), "integration", "parallel")
    assert p == Path("reports/junit-integration-parallel.xml")


@pytest.fixture
def suite(tmp_path) -> Path:
    d = tmp_path / "suite"
    d.mkdir()
    (d / "conftest.py").write_text(
        "def pytest_configure(config):\n"
        "    config.addinivalue_line('markers', 'exclusive: alone')\n"
        "    config.addinivalue_line('markers', 'docker: docker')\n")
    (d / "test_cells.py").write_text(
        "import pytest\n"
        "def test_shared_ok():\n    pass\n"
        "@pytest.mark.docker\ndef test_shared_docker():\n    pass\n"
        "@pytest.mark.exclusive\ndef test_flood_ok():\n    pass\n"
        "@pytest.mark.exclusive\ndef test_flood_bad():\n    assert False\n")
    return d


def run(suite: Path, *args: str):
    env = {**os.environ, "WRAPLAB_JOBS": "0", "WRAPLAB_REPORT_DIR": str(suite.parent / "rep")}
    return subprocess.run([sys.executable, str(SCRIPT), str(suite), "-p", "no:cacheprovider",
                           *args], capture_output=True, text=True, cwd=suite.parent, env=env,
                          timeout=120)


def junit(suite: Path, name: str):
    return junitparser.JUnitXml.fromfile(str(suite.parent / "rep" / f"junit-suite-{name}.xml"))


def test_exclusive_pass_empty_is_fine_and_each_pass_has_its_own_junit(suite):
    out = run(suite, "-k", "shared")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "exclusive selected nothing" in out.stdout
    assert junit(suite, "parallel").tests == 2
    assert junit(suite, "exclusive").tests == 0


def test_parallel_pass_empty_is_fine(suite):
    out = run(suite, "-k", "flood_ok")
    assert out.returncode == 0, out.stdout + out.stderr
    assert junit(suite, "parallel").tests == 0 and junit(suite, "exclusive").tests == 1


def test_both_empty_fails(suite):
    assert run(suite, "-k", "nothing_at_all").returncode == 5


def test_a_failure_in_either_pass_fails(suite):
    out = run(suite, "-k", "flood")
    assert out.returncode == 1
    assert junit(suite, "exclusive").failures == 1 and junit(suite, "parallel").tests == 0


def test_the_callers_marker_narrows_both_passes_and_their_junit_is_split(suite, tmp_path):
    out = run(suite, "-m", "docker or exclusive", "-k", "not bad",
              f"--junitxml={tmp_path}/mine.xml")
    assert out.returncode == 0, out.stdout + out.stderr
    par = junitparser.JUnitXml.fromfile(str(tmp_path / "mine-parallel.xml"))
    exc = junitparser.JUnitXml.fromfile(str(tmp_path / "mine-exclusive.xml"))
    assert [c.name for s in par for c in s] == ["test_shared_docker"]
    assert [c.name for s in exc for c in s] == ["test_flood_ok"]
