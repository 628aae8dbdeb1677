"""Every lab, both Debian releases: real users, real uids, the server's capabilities.

The kernel is the witness: ``getuid()`` in the actor (the probe), SO_PEERCRED of the
server as seen by the actor, and SO_PEERCRED of the actor as seen by the server (the
``handoff_ok`` / ``peer_rejected`` events of ``wrapref serve``).
"""

from __future__ import annotations

import time

import docker
import pytest
from conftest import ACTOR_PATHS, DOCKER_PARAMS, LAB_PARAMS, LABS
from wraplab.labs import LabRun, Placement
from wraplab.labs.cleanup import LABEL_RUN
from wraplab.targets import wrapref_spec

PLACEMENTS = [p.value for p in Placement]
ACTORS = ("owner", "bystander", "attacker", "service", "root")


def served_params(labs=LABS, placements=PLACEMENTS, paths=("agent",)):
    out = []
    for lab in labs:
        mark = pytest.mark.requires_root if lab == "local" else pytest.mark.requires_docker
        for placement in placements:
            for path in paths:
                tail = "" if paths == ("agent",) else f"-{path}"
                out.append(pytest.param((lab, placement, path), marks=mark,
                                        id=f"{lab}-{placement}{tail}"))
    return out


ALL = served_params()
#: uids, groups and CapEff are proved on both ways of starting actors.
ALL_BOTH_PATHS = served_params(paths=ACTOR_PATHS)
ROOT_ONLY = served_params(placements=["root"])
DOCKER_ROOT = served_params(labs=("docker-bookworm", "docker-trixie"), placements=["root"])


@pytest.mark.parametrize("served", ALL_BOTH_PATHS, indirect=True)
@pytest.mark.parametrize("actor", ACTORS)
def test_actor_runs_as_its_declared_user(served: LabRun, actor):
    user = served.users[actor]
    probe = served.tool("probe", ["--connect", served.api_path], as_user=actor)
    assert (probe["uid"], probe["euid"], probe["gid"]) == (user.uid, user.uid, user.gid)
    if actor != "root":
        assert set(probe["groups"]) == {user.gid, *user.groups}
        assert probe["cap_eff"] == "0000000000000000"
    # The server end of the API socket, as the kernel reports it to this actor.
    server = served.users["service"] if served.spec.placement is Placement.SERVICE else None
    assert probe["connect"]["result"] == "ok"
    assert probe["connect"]["peer"]["uid"] == (server.uid if server else 0)
    assert probe["connect"]["peer"]["pid"] == served.server.pid


@pytest.mark.parametrize("served", ALL_BOTH_PATHS, indirect=True)
def test_server_capabilities_follow_the_placement(served: LabRun):
    info = served.server_info()
    placement = served.spec.placement
    assert info["pid"] == served.server.pid == served.health["pid"]
    assert info["exists"] and info["threads"] >= 1 and info["fd_count"] >= 3
    if placement is Placement.SERVICE:
        assert info["uid"] == served.users["service"].uid == served.health["uid"]
        assert int(info["cap_eff"], 16) == 0, info
        assert info["cap_eff_names"] == []
    else:
        assert info["uid"] == 0 == served.health["uid"]
        assert int(info["cap_eff"], 16) != 0
        assert "dac_override" in info["cap_eff_names"]
        if placement is Placement.ROOT:
            assert "chown" in info["cap_eff_names"], info
        else:
            assert "chown" not in info["cap_eff_names"], info
            assert int(info["cap_bnd"], 16) & 1 == 0, "CAP_CHOWN still in the bounding set"


