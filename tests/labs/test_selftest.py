"""``wraplab selftest``: its weakenings name real cells, weaken what they say and nothing
else, and both labs run the scratch copy instead of the project's wrapref."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import LAB_PARAMS, lab_param
from wraplab import engine, selftest
from wraplab.targets import wrapref_spec

CHECK = r"""
import json, dataclasses
from wrapref import server as s
class W:  # the little an AcceptLoop needs from its wrap
    def __init__(self):
        self.server = s.WrapServer("hardened", apis=[])
        self.name = "w"
out = {}
for kind in ("notify", "signal", "ptrace"):
    loop = s.AcceptLoop(W(), kind, None, 0.0)
    out[kind] = {k: v for k, v in dataclasses.asdict(loop.profile).items()}
out["server"] = dataclasses.asdict(W().server.profile)
print(json.dumps(out))
"""


def _profiles(tmp_path, weakening):
    src = selftest.scratch_copy(weakening, tmp_path)
    res = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                         env={"PYTHONPATH": str(src.parent)}, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("w", selftest.WEAKENINGS, ids=lambda w: w.id)
def test_every_weakening_names_existing_cells_and_imports(w, tmp_path):
    for slug, sock, place, transport in w.cells:
        scenario = engine.get_scenario(slug)
        lab = next(iter(set(w.labs) & set(scenario.labs)))
        cells = scenario.cells(profiles=["hardened"], sockets=[sock], placements=[place],
                               transports=[transport], lab=lab)
        assert len(cells) == 1, (slug, sock, place, transport)
        assert cells[0].expected is engine.DEFENDED
    _profiles(tmp_path, w)  # the scratch copy imports with the weakening in


def test_a_per_kind_weakening_touches_that_kind_only(tmp_path):
    plain = _profiles(tmp_path / "plain", None)
    w = next(x for x in selftest.WEAKENINGS if x.id == "H6-signal")
    weak = _profiles(tmp_path / "weak", w)
    assert plain["signal"]["peer_check"] is True
    assert weak["signal"]["peer_check"] is False
    assert weak["notify"] == plain["notify"] and weak["ptrace"] == plain["ptrace"]
    assert weak["server"] == plain["server"]


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_labs_run_the_scratch_copy(lab, tmp_path):
    from wraplab.labs import DockerLab, LocalLab

    w = next(x for x in selftest.WEAKENINGS if x.id == "H6-signal")
    src = selftest.scratch_copy(w, tmp_path)
    made = LocalLab(wrapref_src=src) if lab == "local" else DockerLab(
        lab.removeprefix("docker-"), wrapref_src=src)
    with made.start(wrapref_spec("hardened", socket="signal")) as run:
        probe = ["python3", "-c", "import wrapref._weaken, os; "
                 "print(os.path.dirname(wrapref.__file__))"]
        res = run.exec("root", probe, timeout=30)
        assert res.exit_code == 0, res.describe()
    # ...and without wrapref_src the lab has the project's wrapref (no _weaken module).
    plain = LocalLab() if lab == "local" else DockerLab(lab.removeprefix("docker-"))
    with plain.start(wrapref_spec("hardened")) as run:
        assert run.exec("root", probe, timeout=30).exit_code != 0


@pytest.mark.parametrize("lab", [lab_param("docker-bookworm"), lab_param("local")])
def test_a_weakening_that_depends_on_the_servers_uid_applies(lab):
    """``H6-service`` weakens only a server that is not root when wrapref is imported. The
    lab must import the target's package as the server's user, as an exec does: the
    resident agent once imported it as root before the fork, the weakening never applied
    and the selftest's cells stayed defended for the wrong reason."""
    w = next(x for x in selftest.WEAKENINGS if x.id == "H6-service")
    kind, _, base = lab.partition("-")
    rows = selftest.run_weakening(w, [("dac-override-intruder", "notify", "service", "unix")],
                                  kind, base or "bookworm", say=lambda _line: None)
    assert [r["verdict"] for r in rows] == ["vulnerable"], rows


@pytest.mark.requires_root
def test_a_plan_keeps_each_entrys_rows_in_its_cells_order():
    """``run_plan`` runs the cells of every entry side by side; each entry's rows come back
    in its own cells' order, a cell its lab cannot run marked ``skipped`` in its place."""
    w = next(x for x in selftest.WEAKENINGS if x.id == "H6-notify")
    cells = [("symlink-race", "notify", "root", "unix"),  # Docker only
             ("dac-override-intruder", "notify", "root", "unix")]
    said = []
    control, weak = selftest.run_plan([(None, cells), (w, cells)], "local", "bookworm",
                                      said.append, jobs=2)
    assert [r["verdict"] for r in control] == ["skipped", "defended"], control
    assert [r["verdict"] for r in weak] == ["skipped", "vulnerable"], weak
    assert weak[1]["cell"] == "dac-override-intruder[hardened-notify-root-local]"
    assert sum("control" in line for line in said) == 1
    assert sum("H6-notify" in line for line in said) == 1
