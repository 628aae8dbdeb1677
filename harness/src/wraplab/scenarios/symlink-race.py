"""Alice swaps her freshly bound socket for a symlink, and root chowns a file of her choice.

SPEC H3, AGENTSH.md G1 and E5. Under agentsh's order a root server that gets a wrap-init
naming alice's uid chowns the new wrap directory to alice *before* it binds the socket,
then chowns and chmods the socket *by path* (following symlinks), then validates with
stat (following symlinks, permission bits only). Between the bind and the chown alice
owns the directory, so she can replace the socket with a symlink to any file; root then
chowns that file to her (and chmods it 0600), and the validation, looking through the
symlink, passes. A local privilege escalation: any root-owned file can be had.

The attack, repeated N times (``RACE`` below; environment ``WRAPLAB_RACE_TRIES``,
``WRAPLAB_RACE_SECONDS`` and ``WRAPLAB_RACE_ENOUGH`` override), or until the ``enough``-th
win: ten canaries handed over prove the hole as well as fifty, and a vulnerable cell then
takes a second or two instead of half a minute; or until ``kernel_enough`` tries in a row
met only the kernel's EACCES/EPERM with no swap ever made (pre-235, permissive: the
directory's mode is not a race; 100 refusals say what 3,000 would). A cell the server
itself must defend (hardened: the swaps land, its validation catches them) makes every
try. Root
prepares ``canaries`` files in the container (``/var/lib/wraplab-canary-<run>/c-<i>``, 0600
root:root, directory 0755 so anyone may stat them; never on the host), which the tries
take in turn, passing over those already won: ten times ``enough``, so no try ever lacks
one, and made in a few milliseconds where one per try took one to three seconds of the
cell's hold on the cores. Alice runs the
``symlink_race`` actor tool: per try it creates a session, lets a helper process send
wrap-init (``caller_uid`` = her uid), takes the new directory's name from inotify on the
temp base (busy-polled), spins ``lstat`` on ``<dir>/<kind>-<session>.sock`` and, the moment
the socket exists, renames a prepared symlink to canary ``c-<i>`` over it (one syscall; the
symlink is moved into the directory beforehand, as soon as she can search it, so the swap is
a same-directory rename). Root then re-reads every canary: a try is won when its canary's
owner or mode changed. The metrics give the tries, wins, win rate, time taken, the HTTP
answers (500 = a swap the server's validation caught), and the spinner's timings.

Actors: owner (alice, who is also the attacker: the directory is handed to her).
Placement: root (the chown path; without CAP_CHOWN agentsh keeps the directory root-owned
0711, so the owner cannot replace anything in it). Transport: unix. Sockets: notify and
ptrace (the ptrace socket is made in the same order; the signal socket too, not run here
to keep the matrix short).

Expected, decided from real runs (Docker, bookworm, 2 cores shared with other jobs; 3000
tries per cell, three runs per cell):
- agentsh: vulnerable: 47, 96 and 79 of 3000 tries won on notify (1.6-3.2 %), 88, 65 and
  112 on ptrace (2.2-3.7 %); 11-31 s per race. accept-once (the same layout): 132, 106,
  128 (notify) and 92, 91, 93 (ptrace). The Python server's window between bind and
  chown is a few microseconds, so the rate is well below the C model's 24 % (E5) and moves
  with the machine's load (0.5-2.8 % in trial runs straight on the host), but tens of wins per run
  make a run without a win very unlikely.
- hardened: defended. Every socket is bound and lchown'd while the directory is still
  root-owned 0700; alice can first touch the directory after it is handed over through
  its fd, and a swap then is caught by lstat validation (type, owner): a 500 for alice,
  her own denial of service, never a chown of the canary. 0 of 3000 in all six runs
  (notify: 1383, 1992, 2015 swaps caught by validation as 500s; ptrace: 1657, 875, 615).
- pre-235: defended. The directory stays root 0700; alice can never enter it (the spinner
  only ever sees EACCES).
- permissive: defended. The directory is root-owned 0711: alice can see the socket but
  cannot rename anything into the directory (EACCES).

Local lab: not run there. The canary must live in a container, never on the host
(``LABS``/``LAB_NOTES`` below say so; the engine does not read them yet, so on the local lab
the cell reports ``error`` with that reason).
"""

