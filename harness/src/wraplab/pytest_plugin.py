"""wraplab's pytest plugin (entry point ``pytest11``): the verdict matrix as pytest items.

Inert until a target is named::

    pytest --wraplab-target my-server.toml [--wraplab-lab docker] [-k wrong-uid]

or, as one line of configuration in the implementer's own pytest.ini / pyproject.toml::

    wraplab_targets = my-server.toml          # [pytest] / [tool.pytest.ini_options]

Then the scenario files are collected like test files (``pytest_collect_file``): each is
a :class:`ScenarioFile` whose items are its cells against every named target, in every lab,
named like ``wrong-uid[agentsh-notify-docker]`` (``-k``, ``-m`` with the markers below). An
item runs through the runner ``wraplab run``/``matrix`` use (:func:`wraplab.engine.run_cell`)
and passes when the verdict is the expected one; a cell the target cannot run is skipped
with the reason.

Options (each also from the environment, for CI): ``--wraplab-target`` (repeatable; ini
``wraplab_targets``; ``WRAPLAB_TARGETS``), ``--wraplab-lab`` (docker, local; repeatable;
ini ``wraplab_labs``; ``WRAPLAB_LABS``; default both), ``--wraplab-base`` (``WRAPLAB_BASE``,
default bookworm), ``--wraplab-scenario`` (repeatable; ``WRAPLAB_SCENARIOS``; an unknown
slug is a usage error), ``--wraplab-no-events`` (``WRAPLAB_NO_EVENTS``).

Markers: the lab (``docker``, ``local``), the scenario with ``_`` for ``-``
(``-m "wrong_uid and docker"``), ``exclusive`` (floods and races: run them in a pass of
their own, not beside other cells; xdist workers may run several, since each cell holds
the machine's cores while it attacks, :mod:`wraplab.engine.cores`), ``requires_docker`` /
``requires_root``: gates that skip with a reason on a developer's machine and **fail**
when ``CI`` is set, so CI can never go green by skipping.

Reports: every cell's target, verdict, expectation and guard are JUnit properties; with
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

OUTCOMES: list = []
_STATE_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("wraplab", "wraplab: the verdict matrix against a target")
    group.addoption("--wraplab-target", action="append", metavar="FILE|NAME",
                    help="a target file (TOML) or wrapref:<profile>; repeatable")
    group.addoption("--wraplab-lab", action="append", choices=("docker", "local"),
                    help="where the cells run (repeatable; default: docker and local)")
    group.addoption("--wraplab-base", metavar="BASE",
                    help="image base of the Docker lab (default bookworm)")
    group.addoption("--wraplab-scenario", action="append", metavar="SLUG",
                    help="only these scenario(s) (repeatable)")
    group.addoption("--wraplab-no-events", action="store_true",
                    help="hide the server's events from the judge")
    parser.addini("wraplab_targets", "target files (relative to the ini file) or "
                  "wrapref:<profile> names whose matrix is collected", type="linelist")
    parser.addini("wraplab_labs", "labs the matrix runs in (docker, local)", type="linelist")


def _words(value: str | None) -> list[str]:
    return [x for x in (value or "").replace(",", " ").split() if x]


def _settings(config) -> dict:
    """The targets, labs, base and scenarios asked for (options > ini > environment)."""
    if _STATE_KEY in config.stash:
        return config.stash[_STATE_KEY]
    names = list(config.getoption("wraplab_target") or [])
    if not names:
        ini = config.getini("wraplab_targets")
        base = Path(config.inipath).parent if config.inipath else Path.cwd()
        names = [n if n.startswith("wrapref:") or Path(n).is_absolute() else str(base / n)
                 for n in ini]
    names = names or _words(os.environ.get("WRAPLAB_TARGETS"))
    labs = list(config.getoption("wraplab_lab") or config.getini("wraplab_labs")
                or _words(os.environ.get("WRAPLAB_LABS", "docker,local")))
    scenarios = list(config.getoption("wraplab_scenario") or
                     _words(os.environ.get("WRAPLAB_SCENARIOS")))
    state = {"targets": names, "labs": labs, "scenarios": scenarios,
             "base": config.getoption("wraplab_base") or os.environ.get("WRAPLAB_BASE",
                                                                       "bookworm")}
    config.stash[_STATE_KEY] = state
    return state


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: runs in the Docker lab")
    config.addinivalue_line("markers", "local: runs in the local lab")
    config.addinivalue_line("markers", "requires_docker: needs a Docker engine and images")
    config.addinivalue_line("markers", "requires_root: needs root (local lab)")
    config.addinivalue_line("markers", "scenario(slug): the cell's scenario")
    config.addinivalue_line("markers", "exclusive: needs the machine to itself while it "
                                       "attacks (floods, races): run these in a pass of "
                                       "their own")
    state = _settings(config)
    if not state["targets"]:
        return
    if config.getoption("wraplab_no_events"):
        from wraplab.targets import NO_EVENTS_ENV

        os.environ[NO_EVENTS_ENV] = "1"  # xdist workers inherit it
    from wraplab import engine, targets

    try:
        state["loaded"] = [targets.register(t) if t.source else t
                           for t in (targets.get(n) for n in state["targets"])]
        found = engine.discover()
    except (targets.TargetError, engine.ScenarioError) as exc:
        raise pytest.UsageError(f"wraplab: {exc}") from None
    unknown = set(state["scenarios"]) - {s.slug for s in found}
    if unknown:
        raise pytest.UsageError(f"wraplab: unknown scenario(s) {sorted(unknown)} "
                                "(WRAPLAB_SCENARIOS / --wraplab-scenario)")
    bad_labs = set(state["labs"]) - set(engine.LABS)
    if bad_labs:
        raise pytest.UsageError(f"wraplab: unknown lab(s) {sorted(bad_labs)} (docker, local)")
    for s in found:
        config.addinivalue_line("markers", f"{marker_of(s.slug)}: scenario {s.slug}")
    # The scenario files are what the matrix is collected from: make pytest visit them
    # when it collects a directory (not when it was given single test files or node ids).
    where = str(engine.SCENARIO_DIR)
    if where not in config.args and any(Path(a.split("::")[0]).is_dir() for a in config.args):
        config.args.append(where)


def marker_of(slug: str) -> str:
    return slug.replace("-", "_")


def pytest_collect_file(file_path: Path, parent):
    from wraplab.engine import SCENARIO_DIR

    if (file_path.suffix == ".py" and file_path.parent == SCENARIO_DIR
            and not file_path.name.startswith("_")):
        state = _settings(parent.config)
        if state["targets"] and (not state["scenarios"] or file_path.stem in
                                 state["scenarios"]):
            return ScenarioFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(session, config, items):
    """The cells after the other tests, interleaved by scenario as ``wraplab matrix`` runs
    them (:func:`wraplab.engine.runner.interleaved`): xdist hands them out in this order."""
    from wraplab.engine.runner import interleaved

    cells = [item for item in items if isinstance(item, CellItem)]
    if cells:
        items[:] = ([item for item in items if not isinstance(item, CellItem)]
                    + interleaved(cells, lambda item: item.cell.scenario))


class ScenarioFile(pytest.File):
    """A scenario file: one item per cell, against every target, in every lab."""

    def collect(self):
        from wraplab import engine, targets

        state = _settings(self.config)
        self.scenario = scenario = engine.load_scenario(self.path)
        chosen = state.get("loaded") or [targets.get(n) for n in state["targets"]]
        for lab in state["labs"]:
            for cell in engine.make_cells([scenario], lab=lab, base=state["base"],
                                          targets=chosen):
                yield CellItem.from_parent(self, name=cell.name, cell=cell)


# -- gates ---------------------------------------------------------------------------------


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
        lab = DockerLab(base=base)
        problem = lab.problem()
        if problem is None:
            lab.image()  # built once per process; the build is locked across processes
        return problem
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


@functools.cache
def _local_problem() -> str | None:
    if os.geteuid() != 0:
        return "the local lab needs root"
    from wraplab.labs import LocalLab

    try:
        return LocalLab().problem()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def requires_docker(base: str = "bookworm") -> None:
    """Gate: a Docker engine and the lab image for ``base`` (built here when missing)."""
    problem = _docker_problem(base)
    if problem:
        skip_or_fail(f"requires_docker: {problem}")


def requires_root() -> None:
    """Gate: root on a Linux host (the local lab makes real users by uid)."""
    problem = _local_problem()
    if problem:
        skip_or_fail(f"requires_root: {problem}")


# -- items ---------------------------------------------------------------------------------


class Mismatch(AssertionError):
    def __init__(self, outcome):
        super().__init__(f"{outcome.cell.name}: {outcome.verdict}, expected "
                         f"{outcome.cell.expectation}")
        self.outcome = outcome


class CellItem(pytest.Item):
    """One matrix cell: passes when the verdict (and guard) is the expected one."""

    def __init__(self, *, cell, **kwargs):
        super().__init__(**kwargs)
        self.scenario = self.parent.scenario
        self.cell = cell
        self.outcome = None
        self.add_marker(cell.lab)
        self.add_marker("requires_docker" if cell.lab == "docker" else "requires_root")
        self.add_marker(marker_of(cell.scenario))
        self.add_marker(pytest.mark.scenario(cell.scenario))
        if self.scenario.exclusive:
            self.add_marker("exclusive")
        self.user_properties.append(("target", cell.target))

    def setup(self) -> None:
        if self.cell.not_run:
            pytest.skip(f"not run: {self.cell.not_run}")
        if self.cell.lab == "docker":
            requires_docker(self.cell.base)
        else:
            requires_root()

    def runtest(self) -> None:
        from wraplab import engine

        self.outcome = engine.run_cell(self.cell, scenario=self.scenario)
        OUTCOMES.append(self.outcome)
        self.user_properties.append(("verdict", str(self.outcome.verdict)))
        self.user_properties.append(("expected", str(self.cell.expectation)))
        self.user_properties.append(("guard", self.outcome.guard or ""))
        if self.cell.expect_reason:
            self.user_properties.append(("expect_reason", self.cell.expect_reason))
        if not self.outcome.ok:
            raise Mismatch(self.outcome)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, Mismatch):
            from wraplab import report

            out = excinfo.value.outcome
            return (f"verdict {out.verdict}, expected {out.cell.expectation}: {out.reason}\n\n"
                    + report.render_outcome(out))
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, self.name


_WARM: list = []


def pytest_sessionstart(session):
    """When this session collects a matrix: containers checked clean serve later cells of the
    same kind, as in ``wraplab matrix`` (:mod:`wraplab.labs.warm`; ``WRAPLAB_WARM=0`` turns
    it off); removed at the session end."""
    if not _settings(session.config)["targets"]:
        return  # no matrix collected here (e.g. the lab tests): containers are never reused
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
    from wraplab import report

    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = (f"outcomes-{os.environ.get('WRAPLAB_SUITE', 'integration')}-"
            f"{os.environ.get('WRAPLAB_PASS', 'all')}-{worker}.json")
    labs = sorted({o.cell.lab for o in OUTCOMES})
    data = report.to_json(OUTCOMES, None, {"requested": labs, "ran": labs, "notes": []})
    try:
        import jsonschema
    except ImportError:  # an implementer's suite without wraplab[test]: unchecked
        jsonschema = None
    if jsonschema is not None:
        schema = json.loads((report.SCHEMAS / "report-v1.schema.json").read_text())
        jsonschema.validate(json.loads(json.dumps(data, default=str)), schema)
    path = Path(where) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
