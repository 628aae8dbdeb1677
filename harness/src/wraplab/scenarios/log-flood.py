"""Any local user makes the server write its log: how much can one user write?

docs/hostile-users.md H21 (issue 14, finding 5). The API is reachable by every local user
and every error answer is logged. Mallory sends 300 requests for a missing path 60,000
bytes long (each a 404) in at most 20 s. The harness measures how much the server's log
grew, and then alice wraps.

Verdict: vulnerable when the log grew by at least a tenth of what mallory sent (one user
writes the server's disk at her own pace: issue 14 measured ~23 MB/s); defended when it
grew by less than 64 KiB in all (fields truncated, error lines rate-limited per uid)
while mallory's requests reached the server (404s counted) and alice's wrap worked.

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended.
- agentsh, pre-235, permissive, accept-once: vulnerable (agentsh's request logging was
  not read: assumed one unbounded line per error).
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "log-flood"
ORDER = 255
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 4}
COUNT = 300
LENGTH = 60000
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def log_bytes(ctx) -> int:
    return sum(len(str(r)) for r in ctx.run.server_log())


def run(ctx):
    before = log_bytes(ctx)
    t0 = time.time()
    out = ctx.run.exec(ctx.intruder.user_role,
                       ["python3", "-m", "wraplab.actors.hostile", "long-paths", "--api",
                        ctx.api, "--count", str(COUNT), "--length", str(LENGTH),
                        "--seconds", "20"], timeout=60).json()
    ctx.step(ctx.intruder, f"requests a {LENGTH}-byte missing path {COUNT} times",
             f"{out.get('attempts')} in {out.get('seconds')} s: {out.get('outcomes')}", t=t0,
             ms=(out.get("seconds") or 0) * 1000, detail=out)
    grew = log_bytes(ctx) - before
    sent = out.get("bytes_sent") or 0
    rate = grew / max(out.get("seconds") or 0, 1e-3)
    ctx.metrics.update(log_growth_bytes=grew, sent_bytes=sent, log_bytes_per_s=round(rate),
                       answers=out.get("outcomes"))
    ctx.note(f"the server's log grew {grew} bytes ({rate / 1e6:.2f} MB/s) for {sent} bytes "
             "of requests")
    if not out.get("outcomes", {}).get("404"):
        return ctx.error(f"mallory's requests did not reach the router: {out.get('outcomes')}")
    if grew * 10 >= sent:
        return ctx.vulnerable(f"one user wrote {grew} bytes into the server's log in "
                              f"{out.get('seconds')} s ({rate / 1e6:.2f} MB/s)")
    wrap = ctx.owner.wraps()
    if not wrap.ok:
        return ctx.broken(f"alice's wrap failed: {wrap.failure()}")
    if grew >= 64 * 1024:
        return ctx.vulnerable(f"the log grew {grew} bytes: bounded per line but not in all")
    return ctx.defended(f"{out.get('attempts')} long 404s grew the log by {grew} bytes "
                        f"(fields cut, lines rate-limited per uid); alice's wrap worked",
                        guard="bounded logs")
