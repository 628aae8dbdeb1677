"""The GitHub workflow runs what .ci/run runs: its jobs and .ci/run's STEPS match one to one,
and every command either names (make targets, tox envs, wraplab subcommands and options)
exists. A dry reading of the YAML, not a run: actionlint (tox -e lint) checks the syntax."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess

import pytest
import yaml
from harness_support import REPO
from wraplab import cli, engine

WORKFLOW = REPO / ".github" / "workflows" / "wraplab.yml"
CI_RUN = REPO / ".ci" / "run"
SETUP = "setup"
PLANNING = {"plan"}  # jobs that only compute the matrix (wraplab list --ci-matrix)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def ci_steps() -> list[str]:
    m = re.search(r"^STEPS=\(([^)]*)\)", CI_RUN.read_text(), re.M)
    assert m, ".ci/run has no STEPS=(...) line"
    return m.group(1).split()


def ci_step_bodies() -> dict[str, str]:
    text = CI_RUN.read_text()
    bodies = {}
    for step in ci_steps():
        m = re.search(rf"^step_{step}\(\) \{{(.*?)\}}[ \t]*$", text, re.M | re.S)
        assert m, f".ci/run: step {step} has no step_{step}() function"
        bodies[step] = m.group(1)
    return bodies


def job_runs(job: dict) -> list[str]:
    return [s["run"] for s in job.get("steps", []) if "run" in s]


def ci_run_calls(job: dict) -> list[str]:
    calls = []
    for run in job_runs(job):
        calls += re.findall(r"\.ci/run((?: [a-z]+)+)", run)
    return [step for c in calls for step in c.split()]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-zA-Z][a-zA-Z_-]*):", (REPO / "Makefile").read_text(), re.M))


def tox_envs() -> set[str]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(REPO / "tox.ini")
    return {s.split(":", 1)[1] for s in cp.sections() if s.startswith("testenv:")}


def test_the_jobs_and_ci_run_steps_match_one_to_one(workflow):
    steps = ci_steps()
    assert steps[0] == SETUP
    job_step: dict[str, str] = {}
    for name, job in workflow["jobs"].items():
        called = ci_run_calls(job)
        work = [s for s in called if s != SETUP]
        if name in PLANNING:
            assert work == [], f"planning job {name} runs steps {work}"
            continue
        # a job also rebuilds the lab image from a cached base (the images step) when
        # its own step needs Docker; its own step is the last one it runs
        assert work, f"job {name} runs no .ci/run step"
        assert SETUP in called or name == "images", f"job {name} skips .ci/run setup"
        job_step[name] = work[-1]
        for s in called:
            assert s in steps, f"job {name}: .ci/run has no step {s!r}"
    owners: dict[str, list[str]] = {}
    for job, step in job_step.items():
        owners.setdefault(step, []).append(job)
    assert {s: len(j) for s, j in owners.items()} == {s: 1 for s in steps if s != SETUP}, owners


def test_every_make_target_and_tox_env_named_exists():
    targets, envs = makefile_targets(), tox_envs()
    named_make = set()
    for body in ci_step_bodies().values():
        named_make |= set(re.findall(r"\bmake ([a-z][a-z-]*)", body))
    assert named_make, ".ci/run names no make target"
    assert named_make <= targets, named_make - targets
    make_text = (REPO / "Makefile").read_text()
    named_tox = {e for group in re.findall(r"\$\(TOX\) -e ([a-z,]+)", make_text)
                 for e in group.split(",")}
    assert named_tox and named_tox <= envs, named_tox - envs
    # every tox env the Makefile runs for `make test` is one a .ci/run step runs too
    test_recipe = re.search(r"^test:.*?\n((?:\t.*\n)+)", make_text, re.M).group(1)
    test_envs = set(re.search(r"-e ([a-z,]+)", test_recipe).group(1).split(","))
    assert test_envs <= set(ci_steps()), test_envs - set(ci_steps())


def _wraplab_commands() -> list[list[str]]:
    """Each ``wraplab ...`` command line in .ci/run (comments aside) and the workflow, as
    argv after ``wraplab``; shell variables stand for ``bookworm``."""
    texts = ["\n".join(line for line in CI_RUN.read_text().splitlines()
                       if not line.lstrip().startswith("#"))]
    texts += [r for job in yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
              for r in job_runs(job)]
    cmds = []
    for text in texts:
        text = re.sub(r"\\\n\s*", " ", text)
        text = re.sub(r"\$\{?[A-Za-z_]+(:-[^}]*)?\}?", "bookworm", text)
        for line in text.splitlines():
            for m in re.finditer(r"(?:^|[\s/(])wraplab ([a-z-].*)$", line):
                lex = shlex.shlex(m.group(1), posix=True, punctuation_chars=";&|)>")
                argv = []
                for tok in lex:
                    if tok and set(tok) <= set(";&|)>"):
                        break
                    argv.append(tok)
                cmds.append(argv)
    return cmds


def test_every_wraplab_command_named_parses():
    parser = cli.build_parser()
    cmds = _wraplab_commands()
    assert ["list", "--ci-matrix"] in cmds
    assert any(c[0] == "report" for c in cmds)
    for argv in cmds:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"`wraplab {' '.join(argv)}` does not parse (exit {exc.code})")


def test_the_integration_matrix_is_generated_not_written_by_hand(workflow):
    job = workflow["jobs"]["integration"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    plan = workflow["jobs"]["plan"]
    assert "wraplab list --ci-matrix" in " ".join(job_runs(plan))
    include = json.loads(subprocess.run(
        [str(REPO / ".venv" / "bin" / "wraplab") if (REPO / ".venv/bin/wraplab").exists()
         else "wraplab", "list", "--ci-matrix"],
        capture_output=True, text=True, check=True, cwd=REPO).stdout)["include"]
    used = set(re.findall(r"matrix\.([a-z_]+)", json.dumps(job)))
    assert used and all(used <= set(entry) for entry in include), used
    # every scenario is in some group of every lab it runs in, for every base
    for lab in engine.LABS:
        for base in (engine.BASES if lab == "docker" else engine.BASES[:1]):
            covered = {s for e in include if (e["lab"], e["base"]) == (lab, base)
                       for s in e["scenarios"].split(",")}
            want = {s.slug for s in engine.discover() if s.cells(lab=lab)}
            assert covered == want, (lab, base, want ^ covered)


def test_base_images_are_built_once_per_base_and_restored_with_the_same_key(workflow):
    jobs = workflow["jobs"]
    saved = [s for s in jobs["images"]["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert len(saved) == 1
    key = saved[0]["with"]["key"]
    assert "hashFiles('harness/src/wraplab/images.py')" in key and "matrix.base" in key
    assert set(jobs["images"]["strategy"]["matrix"]["base"]) == set(engine.BASES)
    for name in ("labs", "integration"):
        restores = [s for s in jobs[name]["steps"]
                    if s.get("uses", "").startswith("actions/cache/restore@")]
        assert restores, f"{name} does not restore the base images"
        for s in restores:
            assert s["with"]["fail-on-cache-miss"] is True
            k = s["with"]["key"]
            assert k in {key.replace("${{ matrix.base }}", b) for b in engine.BASES} | {key}, k
        assert "images" in (jobs[name].get("needs") or [])


def test_junit_is_published_and_the_verdicts_summarised(workflow):
    jobs = workflow["jobs"]
    published = {name for name, job in jobs.items() for s in job.get("steps", [])
                 if s.get("uses", "").startswith("dorny/test-reporter@")}
    assert {"unit", "harness", "labs", "report"} <= published
    for name in published:
        assert jobs[name].get("permissions", {}).get("checks") == "write", name
    report_runs = " ".join(job_runs(jobs["report"]))
    assert "GITHUB_STEP_SUMMARY" in report_runs and ".ci/run report" in report_runs
    assert jobs["report"]["if"].startswith("always()")
    uploads = [s for s in jobs["integration"]["steps"]
               if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads and uploads[0]["if"] == "always()"


def _recipe(target: str) -> str:
    text = (REPO / "Makefile").read_text()
    m = re.search(rf"^{target}:.*?\n((?:\t.*\n)+)", text, re.M)
    assert m, f"Makefile has no recipe for {target}"
    return m.group(1)


def test_one_host_set_up_script_for_make_demo_make_test_and_ci_run():
    assert "scripts/host-deps.sh" in ci_step_bodies()[SETUP]
    for target in ("demo", "test", "host-deps"):
        assert "bash scripts/host-deps.sh" in _recipe(target), target
    # demo goes on with what can run: host-deps and docker-up failures do not stop it, and
    # its matrix lets --lab auto fall back (an explicit --lab docker would not)
    demo = _recipe("demo")
    assert "host-deps.sh ||" in demo and "docker-up.sh ||" in demo
    assert "--lab auto --lab local" in demo and "--lab both" not in demo
