"""run_cells' schedule: floods first on every lane, then one lane runs the exclusive cells
one at a time while the others run the rest. Checked with a stand-in for run_cell that
records which cells overlapped: no exclusive cell beside another exclusive cell or a
flood, and shared cells do run beside exclusive ones (that is the point: a flood cell
mostly waits on its windows)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from wraplab.engine import runner


def fake_cells(n_shared=8, n_alone=4, n_floods=3):
    kinds = ["shared"] * n_shared + ["alone"] * n_alone + ["floods"] * n_floods
    return [SimpleNamespace(scenario=k, target="t", not_run=None, id=f"{k}-{i}")
            for i, k in enumerate(kinds)]


SCENARIOS = {"shared": SimpleNamespace(exclusive=False, floods=False),
             "alone": SimpleNamespace(exclusive=True, floods=False),
             "floods": SimpleNamespace(exclusive=False, floods=True)}


def test_schedule_groups_cells_by_kind():
    cells = fake_cells()
    floods, alone, shared = runner.schedule(cells, SCENARIOS)
    assert [cells[i].scenario for i in floods] == ["floods"] * 3
    assert [cells[i].scenario for i in alone] == ["alone"] * 4
    assert [cells[i].scenario for i in shared] == ["shared"] * 8


def test_no_exclusive_cell_runs_beside_another_or_a_flood(monkeypatch):
    cells = fake_cells()
    running: set[str] = set()
    overlaps: list[tuple[str, set]] = []
    lock = threading.Lock()
    shared_running, alone_started, alone_looked = (threading.Event() for _ in range(3))
    exclusive_saw_shared = []

    def run_cell(cell, scenario=None):
        with lock:
            overlaps.append((cell.scenario, set(running)))
            running.add(cell.id)
        if cell.scenario == "shared":  # hold until an exclusive cell has seen us (bounded)
            shared_running.set()
            if alone_started.wait(2):
                alone_looked.wait(2)
        elif cell.scenario == "alone":
            alone_started.set()
            shared_running.wait(2)
            with lock:
                exclusive_saw_shared.append(any(c.startswith("shared") for c in running))
            alone_looked.set()
        with lock:
            running.discard(cell.id)
        return SimpleNamespace(cell=cell)

    monkeypatch.setattr(runner, "run_cell", run_cell)
    monkeypatch.setattr(runner, "get_scenario", lambda name: SCENARIOS[name])
    monkeypatch.setattr(runner.targets, "get", lambda name: SimpleNamespace(prepare=lambda: 0))
    outs = runner.run_cells(cells, jobs=2)
    assert [o.cell for o in outs] == cells  # in the cells' order, whatever ran when
    for kind, beside in overlaps:
        if kind == "alone":
            assert not any(b.startswith(("alone", "floods")) for b in beside), beside
        if kind == "floods":
            assert not any(b.startswith("alone") for b in beside), beside
    assert exclusive_saw_shared[0], "the first exclusive cell ran beside no shared cell"
