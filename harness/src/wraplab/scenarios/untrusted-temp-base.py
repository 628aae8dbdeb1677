"""The administrator gives the server a temp base mallory made first.

docs/hostile-users.md H18 (issue 14, finding 3, first half). Mallory creates a directory
in the world-writable temp base (``$TMP/wrapbase-<id>``, hers, 0755). The administrator
(root) then starts a server of this cell's profile with ``--temp-base`` that directory
(its API and log in a root-owned directory). If it starts, alice wraps through it: her
client (held after wrap-init, so the order is fixed rather than raced: issue 14 won 6
of 10 races without it) announces the wrap directory the server made in mallory's
directory; mallory, who owns the parent, moves that directory aside and puts in its place
a symlink to a directory of hers listening on the same socket names; alice is released
and dials. Recorded: who owns the temp base, whether the server started and what it
said, the swap, what alice's client said, and whether alice's token reached mallory.

Alice's client is the cell's target's: ``--server-uid any`` (agentsh's client checks
nothing) on the agentsh-family profiles, the ``auto`` check on hardened.

No attack, no verdict: a server that refuses to start leaves nothing to swap, so the
refusal itself must be the evidence. The verdict is defended only when (a) the temp base
really is mallory's (lstat: her uid), (b) the server exited non-zero without serving,
(c) its ``cannot start`` log line names that directory and mallory's uid, (d) no wrap
directory was made in it, (e) a second start through a root-owned symlink to her
directory is refused the same way, and (f) the same profile on the lab's root-owned,
sticky temp base serves alice (the refusal is about the directory, not the server).

Verdict: vulnerable when alice's token reached mallory; defended as said above (guard
trusted-paths); error when the server neither served nor exited, refused for another
reason, started but no token moved and alice's client did not refuse, or mallory's swap
failed (the attack did not happen).

Actors: owner (alice), attacker (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended (trusted-paths): ``wrapref serve`` exits 1, ``cannot start`` with
  "refusing temp base ...: ... is owned by uid 1003".
- agentsh, pre-235, permissive, accept-once: vulnerable: the server starts in mallory's
  directory (agentsh: ``MkdirTemp($TMPDIR, ...)`` with no check of ``$TMPDIR``, known,
  AGENTSH.md B6); alice's fd and token reach mallory and her client reports success.
"""

import os
import time

from wraplab.engine import DEFENDED, VULNERABLE, HeldWrap, file_text, log_lines, starts_server

