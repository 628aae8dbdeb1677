"""Mallory stalls alice's handoff over a connection alice's own process made and gave away.

A confused deputy -- any process of alice's that connects where it is told and hands the
connection on (a proxy, a helper that passes fds, a compromised child) -- connects to
alice's wrap socket before her client dials and passes the connected socket to mallory
over SCM_RIGHTS. The kernel recorded SO_PEERCRED at connect: the server sees alice (uid
and the deputy's pid), so the directory's mode/ACL (H3/H4) and the peer check (H6) all
let it through. Mallory sends nothing. Only the handshake deadline (SPEC H7) can end the
stall: a hardened loop drops the silent peer at its handshake timeout and goes on
accepting, so alice's own dial still gets served.

Window 3 s, handshake timeout 1.5 s (``SERVER``); alice's client dials once the deputy's
connection is in mallory's hands (a barrier). Mallory holds until the harness has seen
enough -- alice's wrap has ended and the window ended a second ago (then a SIGTERM) -- or
6.5 s at most.

Actors: owner (alice's client), deputy (alice, a second process), intruder (mallory).
Placement: root. Transport: unix. Sockets: notify, signal, ptrace (the deadline applies
to each).

Expected:
- hardened: defended (handshake-deadline): the server drops mallory's stalled connection
  after 1.5 s (``peer_dropped`` ``timeout``) and serves alice's dial.
- agentsh, accept-once, permissive: vulnerable: notify and signal have no read deadline
  (AGENTSH.md B20/G3): the server still holds mallory's connection a second past the end
  of the window, and alice's wrap fails; ptrace has a deadline (B28) but the stalled connection
  is the loop's one connection (B19): the loop ends with it and alice's dial finds no
  socket.
- pre-235: broken: the directory is root's 0700, neither the deputy nor alice can connect.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, deputy_passes, judge_stall
from wraplab.engine.evidence import GONE

SLUG = "deputy-stall"
ORDER = 320
ACTORS = {"owner": "owner", "deputy": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 3.0
HANDSHAKE = 1.5
SEEN = 1.0  # a stall still open this long after the window's end has outlived the window
HOLD = WINDOW + HANDSHAKE + 2.0  # mallory's own bound, should nobody tell her to let go
SERVER = {"accept_window": WINDOW, "handshake_timeout": HANDSHAKE}
EXPECT = {
    "hardened": DEFENDED.by("handshake-deadline"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    if not path:
        return ctx.judge(owner.release(), [])  # no socket: the attack cannot happen
    # alice is released once mallory holds the passed connection, not before
    passed, got = deputy_passes(ctx, ctx.deputy, ctx.intruder, do="stall", kind=ctx.socket,
                                path=path, hold=HOLD, meanwhile=owner.release,
                                seen_at=owner.announced["t"] + WINDOW + SEEN)
    wrap = owner.release()
    events = ctx.events(wrap.session)
    ends = [e for e in events if e.get("kind") == ctx.socket and e.get("type") in
            ("peer_dropped", "handoff_ok", "handoff_failed", "window_expired")]
    held = (got.get("ms") or 0) / 1000
    ctx.metrics.update(held_s=round(held, 2), server=got.get("server"), owner_ok=wrap.ok,
                       loop_events=[{k: e.get(k) for k in ("type", "reason", "peer_uid")}
                                    for e in ends])
    if not passed.get("passed"):
        if passed.get("errno") in GONE:
            return ctx.error(f"the attack did not happen: the socket was gone when the deputy "
                             f"connected ({passed['errno']}); alice's wrap "
                             f"{'worked' if wrap.ok else wrap.failure()}")
        if passed.get("errno") and not wrap.ok:
            return ctx.broken(f"the deputy could not connect ({passed['errno']}) and alice's "
                              f"wrap {wrap.failure()}")
        if passed.get("errno"):
            return ctx.defended(f"the deputy could not connect ({passed['errno']})",
                                guard="kernel")
        return ctx.error(f"the deputy did not pass a connection: {passed}")
    late = ctx.dialled_too_late(wrap)
    if late:
        return ctx.error(f"no verdict: {late}")
    if wrap.t_dial is not None and passed.get("t", 0) > wrap.t_dial:
        return ctx.error("the attack did not happen first: the deputy connected after alice "
                         "dialled")
    return judge_stall(ctx, wrap, who="mallory's stalled connection (alice's credentials)",
                       held=held, server=got.get("server"), ends=ends, window=WINDOW,
                       handshake=HANDSHAKE, open_until=got.get("t", 0) + held,
                       window_end=owner.announced["t"] + WINDOW)
