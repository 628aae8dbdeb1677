"""Mallory, keeping CAP_DAC_OVERRIDE, floods alice's socket: only the flood defences stand.

``reconnect-flood`` against the hardened server is stopped in the kernel: the directory
admits alice alone, every flood connect gets EACCES, and SPEC H12 (a small listen backlog;
a client that connects with a blocking socket bounded by SO_SNDTIMEO/SO_RCVTIMEO and
retries inside the window) is never reached. Here the flooder keeps CAP_DAC_OVERRIDE
(container root that dropped to mallory's uid): the directory lets the flood through to
the listen backlog, the peer check rejects each connection, and whether alice still hands
off depends on H12 alone.

The flood and alice's wraps in a row (up to twelve) are as in ``reconnect-flood`` (two flooding
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

from wraplab.engine import (
    BROKEN,
    DEFENDED,
    FLOOD_HANDOFFS,
    VULNERABLE,
    broken_by_g8,
    handoffs_under_flood,
)

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
HANDOFFS = FLOOD_HANDOFFS
EXPECT = {
    "hardened": DEFENDED.by("backlog"),
    "agentsh": {"*": VULNERABLE, "signal": broken_by_g8(VULNERABLE)},
    "pre-235": {"*": VULNERABLE, "signal": BROKEN},
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    verdict = handoffs_under_flood(ctx, ctx.flooder.with_caps("dac_override"),
                                   handoffs=HANDOFFS, seconds=FLOOD_SECONDS, procs=FLOODERS,
                                   waiters=WAITERS)
    if verdict.verdict is not DEFENDED:
        return verdict
    if not all(ctx.metrics["flood_reached_server"]):
        return ctx.error(f"a flood did not reach the server ({ctx.metrics['flood_outcomes']}):"
                         " the capability did not get it past the directory")
    return ctx.defended(f"{verdict.reason}; every flood reached the server "
                        f"({ctx.metrics['server_rejections']} rejections) and alice's "
                        f"retrying client got through every time (handoff ms from the dial: "
                        f"{ctx.metrics['owner_handoff_ms']})", guard="backlog")