@pytest.mark.parametrize("served", ALL, indirect=True)
def test_owner_wrap_is_seen_by_peercred(served: LabRun):
    """The owner's client end to end: the server's handoff_ok names the owner's uid, as
    SO_PEERCRED gave it, and the token the owner sent."""
    owner = served.users["owner"]
    done = served.exec("owner", ["wrapref", "wrap", "--api", served.api], timeout=60)
    assert done.exit_code == 0, done.describe()
    result = done.json()
    assert result["ok"] and result["uid"] == owner.uid
    events = served.events(result["session"])
    ok = [e for e in events if e["type"] == "handoff_ok"]
    assert [(e["peer_uid"], e["token"]) for e in ok] == [(owner.uid, result["token"])]
    (init,) = [e for e in events if e["type"] == "wrap_init"]
    assert init["caller_uid"] == owner.uid


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_wrapref_and_the_tools_load_from_bytecode(served: LabRun):
    """The labs compile wrapref and the actor tools ahead (the image at build, the local
    lab once per harness process): a user's ``wrapref wrap`` or server start does not
    compile them again (python -v names each code object's source)."""
    done = served.exec("owner", ["python3", "-v", "-c",
                                 "import wrapref.server, wrapref.api, wrapref.client, "
                                 "wraplab.actors.probe"], timeout=60)
    assert done.exit_code == 0, done.describe()
    loaded = {line.split("'")[1].rsplit("/", 1)[-1].split(".")[0]
              for line in done.stderr.splitlines()
              if line.startswith("# code object from") and "/__pycache__/" in line}
    assert {"server", "api", "client", "wire", "probe"} <= loaded, done.stderr[-2000:]


@pytest.mark.parametrize("served", ALL, indirect=True)
def test_intruder_is_refused_and_seen_by_peercred(served: LabRun):
    """The owner makes a wrap (wrap-init over the API); the attacker goes for its notify
    socket first, then the owner hands over on it. The attacker is refused by the kernel
    (EACCES: agentsh chowned the dir to the owner) or by the server's SO_PEERCRED check,
    which reports the attacker's real uid; only the owner's token arrives."""
    owner, attacker = served.users["owner"], served.users["attacker"]
    status, body = served.api_request("POST", "/api/v1/sessions", as_user="owner")
    assert status == 201, body
    session = body["id"]
    status, init = served.api_request(
        "POST", f"/api/v1/sessions/{session}/wrap-init",
        {"agent_command": "wraplab-agent", "agent_args": [], "caller_uid": owner.uid},
        as_user="owner")
    assert status == 200, init
    notify = init["notify_socket"]
    intruder = served.exec("attacker", ["wrapref", "wrap", "--notify-socket", notify,
                                        "--timeout", "5"], timeout=30)
    handoff = served.exec("owner", ["wrapref", "wrap", "--notify-socket", notify,
                                    "--timeout", "10"], timeout=30)
    assert handoff.exit_code == 0, handoff.describe()
    assert intruder.exit_code != 0, intruder.describe()
    refused, handed = intruder.json(), handoff.json()
    assert (refused["uid"], handed["uid"]) == (attacker.uid, owner.uid)
    events = served.events(session)
    ok = [e for e in events if e["type"] == "handoff_ok"]
    assert [(e["peer_uid"], e["token"]) for e in ok] == [(owner.uid, handed["token"])]
    rejected = [e for e in events if e["type"] == "peer_rejected"]
    if served.spec.placement is Placement.ROOT:
        # agentsh with CAP_CHOWN: the wrap dir belongs to the owner, mode 0700.
        assert refused["errno"] == "EACCES", refused
        assert rejected == []
    else:
        # No chown possible: dir 0711, socket 0666, the server's peer check refuses.
        assert [(e["peer_uid"], e["expected_uid"]) for e in rejected] == \
            [(attacker.uid, owner.uid)]
        assert rejected[0]["peer_pid"] == refused["pid"]


@pytest.mark.parametrize("served", DOCKER_ROOT, indirect=True)
def test_docker_lab_has_no_network(served: LabRun):
    probe = served.tool("probe", [], as_user="attacker")
    assert probe["interfaces"] == ["lo"]
    client = docker.from_env()
    try:
        (container,) = client.containers.list(filters={"label": f"{LABEL_RUN}={served.id}"})
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert set(container.attrs["NetworkSettings"]["Networks"]) <= {"none"}
        assert container.labels["wraplab"] == "1"
        assert container.labels["wraplab.owner-pid"].isdigit()
        assert container.attrs["HostConfig"]["Init"] is True
    finally:
        client.close()


