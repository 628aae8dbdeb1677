"""Integration tests: every scenario x profile x socket kind (x placement x transport) cell,
run in each lab, as pytest items named like ``wrong-uid[agentsh-signal-docker]``.

Selection:
- ``WRAPLAB_LABS`` (default ``docker,local``) and ``WRAPLAB_BASE`` (default ``bookworm``);
- ``WRAPLAB_SCENARIOS`` (comma-separated slugs, default every scenario): a CI group
  (``wraplab list --groups``); an unknown slug is a usage error;
- markers: the lab (``docker``, ``local``) and the scenario with ``_`` for ``-``
  (``-m "wrong_uid and docker"``); ``-k agentsh``.

Gates (named, reusable): ``requires_docker`` and ``requires_root`` skip with a reason on a
developer's machine and **fail** when ``CI`` is set, so CI can never go green by skipping.
Items are independent (each cell starts its own lab) and collected in a fixed order, so
pytest-xdist can share them out (flood cells stay together in one xdist group).

Reports: every cell's verdict, expectation and guard are JUnit properties; with
``WRAPLAB_REPORT_DIR`` set (scripts/pytest_passes.py sets it), each pytest process writes
the outcomes it ran as a wraplab JSON report (checked against the report schema) to
``outcomes-<suite>-<pass>-<worker>.json`` there, for ``wraplab report`` to merge.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from wraplab import engine, report

OUTCOMES: list[engine.Outcome] = []


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"{reason} (CI is set: a missing prerequisite is a failure)", pytrace=False)
    pytest.skip(reason)


@functools.cache
def _docker_problem(base: str) -> str | None:
    from wraplab.labs import DockerLab

    try:
        return DockerLab(base=base).problem()
    except Exception as exc:  # the lab cannot even be made
        return f"{type(exc).__name__}: {exc}"


@functools.cache
def _local_problem() -> str | None:
    from wraplab.labs import LocalLab

    try:
        return LocalLab().problem()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@functools.cache
def _docker_image(base: str) -> str | None:
    """Build (or find) the lab image once per process; the image build is locked across
    processes (xdist workers), so only one builds it."""
    from wraplab.labs import DockerLab

    try:
        DockerLab(base=base).image()
    except Exception as exc:
        return f"cannot build the lab image for {base}: {type(exc).__name__}: {exc}"
    return None


def requires_docker(base: str = "bookworm") -> None:
    """Gate: a Docker engine and the lab image for ``base`` (built here when missing)."""
    problem = _docker_problem(base) or _docker_image(base)
    if problem:
        skip_or_fail(f"requires_docker: {problem}")


def requires_root() -> None:
    """Gate: root on a Linux host (the local lab makes real users by uid)."""
    if os.geteuid() != 0:
        skip_or_fail("requires_root: the local lab needs root")
    problem = _local_problem()
    if problem:
        skip_or_fail(f"requires_root: {problem}")


GATES = {"docker": requires_docker, "local": requires_root}


def selected_labs() -> list[str]:
    labs = [x.strip() for x in os.environ.get("WRAPLAB_LABS", "docker,local").split(",")]
    return [x for x in labs if x]


def selected_base() -> str:
    return os.environ.get("WRAPLAB_BASE", "bookworm")


def marker_of(slug: str) -> str:
    return slug.replace("-", "_")


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: runs in the Docker lab")
    config.addinivalue_line("markers", "local: runs in the local lab")
    config.addinivalue_line("markers", "requires_docker: needs a Docker engine and images")
    config.addinivalue_line("markers", "requires_root: needs root (local lab)")
    config.addinivalue_line("markers", "scenario(slug): the cell's scenario")
    config.addinivalue_line("markers", "exclusive: needs the machine to itself (floods, races): "
                                       "run these without xdist")
    for s in engine.discover():
        config.addinivalue_line("markers", f"{marker_of(s.slug)}: scenario {s.slug}")


class Mismatch(AssertionError):
    def __init__(self, outcome: engine.Outcome):
        super().__init__(f"{outcome.cell.name}: {outcome.verdict}, expected "
                         f"{outcome.cell.expected}")
        self.outcome = outcome


class ScenarioItem(pytest.Item):
    """One matrix cell."""

    def __init__(self, *, cell: engine.Cell, **kwargs):
        super().__init__(**kwargs)
        self.cell = cell
        self.outcome: engine.Outcome | None = None
        self.add_marker(cell.lab)
        self.add_marker("requires_docker" if cell.lab == "docker" else "requires_root")
        self.add_marker(marker_of(cell.scenario))
        self.add_marker(pytest.mark.scenario(cell.scenario))
        if engine.get_scenario(cell.scenario).exclusive:
            self.add_marker("exclusive")
            self.add_marker(pytest.mark.xdist_group("flood"))

    def setup(self) -> None:
        gate = GATES[self.cell.lab]
        gate(self.cell.base) if self.cell.lab == "docker" else gate()

    def runtest(self) -> None:
        self.outcome = engine.run_cell(self.cell)
        OUTCOMES.append(self.outcome)
        self.user_properties.append(("verdict", str(self.outcome.verdict)))
        self.user_properties.append(("expected", str(self.cell.expected)))
        self.user_properties.append(("guard", self.outcome.guard or ""))
        if not self.outcome.ok:
            raise Mismatch(self.outcome)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, Mismatch):
            out = excinfo.value.outcome
            return (f"verdict {out.verdict}, expected {out.cell.expected}: {out.reason}\n\n"
                    + report.render_outcome(out))
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, self.name


def selected_scenarios(scenarios: list[engine.Scenario]) -> list[engine.Scenario]:
    wanted = [x.strip() for x in os.environ.get("WRAPLAB_SCENARIOS", "").split(",") if x.strip()]
    if not wanted:
        return scenarios
    unknown = set(wanted) - {s.slug for s in scenarios}
    if unknown:
        raise pytest.UsageError(f"WRAPLAB_SCENARIOS: unknown scenario(s) {sorted(unknown)}")
    return [s for s in scenarios if s.slug in wanted]


def matrix_cells() -> list[engine.Cell]:
    scenarios = selected_scenarios(engine.discover())
    cells: list[engine.Cell] = []
    for lab in selected_labs():
        cells += engine.make_cells(scenarios, lab=lab, base=selected_base())
    return cells


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector, name, obj):
    if getattr(obj, "wraplab_matrix", False):
        return [ScenarioItem.from_parent(collector, name=c.name, cell=c) for c in matrix_cells()]
    return None


_WARM: list = []


def pytest_sessionstart(session):
    """Containers checked clean serve later cells of the same kind, as in ``wraplab matrix``
    (:mod:`wraplab.labs.warm`; ``WRAPLAB_WARM=0`` turns it off); removed at the session end."""
    from wraplab.labs import warm

    block = warm.reuse()
    block.__enter__()
    _WARM.append(block)


def pytest_sessionfinish(session, exitstatus):
    """Write this process's outcomes as a wraplab JSON report (xdist: one per worker)."""
    while _WARM:
        _WARM.pop().__exit__(None, None, None)
    where = os.environ.get("WRAPLAB_REPORT_DIR")
    if not where or not OUTCOMES:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = (f"outcomes-{os.environ.get('WRAPLAB_SUITE', 'integration')}-"
            f"{os.environ.get('WRAPLAB_PASS', 'all')}-{worker}.json")
    labs = sorted({o.cell.lab for o in OUTCOMES})
    data = report.to_json(OUTCOMES, None, {"requested": labs, "ran": labs, "notes": []})
    import jsonschema

    schema = json.loads((report.SCHEMAS / "report-v1.schema.json").read_text())
    jsonschema.validate(json.loads(json.dumps(data, default=str)), schema)
    path = Path(where) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
