"""A ptrace caller holds its keepalive: does its wrap outlive the accept window?

docs/hostile-users.md H17 (issue 14, finding 2). After the ptrace ACK the server keeps the
connection as a keepalive until the client closes it (B29). Mallory does a wrap-init of her
own in ptrace mode, hands over her own pid, gets the ACK and holds the keepalive until the
harness has looked (a second past the window; at most the window plus 6 s): the harness
ends her hold with a SIGTERM once it has counted. The harness watches the server's wrap
directories: with the wrap tied to the keepalive, mallory's directory, listener, thread and
slot stay for as long as she holds it (each such hold is one slot of the global cap, so the
cap attack of ``wrap-cap-flood`` becomes unbounded in time).

Verdict: vulnerable when mallory's wrap directory was still there a second after the
window ended while she held the keepalive; defended when it was gone by then while she
still held it (guard: keepalive outside the wrap), or when the kernel kept her out of her
own socket (guard: kernel); error when she got no ACK for another reason.

Actors: intruder (mallory). Placement: root. Transport: unix. Socket: ptrace. Window 1.5 s.

Expected:
- hardened: defended: the ACK ends the wrap (directory, listener, slot); the keepalive is
  held outside it, at most 8 per uid.
- agentsh, accept-once, permissive: vulnerable (agentsh: whether its directory and
  goroutines outlive the window while the keepalive is held was not read: assumed yes).
- pre-235: defended by the kernel: the directory is root's 0700, mallory cannot connect.
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "keepalive-hold"
ORDER = 238
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("ptrace",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 1.5
HOLD = WINDOW + 6.0
SERVER = {"accept_window": WINDOW}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": DEFENDED,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def dirs(ctx) -> int:
    return ctx.run.tool("hostile", ["state", "--pid", str(ctx.run.server.pid),
                                    "--base", ctx.run.temp_base]).get("dirs", -1)


def run(ctx):
    base = dirs(ctx)
    t0 = time.time()
    handle = ctx.run.spawn(ctx.intruder.user_role,
                           ["python3", "-m", "wraplab.actors.hostile", "ptrace-hold", "--api",
                            ctx.api, "--seconds", str(HOLD)])
    try:
        # The question is what is there once the window is over: the moment is the
        # condition (mallory, still holding, ends at t0 + HOLD).
        check_at = t0 + WINDOW + 1.0
        ctx.waits_until("the accept window is over (plus a second)",
                        lambda: time.time() >= check_at, check_at + 5, pause=0.2)
        now = dirs(ctx)
        checked = time.time()
        ctx.step("harness", "counts the wrap directories a second past the window",
                 f"{now} (baseline {base})")
        handle.signal("TERM")  # seen: mallory may let go now (her report says when)
        res = handle.wait(HOLD + 30)
    finally:
        handle.kill()
    hold = res.json() if res.stdout else {}
    ctx.step(ctx.intruder, f"wrap-init of her own (ptrace), ACK, holds the keepalive until the "
             f"harness has looked (at most {HOLD:g} s)",
             f"wrap-init HTTP {hold.get('wrap_init')}, ack {hold.get('ack')}"
             + (f" ({hold['errno']})" if hold.get("errno") else ""), t=t0, detail=hold)
    after = ctx.waits_until("every wrap directory is gone", lambda: dirs(ctx) == base,
                            time.time() + 10, pause=0.2)
    released = hold.get("released_at") or 0
    ctx.metrics.update(ack=hold.get("ack"), dirs_past_window=now, baseline_dirs=base,
                       checked_s=round(checked - t0, 2), released_s=round(released - t0, 2))
    if hold.get("wrap_init") != 200:
        return ctx.error(f"mallory's wrap-init failed: HTTP {hold.get('wrap_init')}")
    if hold.get("ack") != 1:
        if hold.get("errno") == "EACCES":
            return ctx.defended("mallory cannot reach her own socket (EACCES)", guard="kernel")
        return ctx.error(f"mallory got no ACK: {hold}")
    if not after:
        return ctx.vulnerable("a wrap directory was left behind after the keepalive ended")
    if released <= checked:
        return ctx.error(f"mallory let go ({released - t0:.1f} s) before the check "
                         f"({checked - t0:.1f} s): no evidence")
    if now > base:
        return ctx.vulnerable(f"mallory's wrap was still pending {checked - t0:.1f} s after "
                              f"start, past its {WINDOW:g} s window, while she held the "
                              f"keepalive (until {released - t0:.1f} s)")
    return ctx.defended(f"the ACK ended mallory's wrap: no wrap directory {checked - t0:.1f} s "
                        f"after start while she held the keepalive until "
                        f"{released - t0:.1f} s", guard="keepalive outside the wrap")
