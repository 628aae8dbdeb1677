"""A peer connects to the wrap socket and sends nothing: how long does the server wait?

Alice does wrap-init; before her client dials, a second process of hers (the staller: in
agentsh's world, the wrapped agent itself, or anything else running as alice) connects
to the socket and sends nothing, holding the connection for longer than the accept window
plus the handshake timeout. The server admits it (its uid is the expected one) and starts
the handshake. Recorded: how long the server kept the stalled connection, its events
(``handoff_failed`` with reason ``timeout``/``eof``), and alice's client outcome.

AGENTSH.md B20/G3, SPEC H7: agentsh sets no read deadline after accept on notify (and
signal): the loop, the listener and the directory are held for as long as the peer likes,
past the accept window; agentsh's client gives up after 30 s and the goroutine leaks. On
ptrace agentsh applies a 10 s deadline (B28; the reference uses the handshake timeout).
hardened puts a deadline on every handshake.

Here the window is 4 s and the handshake timeout 1.5 s (``SERVER``); the staller holds
for 7.5 s.

Actors: owner (alice's client), staller (alice, a second process). Placement: root.
Transport: unix. Sockets: notify and ptrace.

Expected (decided from runs):
- agentsh, accept-once, permissive on notify: vulnerable: the server still held the
  stalled connection when the staller gave up at 7.5 s, past the 4 s window.
- agentsh, accept-once, permissive on ptrace: defended: the ptrace deadline closes it
  after the handshake timeout.
- hardened: defended: closed after the 1.5 s handshake timeout (``handoff_failed``
  ``timeout``), and the directory removed.
- pre-235: broken: the directory is root's 0700, neither the staller nor alice can
  connect.

In every profile alice's own handoff fails in this scenario, because each accept loop
serves one connection (B19) and the staller's was it; hardened does not keep accepting
after a failed handshake either. That is recorded (``owner_ok``), not judged: the
staller is alice's own process. (A hardened server that went on accepting after a
handshake timeout until the window ends would let her succeed; see the report of issue 5.)
"""

import json

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "slow-client"
ORDER = 140
ACTORS = {"owner": "owner", "staller": "owner"}
SOCKETS = ("notify", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 4.0
HANDSHAKE = 1.5
HOLD = WINDOW + HANDSHAKE + 2.0
SERVER = {"accept_window": WINDOW, "handshake_timeout": HANDSHAKE}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": {"notify": VULNERABLE, "ptrace": DEFENDED},
    "pre-235": BROKEN,
    "permissive": {"notify": VULNERABLE, "ptrace": DEFENDED},
    "accept-once": {"notify": VULNERABLE, "ptrace": DEFENDED},
}


def run(ctx):
    slow = ctx.owner.starts_wrap(connect_delay=2.5)
    path = ctx.waits_for_socket(ctx.socket)
    if not path:
        wrap = slow.result()
        return ctx.judge(wrap)
    argv = ["python3", "-m", "wraplab.actors.intrude", "--kind", ctx.socket, "--path", path,
            "--do", "connect", "--watch", f"{HOLD:g}"]
    res = ctx.run.exec(ctx.staller.user_role, argv, timeout=HOLD + 30)
    try:
        data = res.json()
    except ValueError:
        data = {}
    step = next((s for s in data.get("steps", []) if s.get("action") == "connect"), None)
    if not step:
        return ctx.error(f"the staller printed no result (exit {res.exit_code}): "
                         f"{(res.stderr or '').strip()[-300:]}")
    held = (step.get("ms") or 0) / 1000
    ctx.step(ctx.staller, f"connects to {path} and sends nothing (up to {HOLD:g} s)",
             step.get("result", ""), errno=step.get("errno"), t=step["t"], ms=step.get("ms"),
             detail=step)
    wrap = slow.result()
    events = ctx.events(wrap.session)
    ends = [e for e in events if e.get("kind") == ctx.socket and e.get("type") in
            ("handoff_ok", "handoff_failed", "window_expired")]
    ctx.metrics.update(held_s=round(held, 2), server=step.get("server"),
                       owner_ok=wrap.ok, owner=wrap.failure() if not wrap.ok else "ok",
                       loop_end=[{k: e.get(k) for k in ("type", "reason", "peer_uid")}
                                 for e in ends])
    if step.get("errno"):
        if not wrap.ok:
            return ctx.broken(f"the staller could not connect ({step['errno']}) and alice's "
                              f"wrap {wrap.failure()}")
        return ctx.defended(f"the staller could not connect ({step['errno']})",
                            guard="kernel")
    if step["t"] > ctx.earliest_dial(wrap):
        return ctx.error("the staller connected after alice could dial: not first")
    owner = "alice's wrap then " + (wrap.failure() if not wrap.ok else "worked")
    if step.get("server") == "open":
        return ctx.vulnerable(
            f"the server held the stalled connection for all {held:.1f} s the staller waited, "
            f"past its {WINDOW:g} s accept window (no handshake deadline); {owner}; loop end "
            f"events after the staller left: {json.dumps(ctx.metrics['loop_end'])}")
    if held <= HANDSHAKE + 1.5:
        why = next((e.get("reason") for e in ends if e.get("type") == "handoff_failed"), None)
        return ctx.defended(f"the server dropped the stalled connection after {held:.1f} s "
                            f"(handshake timeout {HANDSHAKE:g} s; reason {why}); {owner}",
                            guard="handshake-deadline")
    return ctx.error(f"the server closed the stalled connection after {held:.1f} s: neither "
                     f"at its handshake timeout nor held past the window")


