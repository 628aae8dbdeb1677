"""The symlink race tool (wraplab.actors.symlink_race) against agentsh's layout, in Docker
(its canary files must never be on the host): ``--enough`` ends the race at that win, so a
vulnerable cell stops as soon as the hole is shown, and root's count agrees;
``--kernel-enough`` ends a race the kernel refuses every time (a root-owned directory),
but never one where a swap worked (hardened: its validation, not the kernel, holds);
``--canaries`` lets a few canaries serve many tries, each won at most once."""

from __future__ import annotations

import pytest
from conftest import DOCKER_PARAMS
from wraplab.targets import wrapref_spec

TRIES = 3000


@pytest.mark.parametrize("lab", DOCKER_PARAMS[:1])
def test_the_race_stops_at_the_enough_th_win(start_lab, lab):
    run = start_lab(lab, wrapref_spec("agentsh", "root", accept_window=1))
    cdir = "/var/lib/wraplab-canary-test"
    prep = run.tool("symlink_race", ["prepare", "--dir", cdir, "--count", str(TRIES)],
                    as_user="root", timeout=60)
    assert not prep.get("error"), prep
    res = run.exec("owner", ["python3", "-m", "wraplab.actors.symlink_race", "race",
                             "--dir", cdir, "--count", str(TRIES), "--base", run.temp_base,
                             "--api", run.api, "--seconds", "60", "--enough", "2"],
                   timeout=120)
    race = res.json()
    assert race["wins"] == 2, race  # agentsh loses some tries in every few hundred
    assert race["tries"] < TRIES, race  # ... and the race ended there, not at the count
    chk = run.tool("symlink_race", ["check", "--dir", cdir, "--count", str(TRIES)],
                   as_user="root", timeout=60)
    assert chk["changed"] == 2, chk


@pytest.mark.parametrize("lab", DOCKER_PARAMS[:1])
def test_tries_take_the_canaries_in_turn_and_never_aim_at_a_won_one(start_lab, lab):
    run = start_lab(lab, wrapref_spec("agentsh", "root", accept_window=1))
    cdir = "/var/lib/wraplab-canary-test"
    prep = run.tool("symlink_race", ["prepare", "--dir", cdir, "--count", "3"],
                    as_user="root", timeout=60)
    assert not prep.get("error"), prep
    res = run.exec("owner", ["python3", "-m", "wraplab.actors.symlink_race", "race",
                             "--dir", cdir, "--count", str(TRIES), "--canaries", "3",
                             "--base", run.temp_base, "--api", run.api, "--seconds", "60"],
                   timeout=120)
    race = res.json()
    # No --enough: the race goes on until no canary is left to win, each won once.
    assert race["canaries_spent"] and race["wins"] == 3, race
    assert sorted(w["canary"] for w in race["examples"]) == [0, 1, 2], race
    assert race["tries"] < TRIES, race
    chk = run.tool("symlink_race", ["check", "--dir", cdir, "--count", "3"],
                   as_user="root", timeout=60)
    assert chk["changed"] == 3, chk


@pytest.mark.parametrize(("profile", "stops"), [("permissive", True), ("hardened", False)])
@pytest.mark.parametrize("lab", DOCKER_PARAMS[:1])
def test_the_race_stops_when_the_kernel_refuses_every_try(start_lab, lab, profile, stops):
    count = 300
    run = start_lab(lab, wrapref_spec(profile, "root", accept_window=1))
    cdir = "/var/lib/wraplab-canary-test"
    prep = run.tool("symlink_race", ["prepare", "--dir", cdir, "--count", str(count)],
                    as_user="root", timeout=60)
    assert not prep.get("error"), prep
    res = run.exec("owner", ["python3", "-m", "wraplab.actors.symlink_race", "race",
                             "--dir", cdir, "--count", str(count), "--base", run.temp_base,
                             "--api", run.api, "--seconds", "60", "--kernel-enough", "20"],
                   timeout=120)
    race = res.json()
    assert race["wins"] == 0, race
    if stops:  # permissive: root's 0711 directory, every swap EACCES
        assert race["kernel_stop"] and race["tries"] == 20, race
        assert race["swap_errors"] == {"EACCES": 20}, race
        assert race["denied"] == 20, race  # what lets the scenario say `defended (kernel)`
    else:  # hardened: the swaps land (after the server is done with the socket)
        assert not race["kernel_stop"] and race["tries"] == count, race
        assert race["swapped"] > 0, race