@pytest.mark.parametrize("served", DOCKER_ROOT, indirect=True)
def test_image_users_match_users_conf(served: LabRun):
    for user in served.users.users:
        r = served.exec("root", ["getent", "passwd", user.name])
        assert r.exit_code == 0, r.describe()
        fields = r.stdout.strip().split(":")
        assert (fields[0], int(fields[2]), int(fields[3])) == (user.name, user.uid, user.gid)
    r = served.exec("root", ["getent", "group", "wrapusers"])
    assert r.stdout.strip().split(":")[2] == "1100"
    api_dir = served.stat("/run/wrapref")
    assert (api_dir.kind, api_dir.uid, api_dir.mode) == ("dir", 0, 0o755)


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_stat_reports_kind_owner_mode_and_acl(served: LabRun):
    owner = served.users["owner"]
    base = f"{served.temp_base}/stat-{time.monotonic_ns()}"
    script = (f"mkdir -m 0750 {base} && touch {base}/f && chmod 0640 {base}/f && "
              f"setfacl -m u:{owner.uid}:r-- {base}/f && ln -s /etc/hostname {base}/link")
    r = served.exec("root", ["sh", "-c", script])
    assert r.exit_code == 0, r.describe() + r.stderr
    d, f, link, sock, missing = served.stat_many(
        [base, f"{base}/f", f"{base}/link", served.api_path, f"{base}/nope"])
    assert (d.kind, d.uid, d.gid, d.mode, d.acl) == ("dir", 0, 0, 0o750, None)
    assert (f.kind, f.mode_octal) == ("file", "0640")
    assert f.acl == ["user::rw-", f"user:{owner.uid}:r--", "group::r--", "mask::r--", "other::---"]
    assert (link.kind, link.target) == ("symlink", "/etc/hostname")
    assert sock.kind == "socket" and sock.mode == 0o666
    assert not missing.exists and missing.kind is None
    assert served.listdir(base) == ["f", "link"]


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_exec_timeout_kills_the_actor(served: LabRun):
    r = served.exec("bystander", ["sleep", "60"], timeout=0.5)
    assert r.timed_out and not r.ok
    assert r.pid is not None
    gone = served.stat(f"/proc/{r.pid}")
    assert not gone.exists, f"actor pid {r.pid} still there after its timeout"


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_spawned_actor_can_be_killed(served: LabRun):
    h = served.spawn("attacker", ["sh", "-c", "sleep 60 & sleep 60; echo never"])
    assert h.pid and h.running
    h.kill()
    r = h.wait(10)
    assert r.exit_code != 0 and "never" not in r.stdout
    assert not served.stat(f"/proc/{h.pid}").exists


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_exec_many_runs_actors_at_the_same_time(served: LabRun):
    """Each actor waits until all three have checked in: only concurrent actors pass."""
    spot = f"{served.temp_base}/barrier-{time.monotonic_ns()}"
    served.exec("root", ["sh", "-c", f"mkdir -m 1777 {spot}"])
    code = (
        "import os, sys, time\n"
        f"spot = {spot!r}\n"
        "open(os.path.join(spot, str(os.getuid())), 'w').close()\n"
        "deadline = time.monotonic() + 20\n"
        "while len(os.listdir(spot)) < 3:\n"
        "    if time.monotonic() > deadline: sys.exit('alone')\n"
        "    time.sleep(0.02)\n"
        "print(os.getuid())\n"
    )
    results = served.exec_many([(a, ["python3", "-c", code]) for a in
                                ("owner", "bystander", "attacker")], timeout=40)
    assert [r.exit_code for r in results] == [0, 0, 0], [r.stderr for r in results]
    assert [int(r.stdout) for r in results] == [served.users[a].uid for a in
                                                ("owner", "bystander", "attacker")]


