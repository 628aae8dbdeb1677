"""Events fetched once per cell: the judge reads the session's events, and when that read
already shows every loop ended and the directory gone, the report reuses it instead of
asking the server again (each read is a round trip through the lab)."""

from __future__ import annotations

import pytest
from wraplab.engine.cells import make_cells
from wraplab.engine.runner import run_cells
from wraplab.engine.scenarios import get_scenario


def event_reads(outcome) -> int:
    return sum(1 for p in outcome.processes
               if "/events" in " ".join(map(str, p.get("argv") or ())))


@pytest.mark.parametrize("lab", [
    pytest.param("docker", marks=pytest.mark.requires_docker, id="docker"),
    pytest.param("local", marks=pytest.mark.requires_root, id="local")])
def test_a_settled_cell_reads_its_events_once(lab):
    cells = [c for c in make_cells([get_scenario("wrong-uid")], lab=lab,
                                   profiles=["hardened"]) if c.socket == "notify"]
    (out,) = run_cells(cells[:1])
    assert out.ok, out.reason
    assert any(e.get("type") == "dir_removed" for e in out.events), out.events
    assert event_reads(out) == 1, [p.get("argv") for p in out.processes]
