"""Thousands of rejected connections from a CAP_DAC_OVERRIDE holder: one log line each?

SPEC H13: rejections are counted per peer uid and the log lines about them rate-limited,
so no local user can make the privileged server write a line per connect. In
``rejection-leaks`` the hardened server's ACL stops mallory in the kernel (EACCES), so the
rate limit is never reached. Here mallory keeps CAP_DAC_OVERRIDE (container root that
dropped to her uid): the directory lets her through, the peer check rejects her every
time, and the log limiter is what stands between her and the server's log.

Alice's client is slow to dial; mallory connects to alice's socket up to 2,000 times
(blocking connects, 4 s bound: the count reached is recorded), each time waiting briefly
for the server to turn her away (it closes the connection, or answers status 0 / NACK:
what she counts as rejections), then alice dials and must get her handoff. The observer
(root) counts the lines the server's log file grew by from before mallory's first connect
to after alice's wrap: black-box, whatever the server writes. Where the target keeps
events, their rejection count corroborates mallory's (a disagreement is ``error``).

Verdict: vulnerable when alice's wrap was denied by the attacker (``ctx.judge``), or when
over 1,000 rejections produced at least one log line per two (log flooding); broken when
alice failed by herself; defended (log-rate-limit) otherwise.

Actors: owner (alice), intruder (mallory + CAP_DAC_OVERRIDE). Placement: root.
Transport: unix. Sockets: notify, signal, ptrace (each loop logs its own rejections).

Expected:
- hardened: defended (log-rate-limit): a handful of lines for ~2,000 rejections.
- agentsh: vulnerable: a log line per rejection (signal: broken by G8 first).
- accept-once: vulnerable: the first rejection ends alice's loop (denial of service).
- permissive, pre-235: vulnerable: no peer check; mallory's first connection is the
  loop's one connection, alice's wrap fails. pre-235 on signal: broken: alice fails
  at her notify dial (EACCES on the root-only directory), a loop mallory did not touch.
"""

import time

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, Flood, broken_by_g8
from wraplab.engine.evidence import GONE

SLUG = "dac-override-rejections"
ORDER = 350
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 10}
CONNECTS = 2000
EXPECT = {
    "hardened": DEFENDED.by("rate-limit"),
    "agentsh": {"*": VULNERABLE, "signal": broken_by_g8(VULNERABLE)},
    "pre-235": {"*": VULNERABLE, "signal": BROKEN},
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    attacks = []
    before = len(ctx.run.server_log())
    data: dict = {}
    if path:
        t0 = time.time()
        data = ctx.intruder.with_caps("dac_override").runs_tool(
            "churn", "connects", "--path", path, "--count", str(CONNECTS), "--seconds", "4",
            "--watch", "0.2")
        outs = data.get("outcomes") or {}
        ctx.step(ctx.intruder, f"connects to {path} up to {CONNECTS} times",
                 f"{data.get('attempts')} in {data.get('seconds')} s: {outs}; turned away "
                 f"by the server: {data.get('closed_by_server')}", t=t0,
                 ms=(data.get("seconds") or 0) * 1000, detail=data)
        rate = (data.get("attempts") or 0) / max(data.get("seconds") or 0, 1e-3)
        attacks.append(Flood(ctx.intruder, {**data, "outcomes": outs, "rate": rate}))
    wrap = owner.release()
    verdict = ctx.judge(wrap, attacks)
    counted = ctx.metrics.get("server_rejections", 0)  # the events' count (0 without)
    rejections = int(data.get("closed_by_server") or 0)
    log = ctx.run.server_log()
    lines = len(log) - before
    ctx.metrics.update(rejections_seen=rejections, log_lines_added=lines,
                       rejection_log_lines=sum(1 for r in log[before:]
                                               if "rejecting" in str(r.get("msg", ""))),
                       connects=attacks[0].attempts if attacks else 0,
                       connect_outcomes=attacks[0].outcomes if attacks else {})
    ctx.step("harness", "counts the lines the server's log grew by", f"{lines} lines")
    vanished = vanished_under(attacks[0], wrap, ctx.socket) if attacks else None
    if verdict.verdict is BROKEN and vanished:
        if ctx.target.has_events:
            return ctx.error(f"{vanished}, yet the server's events show no loop ended by "
                             f"her ({verdict.reason})")
        return ctx.vulnerable(f"denial of service: {vanished}; alice's wrap then "
                              f"{wrap.failure()}")
    if verdict.verdict is not DEFENDED:
        return verdict
    if ctx.target.has_events and abs(counted - rejections) > max(10, rejections // 10):
        return ctx.error(f"mallory was turned away {rejections} times but the server's "
                         f"events count {counted} rejections")
    if rejections <= 1000:
        return ctx.error(f"only {rejections} of mallory's connections were turned away by "
                         "the server: too few to judge its log")
    if lines * 2 >= rejections:
        return ctx.vulnerable(f"log flooding (H13): the server's log grew by {lines} lines "
                              f"for {rejections} rejections; alice's handoff worked",
                              guard="peer-check")
    return ctx.defended(f"the server's log grew by {lines} lines for {rejections} rejections "
                        f"(rate limited); " + (verdict.reason if ctx.target.has_events
                                               else "alice's handoff worked"),
                        guard="rate-limit")


def vanished_under(flood: Flood, wrap, kind: str) -> str | None:
    """Black-box sign that mallory's connections ended alice's loop: her connects met the
    socket at first, then found it gone (the loop took one of hers and ended), and alice
    then failed on that socket for want of it. None otherwise."""
    outs = flood.outcomes
    gone = {k: v for k, v in outs.items() if k in GONE and v}
    if wrap.ok or not outs.get("ok") or not gone or wrap.failed_kind != kind \
            or wrap.errno not in GONE:
        return None
    return (f"the {kind} socket vanished while mallory connected to it ({outs.get('ok')} "
            f"connects, then {', '.join(f'{k} {v}' for k, v in gone.items())}): her "
            "connection ended alice's loop")
