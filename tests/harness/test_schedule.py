"""The order cells run in: one scenario at a time, round robin (``interleaved``), in
``wraplab matrix`` and in the pytest plugin, so that cells that wait and cells that work
run side by side instead of a whole scenario of each in a row."""

from __future__ import annotations

from harness_support import collected_ids
from wraplab.engine.runner import interleaved


def test_interleaved_takes_one_cell_of_each_scenario_in_turn():
    cells = ["flood-1", "flood-2", "flood-3", "stall-1", "race-1", "race-2"]
    assert interleaved(cells, lambda c: c.split("-")[0]) == [
        "flood-1", "stall-1", "race-1", "flood-2", "race-2", "flood-3"]
    assert interleaved([], str) == []


def test_the_plugin_hands_out_cells_interleaved_after_the_other_tests(tmp_path):
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    ids = collected_ids(tmp_path, "--wraplab-target", "wrapref:agentsh", "--wraplab-lab",
                        "docker", "-k", "wrong-uid or matching-uid or test_own")
    scenarios = [i.split("[")[0] for i in ids]
    assert scenarios[0] == "test_own"
    cells = scenarios[1:]
    assert sorted(cells) == ["matching-uid"] * 3 + ["wrong-uid"] * 3
    assert all(a != b for a, b in zip(cells, cells[1:])), ids  # never two in a row


def test_exclusive_cells_run_at_most_one_per_core():
    from wraplab.engine.runner import auto_jobs, cores, exclusive_jobs

    assert exclusive_jobs(auto_jobs()) == cores() < auto_jobs()
    assert exclusive_jobs(1) == 1
