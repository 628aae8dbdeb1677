"""The resident actor agent (``wraplab.actors.agent``) against the exec path it replaces.

An actor forked by the agent must be the same process, as far as the kernel and the actor
can tell, as one ``docker exec``-ed (or spawned by subprocess in the local lab): uid, gid,
supplementary groups, every capability set, no_new_privs, seccomp, environment, umask,
working directory, exit codes; an in-process tool is dumpable (its /proc entries belong to
its user, as after an execve).
"""

from __future__ import annotations

import gc

import pytest
from conftest import lab_param, start_with_path, watch
from wraplab.labs import LabError, LabRun
from wraplab.labs import agent as agent_link
from wraplab.targets import wrapref_spec

ROLES = ("owner", "bystander", "attacker", "service", "root")
STATUS_KEYS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs", "Seccomp")
PROBE_KEYS = ("uid", "euid", "gid", "egid", "groups", "cap_eff", "caps")
SHOW = ("cat /proc/self/status; echo; env | sort; echo umask=$(umask); echo cwd=$(pwd)")
LABS = [lab_param("docker-bookworm"), lab_param("local")]


def process_facts(run: LabRun) -> dict:
    """What each role's actor sees of itself, lab-specific paths and run ids blanked."""
    out = {}
    for role in ROLES:
        probe = run.tool("probe", ["--connect", run.api_path], as_user=role)
        shown = run.exec(role, ["sh", "-c", SHOW], timeout=30)
        assert shown.exit_code == 0, shown.describe()
        labdir = str(getattr(run, "labdir", "/no-lab-dir"))
        lines = sorted(
            line.replace(labdir, "LABDIR") for line in shown.stdout.splitlines()
            if line.partition(":")[0] in STATUS_KEYS
            or ("=" in line and not line.startswith(("WRAPLAB_RUN=", "HOSTNAME="))))
        bad_args = run.exec(role, ["python3", "-m", "wraplab.actors.probe", "--no-such-flag"],
                            timeout=30)
        missing = run.exec(role, ["python3", "-m", "wraplab.actors.no_such_tool"], timeout=30)
        # The reference client (the agent runs wraplab's ``wrapref`` launcher in the child)
        client = run.exec(role, ["wrapref", "wrap", "--api", run.api, "--dial", "once",
                                 "--timeout", "4"], timeout=60)
        wrap = client.json() if client.stdout.strip() else {}
        usage = run.exec(role, ["wrapref", "--no-such-flag"], timeout=30)
        out[role] = {
            "probe": {k: probe[k] for k in PROBE_KEYS},
            "connect": probe["connect"]["result"],
            "status_env": lines,
            "bad_args": (bad_args.exit_code, "usage:" in bad_args.stderr),
            "missing_tool": (missing.exit_code, "No module named" in missing.stderr),
            "client": (client.exit_code, wrap.get("ok"), wrap.get("step"), wrap.get("uid"),
                       wrap.get("fs_isolation")),
            "client_usage": (usage.exit_code, "usage: wrapref" in usage.stderr),
        }
    return out


@pytest.mark.parametrize("lab", LABS)
def test_agent_and_exec_paths_give_actors_the_same_process(request, lab):
    spec = wrapref_spec("agentsh")
    facts = {}
    for path in ("exec", "agent"):
        run = watch(request, start_with_path(lab, spec, path), whole=True)
        try:
            facts[path] = process_facts(run)
        finally:
            run.close()
    for role in ROLES:
        assert facts["agent"][role] == facts["exec"][role], role
    # Not vacuous: the roles differ from each other.
    assert facts["agent"]["owner"]["probe"]["uid"] != facts["agent"]["attacker"]["probe"]["uid"]
    assert facts["agent"]["owner"]["bad_args"] == (2, True)
    assert facts["agent"]["owner"]["missing_tool"] == (1, True)
    owner, attacker = facts["agent"]["owner"]["client"], facts["agent"]["attacker"]["client"]
    assert owner[:2] == attacker[:2] == (0, True) and owner[3] != attacker[3]  # each her own
    assert facts["agent"]["owner"]["client_usage"] == (2, True)


@pytest.mark.parametrize("lab", LABS)
def test_in_process_tool_is_dumpable_and_killed_like_an_exec(request, lab):
    run = watch(request, start_with_path(lab, wrapref_spec("agentsh"), "agent"),
                whole=True)
    try:
        owner = run.users["owner"]
        held = run.spawn("owner", ["python3", "-m", "wraplab.actors.barrier", "wait",
                                   "--path", f"{run.temp_base}/never-released",
                                   "--timeout", "30"])
        assert held.pid is not None
        facts = run.stat(f"/proc/{held.pid}/status")
        # A non-dumpable process (setuid without execve) has root-owned /proc entries.
        assert (facts.uid, facts.gid) == (owner.uid, owner.gid), facts
        info = run.tool("procinfo", [str(held.pid)])
        assert info["uid"] == owner.uid and int(info["cap_eff"], 16) == 0, info
        held.kill()
        result = held.wait(10)
        assert result.exit_code == (-9 if lab == "local" else 137), result.describe()
        assert not run.tool("procinfo", [str(held.pid)])["exists"]
    finally:
        run.close()


