"""The attackers who get past the outer layer (issue 9 item 3), shown in both labs.

- ``caps=("dac_override",)``: a process of the attacker's uid that kept CAP_DAC_OVERRIDE
  (container root that dropped to the uid): its uid and groups are the attacker's, its
  CapEff is exactly that capability, and it gets through a directory the owner's mode
  shuts, where the same uid without the capability gets EACCES.
- the confused deputy (``wraplab.actors.deputy``): a process of the owner connects and
  passes the connected socket to the attacker; what the attacker then sends arrives with
  the owner's SO_PEERCRED (pid and uid of the deputy).
- the group member: the bystander shares the owner's group (users.conf ``wrapusers``).
"""

from __future__ import annotations

import pytest
from conftest import ACTOR_PATHS, LABS
from wraplab.actors._common import cap_names
from wraplab.labs import LabError, LabRun, Placement


def served_params(placements, paths=("agent",)):
    out = []
    for lab in LABS:
        mark = pytest.mark.requires_root if lab == "local" else pytest.mark.requires_docker
        for placement in placements:
            for path in paths:
                tail = "" if paths == ("agent",) else f"-{path}"
                out.append(pytest.param((lab, placement, path), marks=mark,
                                        id=f"{lab}-{placement}{tail}"))
    return out


ROOT = served_params(["root"])
#: the capability launcher is proved on both ways of starting actors.
ROOT_AND_NO_CHOWN = served_params(["root", "root-no-chown"], ACTOR_PATHS)


@pytest.mark.parametrize("served", ROOT_AND_NO_CHOWN, indirect=True)
def test_attacker_with_dac_override_runs_as_its_uid_with_that_one_capability(served: LabRun):
    attacker = served.users["attacker"]
    plain = served.tool("probe", [], as_user="attacker")
    res = served.exec("attacker", ["python3", "-m", "wraplab.actors.probe"],
                      caps=("dac_override",), timeout=30)
    capped = res.json()
    assert (capped["uid"], capped["euid"], capped["gid"]) == (attacker.uid, attacker.uid,
                                                               attacker.gid)
    assert set(capped["groups"]) == {attacker.gid, *attacker.groups}
    assert plain["cap_eff"] == "0000000000000000"
    assert cap_names(capped["cap_eff"]) == ["dac_override"]
    assert res.uid == attacker.uid and "+dac_override" in served.transcript[-1].actor
    # The capability is what lets it through: a root-owned 0700 directory.
    d = f"{served.temp_base}/dac-test"
    assert served.exec("root", ["install", "-d", "-m", "0700", d]).exit_code == 0
    try:
        ls = ["python3", "-c", f"import os; print(os.listdir({d!r}))"]
        refused = served.exec("attacker", ls, timeout=30)
        through = served.exec("attacker", ls, caps=("dac_override",), timeout=30)
        assert refused.exit_code != 0 and "PermissionError" in refused.stderr
        assert through.exit_code == 0, through.describe()
    finally:
        served.exec("root", ["rm", "-rf", d])


@pytest.mark.parametrize("served", ROOT, indirect=True)
def test_caps_are_refused_for_root_and_unknown_names(served: LabRun):
    with pytest.raises(LabError):
        served.exec("root", ["true"], caps=("dac_override",))
    with pytest.raises(LabError):
        served.exec("attacker", ["true"], caps=("dac override;",))


@pytest.mark.parametrize("served", ROOT, indirect=True)
def test_a_passed_socket_speaks_with_the_deputys_credentials(served: LabRun):
    owner, attacker = served.users["owner"], served.users["attacker"]
    listen = f"{served.temp_base}/deputy-catch.sock"
    rendezvous = f"{served.temp_base}/deputy-rv.sock"
    tool = ["python3", "-m", "wraplab.actors.deputy"]
    catcher = served.spawn("root", [*tool, "catch", "--listen", listen, "--wait", "20"])
    receiver = served.spawn("attacker", [*tool, "receive", "--rendezvous", rendezvous,
                                         "--do", "report", "--wait", "20"])
    # The deputy retries both connects until the listeners exist (bounded by --wait).
    deputy = served.exec("owner", [*tool, "pass", "--path", listen, "--rendezvous",
                                   rendezvous, "--wait", "20"], timeout=40)
    passed = deputy.json()
    assert passed.get("passed"), deputy.describe()
    got, caught = receiver.wait(40).json(), catcher.wait(40).json()
    # What the attacker wrote arrived; the kernel names the deputy (the owner) as the peer.
    assert got["uid"] == attacker.uid and got["reply"] == "ok"
    assert caught["said"] == f"uid={attacker.uid} pid={got['pid']}"
    assert (caught["peer_uid"], caught["peer_pid"]) == (owner.uid, passed["pid"])
    assert caught["peer_uid"] != attacker.uid


@pytest.mark.parametrize("served", ROOT, indirect=True)
def test_bystander_shares_the_owners_group(served: LabRun):
    owner, bystander = served.users["owner"], served.users["bystander"]
    probe = served.tool("probe", [], as_user="bystander")
    shared = set(owner.groups) & set(probe["groups"])
    assert shared and bystander.uid != owner.uid
    assert served.spec.placement is Placement.ROOT