import os
import time

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "symlink-race"
ORDER = 110
ACTORS = {"owner": "owner"}
SOCKETS = ("notify", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
# A short accept window: every agentsh try leaves a listener nobody will dial (its path is
# now a symlink), and pending wraps are bounded (1024) by the server.
SERVER = {"accept_window": 1}
RACE = {"tries": 3000, "seconds": 40.0, "enough": 10, "kernel_enough": 100, "canaries": 100}
LABS = ("docker",)
LAB_NOTES = {"local": "the canary files root hands over must live in a container, never "
                      "on the host"}
EXCLUSIVE = True  # a race: its rate depends on having the cores
EXPECT = {
    "hardened": DEFENDED.by("layout"),
    "agentsh": VULNERABLE,
    "pre-235": DEFENDED,
    "permissive": DEFENDED,
    "accept-once": VULNERABLE,
}

TOOL = ["python3", "-m", "wraplab.actors.symlink_race"]


def run(ctx):
    if ctx.cell.lab not in LABS:
        return ctx.error(f"not run on the {ctx.cell.lab} lab: {LAB_NOTES.get(ctx.cell.lab)}")
    tries = int(os.environ.get("WRAPLAB_RACE_TRIES", RACE["tries"]))
    seconds = float(os.environ.get("WRAPLAB_RACE_SECONDS", RACE["seconds"]))
    enough = int(os.environ.get("WRAPLAB_RACE_ENOUGH", RACE["enough"]))
    canaries = min(tries, RACE["canaries"])
    cdir = f"/var/lib/wraplab-canary-{os.urandom(4).hex()}"
    t0 = time.time()
    prep = ctx.run.tool("symlink_race", ["prepare", "--dir", cdir, "--count", str(canaries)],
                        as_user="root", timeout=60)
    ctx.step("harness", f"makes {canaries} canary files {cdir}/c-* (0600 root:root)",
             str(prep.get("sample") or prep.get("error")), t=t0, ms=(time.time() - t0) * 1000)
    if prep.get("error"):
        return ctx.error(f"canary setup failed: {prep['error']}")
    argv = [*TOOL, "race", "--dir", cdir, "--count", str(tries), "--canaries", str(canaries),
            "--base", ctx.run.temp_base,
            "--api", ctx.api, "--kind", ctx.socket, "--seconds", f"{seconds:g}",
            "--enough", str(enough), "--kernel-enough", str(RACE["kernel_enough"])]
    t1 = time.time()
    res = ctx.run.exec("owner", argv, timeout=seconds + 60)
    try:
        race = res.json()
    except ValueError:
        race = {}
    if not race or race.get("error"):
        return ctx.error(f"symlink_race printed no result (exit {res.exit_code}): "
                         f"{race.get('error') or (res.stderr or '').strip()[-400:]}")
    ctx.step(ctx.owner, f"races {race['tries']} wrap-inits: swaps each fresh {ctx.socket} "
             "socket for a symlink to a canary",
             f"{race['swapped']} swapped, {race['wins']} canaries changed hands; HTTP "
             f"{race['http']}; swap errors {race['swap_errors'] or 'none'}",
             t=t1, ms=race["seconds"] * 1000, detail=race)
    t2 = time.time()
    chk = ctx.run.tool("symlink_race", ["check", "--dir", cdir, "--count", str(canaries)],
                       as_user="root", timeout=60)
    wins = int(chk.get("changed", 0))
    ctx.step("harness", f"checks the {canaries} canaries as root",
             f"{wins} changed: {chk.get('examples')}", t=t2, ms=(time.time() - t2) * 1000)
    ctx.metrics.update(
        tries=race["tries"], wins=wins, win_rate=round(wins / race["tries"], 4)
        if race["tries"] else None, race_seconds=race["seconds"], swapped=race["swapped"],
        http=race["http"], swap_errors=race["swap_errors"], no_socket=race["no_socket"],
        no_dir=race["no_dir"], refused=race.get("refused", 0), denied=race.get("denied", 0),
        spins_median=race["spins_median"],
        swap_us_median=race["swap_us_median"], racer_counted=race["wins"])
    if race["tries"] == 0:
        return ctx.error(f"no try was made: {race.get('errors')}")
    if wins != race["wins"]:
        ctx.note(f"the racer counted {race['wins']} wins, root counts {wins}")
    rate = f"{wins}/{race['tries']} tries in {race['seconds']:.1f} s"
    if race.get("refused"):
        rate += f" ({race['refused']} more wrap-inits refused 503 at the pending-wrap cap)"
    if enough and race["wins"] >= enough:
        rate += f", stopped at the {enough}th win"
    if race.get("canaries_spent"):
        rate += f", stopped once all {canaries} canaries were won"
    if race.get("kernel_stop"):
        rate += (f", stopped after {RACE['kernel_enough']} tries in a row that the kernel "
                 "refused")
    if wins:
        ex = (chk.get("examples") or [{}])[0]
        return ctx.vulnerable(
            f"root chowned/chmodded a root-owned canary through alice's symlink in {rate} "
            f"({100 * wins / race['tries']:.2f} %); e.g. c-{ex.get('try')} is now uid "
            f"{ex.get('uid')} mode {ex.get('mode')}")
    if race["no_dir"] == race["tries"]:
        return ctx.error("the racer never saw a wrap directory appear")
    if race["swapped"]:
        caught = race["http"].get("500", 0)
        return ctx.defended(
            f"0 canaries changed in {rate}: alice swapped {race['swapped']} sockets, but only "
            f"after the server had finished with them ({caught} swaps caught by the "
            "server's validation, a 500 for alice)", guard="layout")
    if not race.get("denied"):
        return ctx.error(f"the attack did not happen: in {race['tries']} tries alice neither "
                         f"saw a socket to swap ({race['no_socket']} without one) nor met the "
                         "kernel's refusal")
    return ctx.defended(
        f"0 canaries changed in {rate}: alice could not replace a socket "
        f"(never saw one in {race['no_socket']} tries; swap errors "
        f"{race['swap_errors'] or 'none'})", guard="kernel")