ACTOR_UID = 201001  # a local lab's owner (200000 + 1001); no passwd entry is needed


@pytest.mark.requires_root
@pytest.mark.parametrize("how", ["inline-tool", "exec"])
def test_started_comes_once_the_child_is_the_actor(how):
    """The agent's "started" means the actor exists as its user: its /proc entries are
    already the user's when the harness reads the pid. (CI once read root's: the agent
    said "started" right after the fork, before the child's setuid and prctl.)"""
    import json
    import os
    import signal
    import subprocess

    from wraplab import paths
    from wraplab.labs.local import LocalLab

    argv = (["python3", "-m", "wraplab.actors.barrier", "wait", "--path",
             "/nonexistent/never-released", "--timeout", "30"] if how == "inline-tool"
            else ["sleep", "30"])
    agent_proc = subprocess.Popen(
        [LocalLab().python, "-m", "wraplab.actors.agent"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(paths.ACTORS_DIR.parents[1])})
    seen = []
    try:
        for rid in range(60):
            agent_proc.stdin.write(json.dumps({
                "id": rid, "op": "spawn", "argv": argv, "uid": ACTOR_UID, "gid": ACTOR_UID,
                "groups": [ACTOR_UID], "env": {"PATH": "/usr/bin:/bin"}, "cwd": "/"}).encode()
                + b"\n")
            agent_proc.stdin.flush()
            answer = json.loads(agent_proc.stdout.readline())
            assert answer.get("ev") == "started", answer
            st = os.stat(f"/proc/{answer['pid']}/status")
            seen.append((st.st_uid, st.st_gid))
            os.kill(answer["pid"], signal.SIGKILL)
            while json.loads(agent_proc.stdout.readline()).get("ev") != "exit":
                pass
    finally:
        agent_proc.stdin.close()
        agent_proc.wait(10)
    assert seen == [(ACTOR_UID, ACTOR_UID)] * 60, sorted(set(seen))


def test_agent_switch_values(monkeypatch):
    for value, want in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv(agent_link.SWITCH, value)
        assert agent_link.enabled() is want
    monkeypatch.setenv(agent_link.SWITCH, "maybe")
    with pytest.raises(LabError, match="WRAPLAB_AGENT"):
        agent_link.enabled()


@pytest.mark.parametrize("lab", LABS)
def test_agent_link_survives_a_full_garbage_collection(request, lab):
    """docker-py's hijacked exec socket is held by a reference cycle; a full collection
    once closed it under the agent (EBADF on the next actor, seen in CI)."""
    run = watch(request, start_with_path(lab, wrapref_spec("agentsh"), "agent"), whole=True)
    try:
        gc.collect()
        if lab != "local":  # the hijacked response still holds its socket (not finalized)
            sock = run._agent._write.__self__
            assert sock.fileno() != -1 and sock._io_refs >= 1, (sock, sock._io_refs)
        shown = run.exec("owner", ["id", "-u"], timeout=30)
        assert shown.exit_code == 0, shown.describe()
        assert int(shown.stdout) == run.users["owner"].uid
        assert "resident actor agent" in run.format_transcript()
    finally:
        run.close()


@pytest.mark.parametrize("lab", LABS)
def test_the_agent_watches_a_socket_until_it_accepts_or_its_process_ends(request, lab):
    """The server's readiness is watched by the agent (await-socket), not polled by a new
    process per try: it answers when the socket accepts, when the process named is gone,
    or at its wait, whichever comes first."""
    run = watch(request, start_with_path(lab, wrapref_spec("agentsh"), "agent"), whole=True)
    try:
        assert "the agent saw the socket accept after" in run.format_transcript()
        link = run._agent
        up = link.call("await-socket", path=run.api_path, pid=run.server.pid, wait=5)
        assert (up["ok"], up["why"], up["tries"]) == (True, "connected", 1), up
        nobody = f"{run.temp_base}/nobody-listens.sock"
        late = link.call("await-socket", path=nobody, pid=None, wait=0.3)
        assert (late["ok"], late["why"]) == (False, "timeout") and late["tries"] > 1, late
        sleeper = run.spawn("owner", ["sleep", "60"])
        watcher = []
        link.request("await-socket", watcher.append, path=nobody, pid=sleeper.pid, wait=30)
        sleeper.signal("KILL")
        sleeper.wait(30)
        gone = link.call("await-socket", path=nobody, pid=sleeper.pid, wait=30)
        assert (gone["ok"], gone["why"]) == (False, "exited"), gone
        # the watch that was waiting when the process died ended then, not at its 30 s
        assert [(m["ok"], m["why"]) for m in watcher] == [(False, "exited")], watcher
        assert watcher[0]["waited_ms"] < 30_000
    finally:
        run.close()
