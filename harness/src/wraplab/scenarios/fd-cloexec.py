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
own) makes the handoff on the cell's socket. The server reports, in its ``handoff_ok``
event, whether the received fd had FD_CLOEXEC when ``recvmsg`` returned (``cloexec``, read
with fcntl on the fd in the server process). Judged: ``cloexec`` true is defended, false is
vulnerable; no handoff at all is broken. (Whichever of alice's two processes dials first is
served -- the helper as a rule; the other then finds the loop done. Both are alice's.)

Actors: owner (alice), helper (alice, a second process). Placement: root. Transport:
unix. Sockets: notify, signal (ptrace hands over no fd).

Expected:
- hardened: defended (cloexec): both fds arrive close-on-exec.
- agentsh, accept-once, permissive: vulnerable: the notify fd arrives without the flag
  (set only after ``recvmsg``), the signal fd never gets it.
- pre-235: broken: the root-only directory stops alice's handoff too.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "fd-cloexec"
NEEDS = ("events",)
NEEDS_WHY = (
    "whether the fd the server received was close-on-exec is a flag inside the server "
    "process (handoff_ok cloexec)"
)
ORDER = 340
ACTORS = {"owner": "owner", "helper": "owner"}
SOCKETS = ("notify", "signal")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": DEFENDED.by("cloexec"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    if not path:
        return ctx.judge(owner.release(), [])  # no socket: nothing to hand over
    hand = ctx.helper.attacks_socket(ctx.socket, path, steps="handoff")
    wrap = owner.release()
    events = ctx.events(wrap.session)
    # alice's helper, or her client if it dialled first: either is alice's own handoff
    ok = [e for e in events if e.get("type") == "handoff_ok" and e.get("kind") == ctx.socket
          and e.get("peer_uid") == ctx.owner.uid]
    ctx.metrics.update(cloexec=[e.get("cloexec") for e in ok], helper=hand.refusals())
    if not ok:
        return ctx.broken(f"alice's handoffs on {ctx.socket} were not served "
                          f"({hand.refusals()}; client: "
                          f"{'ok' if wrap.ok else wrap.failure()}); nothing was received")
    if any(e.get("cloexec") is None for e in ok):
        return ctx.error("the server's handoff_ok reports no cloexec field")
    if not all(e.get("cloexec") for e in ok):
        return ctx.vulnerable(f"the server received alice's {ctx.socket} fd without "
                              "FD_CLOEXEC (any process it starts meanwhile inherits it)")
    return ctx.defended(f"alice's {ctx.socket} fd arrived close-on-exec (recvmsg "
                        "MSG_CMSG_CLOEXEC)", guard="cloexec")