@pytest.mark.parametrize("served", ROOT_ONLY, indirect=True)
def test_server_log_api_and_transcript(served: LabRun):
    log = served.server_log()
    serving = [line for line in log if line.get("msg") == "serving"]
    assert serving and serving[0]["pid"] == served.server.pid
    status, body = served.api_request("GET", "/healthz", as_user="attacker")
    assert status == 200 and body["ok"] is True
    status, body = served.api_request("GET", "/api/v1/sessions/nope/events", as_user="owner")
    assert status == 404 and "error" in body
    r = served.exec("owner", ["id", "-u"])
    entry = served.transcript[-1]
    assert (entry.action, entry.actor, entry.uid, entry.argv, entry.exit_code) == \
        ("exec", "owner", served.users["owner"].uid, ("id", "-u"), 0)
    assert entry.stdout.strip() == r.stdout.strip() == str(served.users["owner"].uid)


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_tcp_api_and_server_stop(start_lab, lab):
    run = start_lab(lab, wrapref_spec("agentsh", transport="tcp", lab=lab))
    assert run.tcp_api and run.tcp_api.startswith("tcp:127.0.0.1:")
    assert not run.tcp_api.endswith(":0"), "the port the server really took"
    status, body = run.api_request("GET", "/healthz", as_user="attacker", api=run.tcp_api)
    assert status == 200 and body["ok"] is True
    stopped = run.stop_server("TERM", timeout=20)
    assert stopped.exit_code == 0 and not stopped.timed_out, stopped.describe() + stopped.stderr
    status, error = run.api_request("GET", "/healthz")
    assert status is None and error in ("ENOENT", "ECONNREFUSED"), (status, error)


@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_umask_and_nofile_options_reach_the_server(start_lab, lab):
    """``ServerSpec(umask=, nofile=)``: the server process runs under them (read from /proc
    by the ``hostile state`` tool), still as the lab's server pid; the log file it created
    has the umask's mode; without the options the lab's own umask (022) stays."""
    run = start_lab(lab, wrapref_spec("agentsh", umask=0o027, nofile=128))
    state = run.tool("hostile", ["state", "--pid", str(run.server.pid), "--base", run.temp_base])
    assert (state["umask"], state["nofile"]) == ("0027", 128), state
    cmdline = run.server_info()["cmdline"]
    assert "serve" in cmdline and not any("launch" in a for a in cmdline), cmdline  # exec-ed
    assert run.stat(run.log_file).mode == 0o640  # agentsh: open(path, "a") under umask 027
    plain = start_lab(lab, wrapref_spec("agentsh"))
    state = plain.tool("hostile", ["state", "--pid", str(plain.server.pid),
                                   "--base", plain.temp_base])
    assert state["umask"] == "0022" and state["nofile"] != 128, state


def test_umask_and_nofile_are_checked():
    with pytest.raises(ValueError, match="umask"):
        wrapref_spec("agentsh", umask=0o1000)
    with pytest.raises(ValueError, match="at least 16"):
        wrapref_spec("agentsh", nofile=3)
    assert wrapref_spec("agentsh").launcher == []
    assert wrapref_spec("agentsh", umask=0, nofile=64).launcher == [
        "python3", "-m", "wraplab.actors.launch", "--umask=000", "--nofile=64", "--"]


