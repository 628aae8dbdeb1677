"""Lab tests: real users in Docker containers (bookworm, trixie) and on this host.

Gates: ``requires_docker`` and ``requires_root`` skip with the reason locally and *fail*
when the environment has ``CI`` set. A failing test shows the transcript of every lab run
it used (who did what as which uid, and what came back); passing tests show nothing.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import pytest
from wraplab.labs import DockerLab, LabRun, LocalLab, Placement, ServerSpec, agent, lab_by_name
from wraplab.targets import wrapref_spec

RUNS = pytest.StashKey[list]()

DOCKER_LABS = ("docker-bookworm", "docker-trixie")
LABS = (*DOCKER_LABS, "local")


def lab_param(name: str):
    mark = pytest.mark.requires_root if name == "local" else pytest.mark.requires_docker
    return pytest.param(name, marks=mark, id=name)


LAB_PARAMS = [lab_param(n) for n in LABS]
DOCKER_PARAMS = [lab_param(n) for n in DOCKER_LABS]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires_docker: needs a reachable Docker engine")
    config.addinivalue_line("markers", "requires_root: needs root on a Linux host (LocalLab)")


@functools.cache
def docker_problem() -> str | None:
    return DockerLab().problem()


@functools.cache
def root_problem() -> str | None:
    return LocalLab().problem()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark, problem in (("requires_docker", docker_problem), ("requires_root", root_problem)):
        if item.get_closest_marker(mark) is None:
            continue
        why = problem()
        if why:
            if os.environ.get("CI"):
                pytest.fail(f"{mark}: {why} (CI is set, so this gate fails instead of skipping)",
                            pytrace=False)
            pytest.skip(f"{mark}: {why}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for run, since in item.stash.get(RUNS, []):
            report.sections.append((f"lab transcript ({run.lab_name}, run {run.id[:12]})",
                                    run.format_transcript(since)))


def watch(request: pytest.FixtureRequest, run: LabRun, *, whole: bool = False) -> LabRun:
    """Show ``run``'s transcript if the current test fails: all of it (``whole``), or what
    happened from now on (a run shared by several tests)."""
    node = request.node
    node.stash.setdefault(RUNS, []).append((run, 0 if whole else len(run.transcript)))
    return run


@pytest.fixture
def start_lab(request: pytest.FixtureRequest):
    """``start_lab(lab_name, spec)`` -> a started LabRun, closed after the test, with its
    transcript shown if the test fails."""
    runs: list[LabRun] = []

    def start(name: str, spec: ServerSpec) -> LabRun:
        run = lab_by_name(name).start(spec)
        runs.append(run)
        return watch(request, run, whole=True)

    yield start
    for run in runs:
        run.close()


@pytest.fixture(scope="module")
def _module_runs() -> Iterator[dict]:
    runs: dict = {}
    yield runs
    for run in runs.values():
        run.close()


#: How actors are started: through the resident agent, or a docker exec/subprocess each.
ACTOR_PATHS = ("agent", "exec")


def start_with_path(name: str, spec: ServerSpec, path: str = "agent") -> LabRun:
    """``lab_by_name(name).start(spec)`` with actors started the ``path`` way
    (``WRAPLAB_AGENT`` is read when the lab launches)."""
    if path not in ACTOR_PATHS:
        raise ValueError(f"actor path {path!r}: want one of {ACTOR_PATHS}")
    old = os.environ.get(agent.SWITCH)
    os.environ[agent.SWITCH] = "1" if path == "agent" else "0"
    try:
        run = lab_by_name(name).start(spec)
    finally:
        if old is None:
            os.environ.pop(agent.SWITCH, None)
        else:
            os.environ[agent.SWITCH] = old
    uses_agent = any("resident actor agent" in e.note for e in run.transcript)
    if uses_agent != (path == "agent"):
        run.close()
        raise AssertionError(f"{name}: asked for the {path} path, the lab did otherwise")
    return run


@pytest.fixture
def served(request: pytest.FixtureRequest, _module_runs: dict) -> LabRun:
    """A server (``wrapref serve --profile agentsh``) in lab ``request.param = (lab name,
    placement[, actor path])``, started once per module and shared by the tests that ask
    for it. The actor path (:data:`ACTOR_PATHS`) defaults to the resident agent."""
    name, placement, *rest = request.param
    path = rest[0] if rest else "agent"
    key = (name, placement, path)
    run = _module_runs.get(key)
    if run is None or run.closed:
        run = start_with_path(name, wrapref_spec("agentsh", Placement(placement)), path)
        _module_runs[key] = run
    return watch(request, run)
