"""Is the fd the server receives close-on-exec from the moment it arrives?

SPEC H8: every fd the server receives must carry FD_CLOEXEC atomically
(``recvmsg(MSG_CMSG_CLOEXEC)``). Without it, any process the privileged server starts while
it holds the fd inherits alice's fd (her seccomp notify fd or her signal pipe): agentsh
runs commands for every user's sessions, so another user's command gets alice's
supervisor. agentsh receives the notify fd without the flag and sets it afterwards
(AGENTSH.md B21: a window in which a concurrent fork+exec inherits it), and never sets it
on the signal fd (B27). No other layer matters here: the fd is alice's own, handed over
by her.

Alice's client does wrap-init and is slow to dial; a second process of alice's (a minimal
client: ``intrude`` as alice, with her own token and, on notify, a wrapper child of its
own) makes the handoff on the cell's socket and keeps the write end of its pipe open: a
server reads the token until EOF, so it still holds the received fd. Meanwhile the
observer (root) finds that fd in the server (/proc/PID/fd, the pipe's inode) and reads its
flags in /proc/PID/fdinfo; then the helper closes its end. Black-box evidence, for any
server: the flags show O_CLOEXEC or not while the server holds the fd.

What the observer cannot see is a flag set right after ``recvmsg`` (agentsh's notify fd,
B21: the window is microseconds). Where the target keeps events, its ``handoff_ok`` says
whether the fd had FD_CLOEXEC when ``recvmsg`` returned (``cloexec``): that refines a
"set" reading to vulnerable; an event saying set while the observer saw it unset is an
``error``. Without events a fd seen without the flag is vulnerable, but one seen with it
cannot be told from a flag set after the fact: ``error`` (no verdict), with that reason
(a root observer that stopped the server at recvmsg's return, e.g. PTRACE_SYSCALL, could
decide it; not built). No handoff at all is broken. (Whichever of alice's two processes
dials first is served -- the helper as a rule; the other then finds the loop done. Both
are alice's.)

Actors: owner (alice), helper (alice, a second process). Placement: root. Transport:
unix. Sockets: notify, signal (ptrace hands over no fd).

Expected:
- hardened: defended (cloexec): both fds arrive close-on-exec.
- agentsh, accept-once, permissive: vulnerable: the notify fd arrives without the flag
  (set only after ``recvmsg``), the signal fd never gets it.
- pre-235: broken: the root-only directory stops alice's handoff too.
"""

import time

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, HarnessError, Intrusion
from wraplab.engine.evidence import json_of