@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_userns_option_lets_an_actor_unshare_in_docker(start_lab, lab):
    """``ServerSpec(userns=True)``: the owner can ``unshare -Ur`` (root in its own user
    namespace, itself outside); without it Docker's default seccomp profile says EPERM."""
    plain = start_lab(lab, wrapref_spec("agentsh"))
    refused = plain.exec("owner", ["unshare", "-Ur", "id", "-u"], timeout=30)
    assert refused.exit_code != 0, refused.describe()
    assert "Operation not permitted" in refused.stderr, refused.stderr

    run = start_lab(lab, wrapref_spec("agentsh", userns=True))
    inside = run.exec("owner", ["unshare", "-Ur", "id", "-u"], timeout=30)
    assert inside.ok and inside.stdout.strip() == "0", inside.describe() + inside.stderr
    outside = run.exec("owner", ["unshare", "-Ur", "cat", "/proc/self/uid_map"], timeout=30)
    assert outside.ok and outside.stdout.split()[:3] == ["0", str(run.users["owner"].uid), "1"]
    client = docker.from_env()
    try:
        opts = client.containers.get(run.container_id).attrs["HostConfig"]["SecurityOpt"]
        assert opts == ["seccomp=unconfined"], opts
        assert not client.containers.get(plain.container_id).attrs["HostConfig"]["SecurityOpt"]
    finally:
        client.close()


@pytest.mark.parametrize("placement", ["root", "root-no-chown"])
@pytest.mark.parametrize("lab", LAB_PARAMS)
def test_server_userns_shows_unmapped_users_as_the_overflow_uid(start_lab, lab, placement):
    """``ServerSpec(server_userns=("owner",))``: the server is root of its own user namespace
    that maps root and alice only; SO_PEERCRED shows it alice as alice and mallory as 65534,
    and a placement's dropped capability stays dropped inside the namespace."""
    run = start_lab(lab, wrapref_spec("agentsh", Placement(placement),
                                      server_userns=("owner",)))
    owner, attacker = run.users["owner"], run.users["attacker"]
    pid = run.server.pid
    maps = run.exec("root", ["cat", f"/proc/{pid}/uid_map", f"/proc/{pid}/gid_map"])
    lines = [line.split() for line in maps.stdout.splitlines()]
    want = [["0", "0", "1"], [str(owner.uid), str(owner.uid), "1"]]
    assert lines == want + want, maps.describe()
    ns = run.exec("root", ["readlink", f"/proc/{pid}/ns/user", "/proc/self/ns/user"])
    server_ns, own_ns = ns.stdout.split()
    assert server_ns != own_ns, ns.stdout
    caps = run.server_info()["cap_eff_names"]
    assert ("chown" in caps) == (placement == "root"), caps
    seen = {}
    for actor in ("owner", "attacker"):
        status, body = run.api_request("POST", "/api/v1/sessions", as_user=actor)
        assert status == 201, (status, body)
        sid = body["id"]
        status, body = run.api_request("POST", f"/api/v1/sessions/{sid}/wrap-init", {},
                                       as_user=actor)
        assert status == 200, (status, body)
        init = [e for e in run.events(sid) if e["type"] == "wrap_init"]
        seen[actor] = init[0]["api_peer_uid"]
    assert seen == {"owner": owner.uid, "attacker": 65534}, (seen, attacker.uid)


def test_server_userns_and_peer_options_are_checked():
    with pytest.raises(ValueError, match="needs a root placement"):
        wrapref_spec("agentsh", Placement.SERVICE, server_userns=("owner",))
    with pytest.raises(ValueError, match="needs peer=True"):
        wrapref_spec("agentsh", peer_shares_pids=True)


@pytest.mark.parametrize("shared", [True, False], ids=["shared-pids", "own-pids"])
@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_peer_pid_namespace(start_lab, lab, shared):
    """``peer_shares_pids``: the peer joins the server container's PID namespace, so each
    side's SO_PEERCRED names the other's real pid; apart, the pid reads 0. The shared
    volumes belong to the server's user (no copy of the image's directory owner)."""
    run = start_lab(lab, wrapref_spec("agentsh", peer=True, peer_shares_pids=shared))
    probe = run.peer.tool("probe", ["--connect", run.api_path], as_user="owner")
    assert probe["connect"]["result"] == "ok", probe
    assert probe["connect"]["peer"]["pid"] == (run.server.pid if shared else 0), probe
    api_dir = run.stat(run.api_path.rsplit("/", 1)[0])
    assert (api_dir.uid, api_dir.mode) == (run.server_user.uid, 0o755), api_dir
