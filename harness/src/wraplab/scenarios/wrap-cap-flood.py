"""One local user fills the server's wrap cap; does alice still get her wrap?

docs/hostile-users.md H15 (issue 14, finding 2). Every pending wrap holds a directory,
fds and a thread, so the reference server caps them (1,024 at once, then 503 "too many
pending wraps"). Mallory sends 1,100 session + wrap-init pairs as fast as she can and
never dials: each of her wraps stays pending for the whole accept window. While they are
pending, alice runs her client five times. Recorded: mallory's answers by HTTP status,
alice's success rate and latency, and the server's fds, threads, RSS and wrap
directories before the attack, at its peak and after every wrap has ended.

Verdict: vulnerable when alice's wrap-init got 503 while mallory's wraps were pending
(one uid denied another); defended when every one of alice's wraps worked *and* mallory
was stopped by a per-uid 503 (evidence she reached the bound); error when she was not
(the attack did not happen). Either way the server's fds, threads and wrap directories
must be back to their baseline once the window is over ("nothing left behind"; RSS is
reported, not judged: Python keeps freed memory in its arenas).

Actors: owner (alice), flooder (mallory). Placement: root. Transport: unix. Socket: notify.
Window 10 s: the flood took 1.4-3 s on this project's 2-core machine (thread-per-wrap
server), 1.5-3.7 s with both cores kept busy by burners (event-loop server, 2026-12-01),
and alice's five tries well under a second; mallory's flood is cut at the window minus 3 s.
(With a 7 s window, `make test` on 2026-12-01 saw agentsh's Docker cell get 791 pairs out in
the 4 s, about 200 a second beside another exclusive cell's clean-up, and so `error`: the
cap was never reached; the local lab's cells did the same once under load.)
None of mallory's wraps can expire before the flood's start plus the window, so alice's
tries must end by then: later (a slower machine), the verdict is ``error`` unless alice got
a 503 (that is proof whatever the timing).

Expected:
- hardened: defended: mallory gets 128 wraps (``max_wraps_per_uid``) and then 503 "too
  many pending wraps for this uid"; alice's five wraps work.
- agentsh, accept-once, permissive, pre-235: vulnerable: mallory's 1,024 pending wraps
  fill the global cap and alice's wrap-init gets 503 (agentsh has no such cap, but no
  per-uid bound either: its limit is the process's fds; the model's cap stands for it,
  an assumption, docs/hostile-users.md H15).
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE, back_to_baseline, same_state, server_state

SLUG = "wrap-cap-flood"
ORDER = 240
EXCLUSIVE = True  # 1,100 wraps and their threads: it needs the cores to itself
ACTORS = {"owner": "owner", "flooder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 10.0
SERVER = {"accept_window": WINDOW}
FLOOD = 1100
OWNER_TRIES = 5
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
    res = ctx.run.exec(ctx.flooder.user_role,
                       ["python3", "-m", "wraplab.actors.churn", "wrap-inits", "--api", ctx.api,
                        "--count", str(FLOOD), "--seconds", f"{WINDOW - 3:g}"], timeout=60)
    flood = res.json()
    outs = flood.get("outcomes") or {}
    ctx.step(ctx.flooder, f"sends {FLOOD} session + wrap-init pairs and never dials",
             f"{flood.get('attempts')} in {flood.get('seconds')} s: {outs}", t=t0,
             ms=(flood.get("seconds") or 0) * 1000, detail=flood)
    peak = server_state(ctx)
    wraps = [ctx.owner.wraps() for _ in range(OWNER_TRIES)]
    ok = [w for w in wraps if w.ok]
    denied = [w for w in wraps if not w.ok and w.step == "wrap-init"
              and (w.data.get("http_status") == 503)]
    latency = sorted(w.latency_ms for w in wraps if w.latency_ms is not None)
    flood_done = time.time()  # alice's tries are over
    ctx.attack_over()  # what is left is waiting for mallory's windows to end
    after = back_to_baseline(ctx, base, WINDOW + 20)
    rate = len(ok) / len(wraps)
    ctx.metrics.update(flood=outs, owner_success=rate, owner_latency_ms=latency,
                       baseline=base, peak=peak, after=after,
                       recovered_s=round(time.time() - flood_done, 1))
    ctx.note(f"alice {len(ok)}/{len(wraps)} ok while mallory's wraps were pending "
             f"(latency ms {latency}); server state before {base}, peak {peak}, after {after}")
    if not same_state(after, base):
        return ctx.vulnerable(f"left behind after every window ended: {after} "
                              f"(baseline {base})")
    if denied:
        return ctx.vulnerable(f"alice's wrap-init got 503 in {len(denied)} of {len(wraps)} "
                              f"tries while mallory held {outs.get('200', 0)} pending wraps: "
                              "one uid filled the global cap", guard="global cap")
    if flood_done >= t0 + WINDOW:
        return ctx.error(f"alice's tries ended {flood_done - t0:.1f} s after the flood began, "
                         f"past the {WINDOW:g} s window: mallory's first wraps may have "
                         "expired before them (the wraps were not all pending at once)")
    if len(ok) != len(wraps):
        return ctx.broken(f"alice's wraps failed without a 503: "
                          f"{[w.failure() for w in wraps if not w.ok]}")
    if not outs.get("503"):
        return ctx.error(f"mallory was never refused ({outs}): the cap was not reached")
    return ctx.defended(f"mallory got {outs.get('200', 0)} wraps and then 503 "
                        f"({outs.get('503')} times); alice's {len(wraps)} wraps all worked "
                        f"(latency ms {latency}); nothing left behind ({after})",
                        guard="per-uid quota")
