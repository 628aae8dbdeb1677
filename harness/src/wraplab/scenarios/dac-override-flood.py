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
    "hardened": DEFENDED.by("backlog"),
    "agentsh": {"*": VULNERABLE, "signal": BROKEN},
    "pre-235": {"*": VULNERABLE, "signal": BROKEN},
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    flooder = ctx.flooder.with_caps("dac_override")
    judgements, floods, wraps = [], [], []
    for _ in range(HANDOFFS):
        owner = ctx.owner.starts_wrap()
        path = owner.socket(ctx.socket)
        if path is None:  # wrap-init failed: there is nothing to flood
            judgements.append(ctx.judge(owner.release()))
            break
        flood = flooder.starts_flood(path, seconds=FLOOD_SECONDS, procs=FLOODERS,
                                     waiters=WAITERS)
        running = flood.ready()
        wrap = owner.release()
        floods.append(flood.stop())
        wraps.append(wrap)
        if not running:
            return ctx.error(f"the flood never got going: {floods[-1].summary()}")
        judgements.append(ctx.judge(wrap, [floods[-1]], first=False))
        if not wrap.ok:
            break
    rejections = sum(rejections_of(ctx.events(w.session), {ctx.flooder.uid}) for w in wraps)
    ctx.metrics.update(flood_rate=[f.rate for f in floods],
                       flood_attempts=sum(f.attempts for f in floods),
                       flood_outcomes=[f.outcomes for f in floods], owner_handoffs=len(wraps),
                       owner_ok=sum(w.ok for w in wraps),
                       owner_handoff_ms=[w.dial_ms for w in wraps],
                       owner_failures=sorted({f"{w.step}:{w.errno}" for w in wraps
                                              if not w.ok}),
                       server_rejections=rejections)
    verdict = combine(judgements)
    if verdict.verdict is not DEFENDED:
        return verdict
    if not all(f.reached_server for f in floods):
        return ctx.error("a flood did not reach the server ("
                         + "; ".join(f.summary() for f in floods)
                         + "): the capability did not get it past the directory")
    return ctx.defended(f"{verdict.reason}; every flood reached the server "
                        f"({rejections} rejections) and alice's retrying client got through "
                        f"every time (handoff ms from the dial: "
                        f"{ctx.metrics['owner_handoff_ms']})", guard="backlog")
