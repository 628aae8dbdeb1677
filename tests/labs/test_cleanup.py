"""Nothing is left behind: after a normal end, an exception, a signal to the harness
process mid-run, and (swept at the next start) after the harness was killed outright."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import docker
import psutil
import pytest
from conftest import DOCKER_PARAMS, LAB_PARAMS
from wraplab.labs import LabRun, LocalRun, lab_by_name
from wraplab.labs.cleanup import LABEL_RUN, processes_of_local_run, wait_for
from wraplab.targets import wrapref_spec

HOLD = Path(__file__).parent / "helpers" / "hold_lab.py"


class Boom(Exception):
    pass


def containers_of(run_id: str) -> list:
    client = docker.from_env()
    try:
        return client.containers.list(all=True, filters={"label": f"{LABEL_RUN}={run_id}"},
                                      ignore_removed=True)
    finally:
        client.close()


def leftovers(lab: str, run_id: str, labdir: str | None = None) -> list[str]:
    """What of a run is still there: containers, or the lab dir and its processes."""
    if lab == "local":
        found = [f"process {p.pid} {p.info.get('cmdline')}"
                 for p in processes_of_local_run(run_id, Path(labdir) if labdir else None)]
        if labdir and os.path.exists(labdir):
            found.append(f"directory {labdir}")
        return found
    return [f"container {c.name} ({c.status})" for c in containers_of(run_id)]


def facts_of(run: LabRun) -> tuple[str, str | None]:
    return run.id, str(run.labdir) if isinstance(run, LocalRun) else None


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_nothing_left_after_a_normal_end(lab):
    with lab_by_name(lab).start(wrapref_spec("agentsh")) as run:
        run_id, labdir = facts_of(run)
        assert leftovers(lab, run_id, labdir), "the running lab should be visible"
        server_pid = run.server.pid
        assert run.exec("owner", ["true"]).ok
    assert run.closed
    assert leftovers(lab, run_id, labdir) == []
    if lab == "local":
        assert not psutil.pid_exists(server_pid) or \
            psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_nothing_left_after_an_exception(lab):
    seen = {}
    with pytest.raises(Boom), lab_by_name(lab).start(wrapref_spec("agentsh")) as run:
        seen["id"], seen["labdir"] = facts_of(run)
        run.spawn("attacker", ["sleep", "60"])  # still running when the exception hits
        raise Boom()
    assert leftovers(lab, seen["id"], seen["labdir"]) == []


def hold(lab: str) -> tuple[subprocess.Popen, dict]:
    """Start hold_lab.py (a harness process holding a started lab) and wait until it says
    the lab is up; then check it really is."""
    proc = subprocess.Popen([sys.executable, str(HOLD), lab], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the lab is started (or the process died)
    if not line:
        proc.wait(10)
        pytest.fail(f"hold_lab.py exited {proc.returncode} before starting:\n{proc.stderr.read()}")
    info = json.loads(line)
    assert leftovers(lab, info["run"], info.get("labdir")), f"lab not up: {info}"
    return proc, info


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_nothing_left_after_a_signal_mid_run(lab, sig):
    proc, info = hold(lab)
    try:
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, proc.stderr.read()
    assert leftovers(lab, info["run"], info.get("labdir")) == []


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie its new parent has not reaped yet (a container
    whose pid 1 is not an init reaps nothing; the server was killed all the same)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_a_killed_harness_is_swept_at_the_next_start(lab):
    proc, info = hold(lab)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(30)
    assert leftovers(lab, info["run"], info.get("labdir")), "SIGKILL should leave the lab behind"
    with lab_by_name(lab).start(wrapref_spec("agentsh")):
        assert leftovers(lab, info["run"], info.get("labdir")) == []
    if lab == "local":
        wait_for(lambda: gone(info["server_pid"]), 10, what="server gone")


def volumes_of(run_id: str) -> list[str]:
    client = docker.from_env()
    try:
        return [v.name for v in client.volumes.list(filters={"label": f"{LABEL_RUN}={run_id}"})]
    finally:
        client.close()


@pytest.mark.parametrize("lab", DOCKER_PARAMS)
@pytest.mark.parametrize("how", ["normal-end", "exception"])
def test_peer_container_and_volumes_removed_with_the_run(lab, how):
    """``ServerSpec(peer=True)``: the peer container and the two shared volumes are
    labelled with the run and removed at its end like the main container; what one
    container writes to the shared temp base the other sees, with the same numeric uid."""
    seen: dict = {}
    with contextlib.ExitStack() as stack:
        if how == "exception":
            stack.enter_context(pytest.raises(Boom))
        run = stack.enter_context(lab_by_name(lab).start(wrapref_spec("agentsh",
                                                                            peer=True)))
        seen["id"] = run.id
        names = sorted(c.name for c in containers_of(run.id))
        assert names == sorted([run.container_name, run.peer.name]), names
        assert sorted(volumes_of(run.id)) == sorted(run.volumes) and len(run.volumes) == 2
        made = run.peer.exec("owner", ["touch", f"{run.temp_base}/from-peer"])
        assert made.ok, made.describe() + made.stderr
        facts = run.stat(f"{run.temp_base}/from-peer")
        assert facts.exists and facts.uid == run.users["owner"].uid, facts
        probe = run.peer.tool("probe", ["--connect", run.api_path], as_user="owner")
        assert probe["uid"] == run.users["owner"].uid, probe
        assert probe["connect"]["result"] == "ok" and probe["connect"]["peer"]["uid"] == 0, probe
        run.peer.spawn("attacker", ["sleep", "60"])  # still running at the end
        if how == "exception":
            raise Boom()
    assert containers_of(seen["id"]) == []
    assert volumes_of(seen["id"]) == []


@pytest.mark.requires_docker
def test_clean_keeps_a_live_run_and_removes_a_dead_one(capsys):
    """``wraplab clean`` (no ``--force``) removes what a killed harness left, never the
    containers of a run that is still going (another terminal's, another xdist worker's)."""
    from wraplab.cli import main

    proc, dead = hold("docker-bookworm")
    proc.kill()  # SIGKILL: its containers stay behind, owner gone
    proc.wait(30)
    with lab_by_name("docker-bookworm").start(wrapref_spec("agentsh")) as live:
        assert main(["clean"]) == 0
        out = capsys.readouterr().out
        assert containers_of(dead["run"]) == [], out
        assert [c.name for c in containers_of(live.id)] == [live.container_name], out
        assert "--force removes them" in out and live.container_name in out, out
        assert live.exec("owner", ["true"]).ok