SLUG = "fd-cloexec"
NEEDS = ("events",)
NEEDS_WHY = (
    "a received fd seen close-on-exec in /proc may have got the flag just after recvmsg "
    "(agentsh's way, B21): only the server's record (handoff_ok cloexec) tells"
)
ORDER = 340
ACTORS = {"owner": "owner", "helper": "owner"}
SOCKETS = ("notify", "signal")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
# The helper's start is slow on a loaded machine: a long window. Where the helper's handoff
# took the wrap, the hardened client retries the vanished socket until its budget ends:
# 1.5 s, not 4 (her own handoff, when it can happen, takes milliseconds once released).
SERVER = {"accept_window": 20, "client_budget": 1.5}
EXPECT = {
    "hardened": DEFENDED.by("cloexec"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    gate = ctx.barrier(ctx.helper)  # made first: the window runs from wrap-init on
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    if not path:
        return ctx.judge(owner.release(), [])  # no socket: nothing to hand over
    hand, seen = hands_off_held(ctx, path, gate)
    wrap = owner.release()
    events = ctx.events(wrap.session)
    # alice's helper, or her client if it dialled first: either is alice's own handoff
    ok = [e for e in events if e.get("type") == "handoff_ok" and e.get("kind") == ctx.socket
          and e.get("peer_uid") == ctx.owner.uid]
    said = [e.get("cloexec") for e in ok]
    flags = [f["cloexec"] for f in seen]
    ctx.metrics.update(cloexec=said, fdinfo=seen, helper=hand.refusals(),
                       consumed=hand.accepted)
    if not (seen or hand.accepted or ok) and hand.did_not_happen():
        return ctx.error(f"no handoff to observe: {hand.did_not_happen()}")
    if not (seen or hand.accepted or ok):
        return ctx.broken(f"alice's handoffs on {ctx.socket} were not served "
                          f"({hand.refusals()}; client: "
                          f"{'ok' if wrap.ok else wrap.failure()}); nothing was received")
    if not seen:
        return ctx.error(f"the server took alice's {ctx.socket} fd ({hand.refusals()}) but "
                         "the observer never found it in the server's fds while the "
                         "helper held the pipe open")
    if any(c is None for c in said):
        return ctx.error("the server's handoff_ok reports no cloexec field")
    if said and all(said) and not all(flags):
        return ctx.error(f"the server's handoff_ok says the {ctx.socket} fd arrived "
                         f"close-on-exec, but the observer read its flags without "
                         f"O_CLOEXEC while the server held it ({seen})")
    if not all(flags):
        return ctx.vulnerable(f"the server held alice's {ctx.socket} fd without FD_CLOEXEC "
                              f"(/proc fdinfo flags {', '.join(f['flags'] for f in seen)}): "
                              "any process it starts meanwhile inherits it")
    if not all(said):
        return ctx.vulnerable(f"the server received alice's {ctx.socket} fd without "
                              "FD_CLOEXEC (its handoff_ok event) and set the flag only "
                              "afterwards (the observer saw it set): a fork+exec in that "
                              "window inherits it")
    if not said:
        return ctx.error(f"no verdict without the server's events: alice's {ctx.socket} fd "
                         f"was close-on-exec while the server held it (/proc fdinfo flags "
                         f"{', '.join(f['flags'] for f in seen)}), but a flag set right "
                         "after recvmsg (agentsh's B21) looks the same from outside; only "
                         "the server can say whether it arrived with it")
    how = "its handoff_ok agrees: recvmsg MSG_CMSG_CLOEXEC"
    return ctx.defended(f"alice's {ctx.socket} fd was close-on-exec while the server held "
                        f"it (/proc fdinfo flags {', '.join(f['flags'] for f in seen)}; {how})",
                        guard="cloexec")


def hands_off_held(ctx, path: str, gate) -> tuple[Intrusion, list[dict]]:
    """alice's helper hands off on ``path`` and keeps its pipe's write end open; the
    observer reads the flags of the fds the server holds on that pipe; then the helper
    closes it. Returns the helper's attempt and what the observer saw."""
    helper = ctx.helper.spawns_tool("intrude", "--kind", ctx.socket, "--path", path,
                                    "--do", "handoff", "--held-file", gate.file("held"),
                                    "--release-file", gate.file("release"))
    held = gate.wait("held", 10, while_running=helper)
    seen: list[dict] = []
    if held.get("ok"):
        inode = str((held.get("content") or {}).get("pipe_inode"))
        pid = str(ctx.run.server.pid)
        seen = ctx.waits_until(
            "the server holds the helper's pipe (its fds in /proc)",
            lambda: ctx.run.tool("procinfo", [pid, "--pipe", inode]).get("pipe_fds"),
            time.time() + 7.0, pause=0.05) or []  # the server's read lasts 10 s at most
        ctx.step("harness", f"reads the flags of the server's fds on pipe {inode}",
                 ", ".join(f"fd {f['fd']}: flags {f['flags']}"
                           f"{' (O_CLOEXEC)' if f['cloexec'] else ''}" for f in seen)
                 or "none found", detail={"pipe_fds": seen})
        gate.release("release")
    res = helper.wait(30)
    data = json_of(res)
    if data is None:
        raise HarnessError(f"intrude printed no JSON (exit {res.exit_code}): "
                           f"{(res.stderr or '').strip()[-400:]}")
    hand = Intrusion(ctx.helper, data)
    for s in hand.attempts:
        ctx.step(ctx.helper, f"hands off its own token {hand.token} to {s['path']}, keeping "
                 "the pipe open", s.get("result", ""), errno=s.get("errno"), t=s["t"],
                 ms=s.get("ms"), detail=s)
    return hand, seen
