"""Mallory, keeping CAP_DAC_OVERRIDE, floods alice's socket: only the flood defences stand.

``reconnect-flood`` against the hardened server is stopped in the kernel: the directory
admits alice alone, every flood connect gets EACCES, and SPEC H12 (a small listen backlog;
a client that connects with a blocking socket bounded by SO_SNDTIMEO/SO_RCVTIMEO and
retries inside the window) is never reached. Here the flooder keeps CAP_DAC_OVERRIDE
(container root that dropped to mallory's uid): the directory lets the flood through to
the listen backlog, the peer check rejects each connection, and whether alice still hands
off depends on H12 alone.

The flood and alice's five wraps in a row are as in ``reconnect-flood`` (two flooding
processes with blocking waiters, following each new socket; the worst handoff decides).

Actors: owner (alice), flooder (mallory + CAP_DAC_OVERRIDE). Placement: root. Transport:
unix. Sockets: notify, signal, ptrace.

Expected (decided from runs):
- hardened: defended (flood-defence): the peer check rejects thousands of connections, the
  retrying client gets through each time.
- agentsh: vulnerable: the backlog (4096) fills, agentsh's client dials once with a
  non-blocking connect and gets EAGAIN (G10); signal: broken by G8 first.
- accept-once: vulnerable: the first rejection ends the loop.
- permissive, pre-235: vulnerable: no peer check, a flood connection is the loop's one
  connection. pre-235 on signal: broken: alice fails at her notify dial (EACCES on the
  root-only directory), a loop the signal flood did not touch.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, combine, rejections_of
from wraplab.layers import capable

SLUG = "dac-override-flood"
ORDER = 370
EXCLUSIVE = True  # a flood: it needs the cores to itself
ACTORS = {"owner": "owner", "flooder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
FLOOD_SECONDS = 30.0
FLOODERS = 2
WAITERS = 16
HANDOFFS = 5
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": {"*": VULNERABLE, "signal": BROKEN},
    "pre-235": {"*": VULNERABLE, "signal": BROKEN},
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    with capable(ctx, ctx.flooder, "dac_override"):
        flood = ctx.flooder.starts_flood(ctx.socket, seconds=FLOOD_SECONDS, procs=FLOODERS,
                                         waiters=WAITERS, follow=True, wait=4.0)
    wraps = []
    while len(wraps) < HANDOFFS:
        wrap = ctx.owner.wraps(connect_delay=1.5 if not wraps else 0.5)
        wraps.append(wrap)
        if not wrap.ok:
            break
    flood = flood.stop()
    ctx.metrics.update(flood_rate=flood.rate, flood_attempts=flood.attempts,
                       flood_outcomes=flood.outcomes, owner_handoffs=len(wraps),
                       owner_ok=sum(w.ok for w in wraps),
                       owner_handoff_ms=[None if w.latency_ms is None else
                                         round(w.latency_ms - w.connect_delay * 1000, 1)
                                         for w in wraps],
                       owner_failures=sorted({f"{w.step}:{w.errno}" for w in wraps
                                              if not w.ok}))
    if not flood.attempts:
        return ctx.error("the flood never started: " + str(flood.data.get("error")))
    t0, t1 = flood.data.get("t0", 0), flood.data.get("t1", 0)
    if t0 >= ctx.earliest_dial(wraps[0]):
        return ctx.error("the flood started after the owner could dial")
    if t1 < ctx.earliest_dial(wraps[-1]):
        return ctx.error("the flood ended before the owner's last handoff")
    rejections = sum(rejections_of(ctx.events(w.session), {flood.uid}) for w in wraps)
    ctx.metrics["server_rejections"] = rejections
    verdict = combine([ctx.judge(w, [flood], first=False) for w in wraps])
    if verdict.verdict is not DEFENDED:
        return verdict
    if not flood.reached_server:
        return ctx.error(f"the flood did not reach the server ({flood.summary()}): the "
                         "capability did not get it past the directory")
    return ctx.defended(f"{verdict.reason}; the flood reached the server ({flood.summary()}; "
                        f"{rejections} rejections) and alice's retrying client got through "
                        f"every time (handoff ms after the dial delay: "
                        f"{ctx.metrics['owner_handoff_ms']})", guard="flood-defence")
