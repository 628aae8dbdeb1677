"""wraplab's pytest plugin from a directory outside the repository: an implementer's suite
with one line of configuration (``wraplab_targets``) runs real cells against a target file,
reports them in JUnit with the target named, and a mismatch fails the run."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import junitparser
import pytest
from wraplab.labs import DockerLab

REPO = Path(__file__).resolve().parents[2]
BLACKBOX = REPO / "tests" / "targets" / "wrapref-blackbox" / "target.toml"


@pytest.fixture
def suite(tmp_path) -> Path:
    problem = DockerLab().problem()
    if problem:
        pytest.fail(f"requires_docker: {problem}") if _ci() else pytest.skip(
            f"requires_docker: {problem}")
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nwraplab_targets = {BLACKBOX}\n")
    (tmp_path / "test_mine.py").write_text("def test_my_own_thing():\n    assert True\n")
    return tmp_path


def _ci() -> bool:
    import os

    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def pytest_in(where: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "-p", "no:randomly", *args], cwd=where, capture_output=True,
                          text=True, timeout=900)


def test_an_outside_suite_runs_cells_against_a_target_file(suite):
    junit = suite / "junit.xml"
    done = pytest_in(suite, "--wraplab-lab", "docker", f"--junitxml={junit}", "-k",
                     "my_own_thing or legacy-no-caller-uid and notify and docker")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed, 1 skipped" in done.stdout, done.stdout[-2000:]
    cases = {c.name: c for s in junitparser.JUnitXml.fromfile(str(junit)) for c in s}
    cell = ET.parse(junit).find(
        ".//testcase[@name='legacy-no-caller-uid[wrapref-blackbox-notify-unix-docker]']")
    props = {p.get("name"): p.get("value") for p in cell.iter("property")}
    assert props["target"] == "wrapref-blackbox", props
    assert props["expected"].startswith(props["verdict"]), props
    tcp = cases["legacy-no-caller-uid[wrapref-blackbox-notify-tcp-docker]"]
    assert tcp.result and "has no tcp API" in tcp.result[0].message
    assert "test_my_own_thing" in cases


def test_a_mismatch_fails_the_outside_suite(suite):
    bad = suite / "expects-vulnerable.toml"
    bad.write_text(BLACKBOX.read_text().replace('like = "wrapref:hardened"',
                                                'default = "vulnerable"')
                   .replace('copy = ["serve.sh"]', f'copy = ["{BLACKBOX.parent.name}.sh"]'))
    (suite / f"{BLACKBOX.parent.name}.sh").write_bytes((BLACKBOX.parent / "serve.sh")
                                                      .read_bytes())
    (suite / f"{BLACKBOX.parent.name}.sh").chmod(0o755)
    text = bad.read_text().replace("{target_dir}/serve.sh",
                                   f"{{target_dir}}/{BLACKBOX.parent.name}.sh")
    bad.write_text(text)
    done = pytest_in(suite, "--wraplab-target", str(bad), "--wraplab-lab", "docker",
                     "-k", "wrong-uid and notify-docker")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "verdict defended, expected vulnerable" in done.stdout, done.stdout[-3000:]
    assert "1 failed" in done.stdout
