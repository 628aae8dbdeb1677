"""Warm labs (``wraplab.labs.warm``): a container serves the next cell only when the reuse
check finds nothing of the last cell in it; a planted leftover makes the check refuse."""

from __future__ import annotations

import docker
import docker.errors
import pytest
from conftest import DOCKER_PARAMS, watch
from wraplab.labs import lab_by_name, warm
from wraplab.targets import wrapref_spec

SPEC = wrapref_spec("agentsh")


def container_exists(container_id: str) -> bool:
    client = docker.from_env()
    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


def notes(run) -> str:
    return "\n".join(e.note for e in run.transcript if e.action == "lab")


@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_a_clean_container_serves_the_next_cell_with_nothing_of_the_last(request, lab,
                                                                            monkeypatch):
    monkeypatch.delenv(warm.SWITCH, raising=False)
    with warm.reuse():
        first = watch(request, lab_by_name(lab).start(SPEC), whole=True)
        with first:
            assert first.exec("owner", ["touch", f"{first.temp_base}/owner-was-here"]).ok
            sleeper = first.spawn("attacker", ["sleep", "300"])
            sleeper_pid, server_pid = sleeper.pid, first.server.pid
        warm.RECYCLER.drain()  # the reuse check runs in the background: let it end
        assert "checked clean, kept for the next cell" in notes(first), notes(first)
        second = watch(request, lab_by_name(lab).start(SPEC), whole=True)
        with second:
            assert second.container_id == first.container_id
            assert "reused for cell 2" in notes(second)
            assert second.listdir(second.temp_base) == []
            assert not second.tool("procinfo", [str(sleeper_pid)])["exists"]
            assert second.server.pid != server_pid and second.health["ok"]
            probe = second.tool("probe", ["--connect", second.api_path], as_user="owner")
            assert probe["connect"]["peer"]["pid"] == second.server.pid
        assert container_exists(first.container_id)  # idle in the pool
    assert not container_exists(first.container_id)  # the block's end removes it


LEFTOVERS = {
    # what an actor leaves behind -> the path the refusal names
    "file-in-var-tmp": ("attacker", ["touch", "/var/tmp/left-by-the-attacker"],
                        "/var/tmp/left-by-the-attacker"),
    "file-in-dev-shm": ("owner", ["touch", "/dev/shm/left-by-the-owner"],
                        "/dev/shm/left-by-the-owner"),
    "mode-changed": ("root", ["chmod", "0777", "/var/tmp"], "/var/tmp"),
}


@pytest.mark.parametrize("leftover", list(LEFTOVERS))
@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_a_leftover_makes_the_reuse_check_refuse(request, lab, leftover, monkeypatch):
    monkeypatch.delenv(warm.SWITCH, raising=False)
    actor, argv, path = LEFTOVERS[leftover]
    with warm.reuse():
        first = watch(request, lab_by_name(lab).start(SPEC), whole=True)
        with first:
            assert first.exec(actor, argv).ok
        warm.RECYCLER.drain()  # the reuse check runs in the background: let it end
        assert "not reused" in notes(first) and path in notes(first), notes(first)
        assert not container_exists(first.container_id)
        assert warm.idle_containers() == []
        second = watch(request, lab_by_name(lab).start(SPEC), whole=True)
        with second:
            assert second.container_id != first.container_id
            assert not second.stat(path).exists or leftover == "mode-changed"
            assert second.stat("/var/tmp").mode == 0o1777


@pytest.mark.parametrize("lab", DOCKER_PARAMS[:1])
def test_warm_off_and_outside_the_runner_a_container_is_never_reused(request, lab,
                                                                      monkeypatch):
    ids = []
    monkeypatch.setenv(warm.SWITCH, "0")
    with warm.reuse():
        for _ in range(2):
            with watch(request, lab_by_name(lab).start(SPEC), whole=True) as run:
                ids.append(run.container_id)
    monkeypatch.delenv(warm.SWITCH)
    with watch(request, lab_by_name(lab).start(SPEC), whole=True) as run:  # no reuse block
        ids.append(run.container_id)
    assert len(set(ids)) == 3 and not any(container_exists(i) for i in ids)


@pytest.mark.requires_docker
def test_scenario_cells_in_a_row_share_one_checked_clean_container(monkeypatch):
    """Real cells leave barrier directories (the owner held before its dial): the reuse
    check removes them, so a later cell of the same kind runs in the same container. (The
    barriers once made every check refuse, and each cell started a container of its own.)"""
    from wraplab.engine.cells import make_cells
    from wraplab.engine.runner import run_cell
    from wraplab.engine.scenarios import get_scenario

    monkeypatch.delenv(warm.SWITCH, raising=False)
    cells = make_cells([get_scenario("wrong-uid")], lab="docker", profiles=["hardened"])
    outcomes = []
    with warm.reuse():
        for cell in cells:
            outcomes.append(run_cell(cell))
            warm.RECYCLER.drain()  # the reuse check runs in the background: let it end
    assert [o.ok for o in outcomes] == [True] * len(cells), [o.reason for o in outcomes]
    lab_notes = [[p.get("note") or "" for p in o.processes if p.get("action") == "lab"]
                 for o in outcomes]
    reused = [any("reused for cell" in n for n in ns) for ns in lab_notes]
    assert reused == [False] + [True] * (len(cells) - 1), lab_notes
    assert warm.idle_containers() == []  # the reuse block removed the container