SLUG = "untrusted-temp-base"
#: It judges from the reference server's own startup log lines ("cannot start", its
#: warnings): a foreign target's cells are reported not run.
NEEDS = ("wrapref",)
ORDER = 247
ACTORS = {"owner": "owner", "attacker": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 10}
WINDOW = 30.0  # the second server's: alice's directory must outlive a slow harness's steps
EXPECT = {
    "hardened": DEFENDED.by("trusted-paths"),
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def refusal(ctx, log: str) -> str:
    """The error of the server's ``cannot start`` line in ``log`` ("" if none)."""
    lines = log_lines(file_text(ctx, log))
    return next((str(line.get("error")) for line in lines if line.get("msg") == "cannot start"),
                "")


def run(ctx):
    tag = os.urandom(4).hex()
    base = ctx.run.temp_base
    hers, adm = f"{base}/wrapbase-{tag}", f"{base}/adm-{tag}"
    made = ctx.attacker.runs_tool("hostile", "mkdir", "--path", hers)
    ctx.step(ctx.attacker, f"creates {hers} before the server starts",
             made.get("errno") or "made", errno=made.get("errno"), detail=made)
    ctx.run.exec("root", ["mkdir", "-m", "0755", adm], timeout=10)
    facts = ctx.facts(hers, "mallory's directory, the server's --temp-base")
    if facts.get("kind") != "dir" or facts.get("uid") != ctx.attacker.uid:
        return ctx.error(f"the temp base is not mallory's directory: {facts}")
    srv = starts_server(ctx, "starts a server with mallory's directory as its temp base",
                        api_path=f"{adm}/api.sock", temp_base=hers,
                        log_file=f"{adm}/server.log", window=WINDOW)
    ctx.metrics.update(server_started=srv["serving"], exit_code=srv.get("exit_code"))
    if srv["serving"]:
        return attack(ctx, srv, hers, adm)
    if srv.get("exit_code") in (None, 0):
        return ctx.error(f"the server neither served nor failed: {srv}")
    why = refusal(ctx, f"{adm}/server.log")
    left = ctx.run.listdir(hers)
    ctx.metrics.update(refusal=why, left_in_base=left)
    if hers not in why or f"uid {ctx.attacker.uid}" not in why:
        return ctx.error(f"the server exited {srv['exit_code']} but not for mallory's "
                         f"directory: {why or srv.get('stderr')!r}")
    if left:
        return ctx.error(f"the server refused but left {left} in mallory's directory")
    link = f"{adm}/base-link"
    ctx.run.exec("root", ["ln", "-s", hers, link], timeout=10)
    via = starts_server(ctx, "starts a server with a root-owned symlink to mallory's "
                        "directory as its temp base", api_path=f"{adm}/b/api.sock",
                        temp_base=link, log_file=f"{adm}/b.log", window=WINDOW)
    why_link = "" if via["serving"] else refusal(ctx, f"{adm}/b.log")
    ctx.metrics.update(refusal_via_symlink=why_link, started_via_symlink=via["serving"])
    if via["serving"]:
        return ctx.vulnerable(f"the server refused {hers} but started on a root-owned "
                              f"symlink to it ({link})")
    if f"uid {ctx.attacker.uid}" not in why_link:
        return ctx.error(f"the start through {link} failed for another reason: "
                         f"{why_link or via.get('stderr')!r}")
    wrap = ctx.owner.wraps()
    if not wrap.ok:
        return ctx.broken(f"the same profile on the lab's temp base did not serve alice: "
                          f"{wrap.failure()}")
    return ctx.defended(
        f"the server refused to start on mallory's directory ({why!r}, exit "
        f"{srv['exit_code']}) and on a root-owned symlink to it ({why_link!r}); no wrap "
        f"directory was made there, so nothing could be swapped; on the lab's root-owned "
        f"sticky temp base the same profile served alice", guard="trusted-paths")


def attack(ctx, srv: dict, hers: str, adm: str):
    """The server runs in mallory's directory: she swaps alice's wrap directory."""
    argv = ctx.target.client(f"unix:{adm}/api.sock", timeout=ctx.client_budget)
    held = HeldWrap(ctx.owner, argv)
    path = held.socket("notify")
    if path is None:
        held.release()
        return ctx.error("alice's wrap-init on the server in mallory's directory failed: "
                         "nothing to swap")
    barrier = ctx.barrier(ctx.attacker)
    swapper = ctx.attacker.spawns_tool("hostile", "swap-dir", "--dir", os.path.dirname(path),
                                       "--seconds", "20", "--ready", barrier.file("swapped"))
    ready = barrier.wait("swapped", 30, while_running=swapper)
    t0 = time.time()
    wrap = held.release()
    res = swapper.wait(40)
    try:
        got = res.json()
    except ValueError:
        return ctx.error(f"mallory's swap printed no report: {res.describe()}")
    ctx.step(ctx.attacker, f"moves {os.path.dirname(path)} aside and puts a symlink to her "
             "own directory, listening on its socket names, in its place",
             f"swapped: {got.get('swapped')} ({got.get('errno') or 'ok'}); "
             f"{got.get('handoffs')} handoffs, token {got.get('token')!r}", t=t0,
             errno=got.get("errno"), detail=got)
    srv["handle"].kill()
    ctx.metrics.update(swap=got, owner_ok=wrap.ok, owner_errno=wrap.errno)
    if not ready.get("ok") or not got.get("swapped"):
        late = got.get("errno") == "ENOENT" and time.time() - held.started > WINDOW
        return ctx.error(f"mallory's swap did not happen: {got}" + (
            f" (alice's wrap directory was gone: its {WINDOW:g} s window ended before the "
            "harness got to the swap)" if late else ""))
    if got.get("token") and got["token"] == wrap.token:
        return ctx.vulnerable(f"the server started in mallory's directory {hers}; alice's fd "
                              f"and token reached mallory through the swapped directory "
                              f"(alice's client said ok: {wrap.ok})")
    if not wrap.ok and wrap.errno == "EPERM":
        return ctx.defended(f"the server started in mallory's directory, but alice's client "
                            f"refused mallory's socket ({wrap.failure()})")
    return ctx.error(f"mallory swapped the directory but no token moved: {got}; alice "
                     f"{wrap.failure() if not wrap.ok else 'ok'}")
