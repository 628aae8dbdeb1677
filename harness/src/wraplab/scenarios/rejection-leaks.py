"""10,000 wrong-UID connections and 1,000 abandoned wrap-inits: does anything leak?

The server runs without CAP_CHOWN, so agentsh's fallback sockets are 0666 and mallory's
connections reach its peer check. Alice starts a wrap and is slow to dial; mallory finds
her socket and connects and closes it 10,000 times (blocking connects, bounded to 1.5 s:
the count reached is recorded); then alice dials and must still get her handoff through.
Then alice sends 1,000 wrap-inits she never dials (a crashed or hostile client). The
harness waits until every wrap has ended and checks that the server's fd and thread
counts and the number of wrap directories are back to their baseline. It also counts
the server's log lines about rejections (SPEC H13: agentsh logs every rejection, so any
local user can make a root server write a line per connect).

Verdict: vulnerable when something leaked, or when the server wrote at least one log line
per two rejections over more than 1,000 rejections (log flooding); broken when alice's own
handoff failed without mallory causing it; otherwise defended.

Actors: owner (alice), intruder (mallory). Placement: root-no-chown. Transport: unix.
Socket: notify. Window 3 s (the connects took 0.07-0.3 s here; the 1,000 abandoned
wrap-inits 0.9-3.5 s, and the harness then waits for their windows to end).

Expected (decided from runs):
- agentsh: vulnerable (H13): every rejection is logged (about one line per connect),
  although nothing leaks and alice's handoff works.
- hardened: defended by the kernel: the ACL admits only alice, mallory gets EACCES; no
  leak.
- accept-once: vulnerable: the first rejection ends alice's loop (denial of service, as in
  ``no-cap-chown``); nothing leaks.
- permissive: vulnerable: mallory's first connection is served (no peer check) and ends the
  loop; alice's dial fails.
- pre-235: broken: the directory is the server's 0700; alice cannot reach it either.
"""

import time

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, Flood

SLUG = "rejection-leaks"
NEEDS = ("events",)
NEEDS_WHY = (
    "it compares the server's rejection count (its events) with its log lines; the "
    "attackers' own view of each rejection is not yet counted"
)
ORDER = 220
EXCLUSIVE = True  # a connection flood: it needs the cores to itself to be stable
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root-no-chown",)
TRANSPORTS = ("unix",)
WINDOW = 3.0
SERVER = {"accept_window": WINDOW}
CONNECTS = 10000
WRAP_INITS = 1000
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def state(ctx) -> dict:
    info = ctx.run.server_info()
    entries = ctx.run.listdir(ctx.run.temp_base)  # whatever the server names them
    return {"fds": info.get("fd_count"), "threads": info.get("threads"), "dirs": len(entries)}


def run(ctx):
    base = state(ctx)
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    attacks = []
    if path:
        t0 = time.time()
        data = ctx.intruder.runs_tool("churn", "connects", "--path", path,
                                      "--count", str(CONNECTS), "--seconds", "1.5")
        outs = data.get("outcomes") or {}
        ctx.step(ctx.intruder, f"connects and closes {path} up to {CONNECTS} times",
                 f"{data.get('attempts')} in {data.get('seconds')} s: {outs}", t=t0,
                 ms=(data.get("seconds") or 0) * 1000, detail=data)
        rate = (data.get("attempts") or 0) / max(data.get("seconds") or 0, 1e-3)
        attacks.append(Flood(ctx.intruder, {**data, "outcomes": outs, "rate": rate}))
    wrap = owner.release()
    verdict = ctx.judge(wrap, attacks)
    rejections = ctx.metrics.get("server_rejections", 0)
    t1 = time.time()
    inits = ctx.owner.runs_tool("churn", "wrap-inits", "--api", ctx.api,
                                "--count", str(WRAP_INITS), "--seconds", "20")
    ctx.step(ctx.owner, f"sends {WRAP_INITS} wrap-inits and never dials",
             f"{inits.get('attempts')} in {inits.get('seconds')} s: {inits.get('outcomes')}",
             t=t1, ms=(inits.get("seconds") or 0) * 1000, detail=inits)
    peak = state(ctx)
    ctx.attack_over()  # what is left is waiting for the abandoned wraps' windows to end
    now = ctx.waits_until("fds, threads and wrap directories are back to the baseline",
                          lambda: (lambda s: s if s == base else None)(state(ctx)),
                          time.time() + WINDOW + 10) or state(ctx)
    ctx.note(f"after the churn: {now} (baseline {base}, peak {peak})")
    log = ctx.run.server_log()
    lines = sum(1 for r in log if "rejecting" in str(r.get("msg", "")))
    ctx.metrics.update(baseline=base, peak=peak, after=now, rejection_log_lines=lines,
                       connects=attacks[0].attempts if attacks else 0,
                       connect_outcomes=attacks[0].outcomes if attacks else {},
                       wrap_inits=inits.get("outcomes"))
    if now != base:
        return ctx.vulnerable(f"leak: server state {now} after every wrap ended, baseline "
                              f"{base}")
    if verdict.verdict is not DEFENDED:
        return verdict
    if rejections > 1000 and lines * 2 >= rejections:
        return ctx.vulnerable(f"log flooding (H13): {lines} log lines for {rejections} "
                              f"rejections; nothing leaked (back to {base}) and alice's "
                              "handoff worked", guard="peer-check")
    return ctx.defended(f"{verdict.reason}; {lines} rejection log lines for {rejections} "
                        f"rejections; after {inits.get('attempts')} abandoned wrap-inits the "
                        f"server is back to {base}", guard=verdict.guard)
