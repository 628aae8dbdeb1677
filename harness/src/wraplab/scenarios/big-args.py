"""Wrap-inits with 60 KB of agent_args: what does one user cost the server's memory?

docs/hostile-users.md H20 (issue 14, finding 4). The server keeps every wrap-init's
``agent_command`` and ``agent_args`` in the session's events (the harness reads them
back). Mallory sends 300 wrap-inits, each with a 60,000-byte ``agent_args`` (under the
64 KiB body limit), and never dials. The harness measures the server's RSS before,
right after, and after every window has ended, and the server's fds, threads and wrap
directories before and after ("nothing left behind").

Verdict: vulnerable when the server accepted the oversized fields (its memory then grows
with every request: issue 14 measured 193 MB for 3,000, never released); defended when
each was refused (413) and nothing was left behind.

Actors: intruder (mallory). Placement: root. Transport: unix. Socket: notify. Window 1 s.

Expected:
- hardened: defended (agent_command <= 1 KiB, agent_args <= 64 items and 4 KiB; a
  session's events <= 128 KiB).
- agentsh, pre-235, permissive, accept-once: vulnerable (agentsh's field limits were not
  read: assumed only the body limit, B1).
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE, back_to_baseline, same_state, server_state

SLUG = "big-args"
ORDER = 242
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 1.0
COUNT = 300
SIZE = 60000
SERVER = {"accept_window": WINDOW}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    base = server_state(ctx)
    t0 = time.time()
    out = ctx.run.exec(ctx.intruder.user_role,
                       ["python3", "-m", "wraplab.actors.hostile", "big-args", "--api", ctx.api,
                        "--count", str(COUNT), "--size", str(SIZE), "--seconds", "30"],
                       timeout=90).json()
    answers = out.get("outcomes") or {}
    ctx.step(ctx.intruder, f"{COUNT} wrap-inits with {SIZE}-byte agent_args, never dialled",
             f"{out.get('attempts')} in {out.get('seconds')} s: {answers}", t=t0, detail=out)
    peak = server_state(ctx)
    after = back_to_baseline(ctx, base, WINDOW + 15)
    grew = (after.get("rss_kib") or 0) - (base.get("rss_kib") or 0)
    ctx.metrics.update(answers=answers, baseline=base, peak=peak, after=after,
                       rss_growth_kib=grew)
    ctx.note(f"server RSS {base.get('rss_kib')} KiB before, {peak.get('rss_kib')} at the "
             f"peak, {after.get('rss_kib')} after every window ended ({grew:+} KiB)")
    if not same_state(after, base):
        return ctx.vulnerable(f"left behind: {after} (baseline {base})")
    if answers.get("200"):
        return ctx.vulnerable(f"{answers['200']} wrap-inits with {SIZE}-byte agent_args "
                              f"accepted; server RSS {grew:+} KiB after every window ended")
    if answers.get("413") != out.get("attempts"):
        return ctx.error(f"neither accepted nor refused as too large: {answers}")
    return ctx.defended(f"all {out.get('attempts')} refused with 413; RSS {grew:+} KiB, "
                        "nothing left behind", guard="byte limits")
