"""A peer connects to the wrap socket and sends nothing: how long does the server wait?

Alice does wrap-init; before her client dials, a second process of hers (the staller: in
agentsh's world, the wrapped agent itself, or anything else running as alice) connects
to the socket and sends nothing, holding the connection for longer than the accept window
plus the handshake timeout. The server admits it (its uid is the expected one) and starts
the handshake. Recorded: how long the server kept the stalled connection, its events
(``peer_dropped``/``handoff_failed`` with reason ``timeout``), and whether alice's own
handoff still worked.

AGENTSH.md B20/G3, SPEC H7: agentsh sets no read deadline after accept on notify (and
signal): the loop, the listener and the directory are held for as long as the peer likes,
past the accept window; agentsh's client gives up after 30 s and the goroutine leaks. On
ptrace agentsh applies a 10 s deadline (B28; the reference uses the handshake timeout),
but each accept loop serves one connection (B19), so the stalled one ends the loop and
alice's dial finds no socket. hardened puts a deadline on every handshake, drops a peer
that sent nothing by then (``peer_dropped``) and goes on accepting until the window ends.

Here the window is 3 s and the handshake timeout 1.5 s (``SERVER``); alice's client is
held after wrap-init and released once the staller's connect has returned (a barrier, not
a delay). The staller holds until the harness has seen enough -- alice's wrap has ended
and the window ended a second ago (then a SIGTERM) -- or 6.5 s at most.

Actors: owner (alice's client), staller (alice, a second process). Placement: root.
Transport: unix. Sockets: notify and ptrace.

Expected (decided from runs):
- agentsh, accept-once, permissive on notify: vulnerable: the server still held the
  stalled connection a second past the end of the 3 s window, and alice's wrap failed.
- agentsh, accept-once, permissive on ptrace: vulnerable: the deadline closed the stalled
  connection after 1.5 s, but it was the loop's one connection: the loop ended with it
  and alice's wrap failed (a denial of service by one silent connection).
- hardened: defended: the stalled connection dropped after the 1.5 s handshake timeout
  (``peer_dropped`` ``timeout``), the loop still accepting, and alice's handoff worked.
- pre-235: broken: the directory is root's 0700, neither the staller nor alice can
  connect.

The staller runs as alice (the peer check admits no one else: a stray or compromised
process of hers, or the wrapped agent itself); an admitted peer is the only one that can
stall a handshake at all.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, judge_stall
from wraplab.engine.evidence import GONE, json_of

SLUG = "slow-client"
ORDER = 140
ACTORS = {"owner": "owner", "staller": "owner"}
SOCKETS = ("notify", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 3.0
HANDSHAKE = 1.5
SEEN = 1.0  # a stall still open this long after the window's end has outlived the window
HOLD = WINDOW + HANDSHAKE + 2.0  # the staller's own bound, should nobody tell it to let go
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
    if path is None:
        return ctx.judge(owner.release(), [])  # no socket: the attack cannot happen
    gate = ctx.barrier(ctx.staller)
    staller = ctx.staller.spawns_tool("intrude", "--kind", ctx.socket, "--path", path,
                                      "--do", "connect", "--watch", f"{HOLD:g}",
                                      "--connected-file", gate.file("connected"))
    gate.wait("connected", 30)  # alice goes on only once the staller's connect returned
    wrap = owner.release()
    window_end = owner.announced["t"] + WINDOW
    res = staller.wait_or_end(window_end + SEEN, HOLD + 30)
    data = json_of(res) or {}
    step = next((s for s in data.get("steps", []) if s.get("action") == "connect"), None)
    if not step:
        return ctx.error(f"the staller printed no result (exit {res.exit_code}): "
                         f"{(res.stderr or '').strip()[-300:]}")
    held = (step.get("ms") or 0) / 1000
    ctx.step(ctx.staller, f"connects to {path} and sends nothing (up to {HOLD:g} s, or "
             "until the harness has seen enough)",
             step.get("result", ""), errno=step.get("errno"), t=step["t"], ms=step.get("ms"),
             detail=step)
    events = ctx.events(wrap.session)
    ends = [e for e in events if e.get("kind") == ctx.socket and e.get("type") in
            ("peer_dropped", "handoff_ok", "handoff_failed", "window_expired")]
    ctx.metrics.update(held_s=round(held, 2), server=step.get("server"),
                       owner_ok=wrap.ok, owner=wrap.failure() if not wrap.ok else "ok",
                       loop_events=[{k: e.get(k) for k in ("type", "reason", "peer_uid")}
                                    for e in ends])
    late = ctx.dialled_too_late(wrap)
    if late:
        return ctx.error(f"no verdict: {late}")
    if step.get("errno") in GONE:
        return ctx.error(f"the attack did not happen: the staller's connect met no live "
                         f"socket ({step['errno']})")
    if wrap.t_dial is not None and step["t"] > wrap.t_dial:
        return ctx.error("the attack did not happen first: the staller connected after "
                         "alice dialled")
    if step.get("errno"):
        if not wrap.ok:
            return ctx.broken(f"the staller could not connect ({step['errno']}) and alice's "
                              f"wrap {wrap.failure()}")
        return ctx.defended(f"the staller could not connect ({step['errno']})",
                            guard="kernel")
    return judge_stall(ctx, wrap, who="the stalled connection", held=held,
                       server=step.get("server"), ends=ends, window=WINDOW,
                       handshake=HANDSHAKE, open_until=step["t"] + held,
                       window_end=window_end)
