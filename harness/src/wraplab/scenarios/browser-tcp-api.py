"""A web page in a local browser talks to the loopback TCP API.

docs/hostile-users.md H25 (issue 14, finding 9). Anything that can reach loopback can
reach the TCP API, and that includes a browser showing an attacker's page: it can send a
"simple" cross-origin POST (no preflight) with ``Origin: http://evil.example`` and a
``text/plain`` body, or, after DNS rebinding, a request whose ``Host`` is the attacker's
name. Mallory's in-lab tool sends exactly those two requests (``hostile browser``); alice
then wraps over the same TCP API with the project's client.

Verdict: vulnerable when either request created a session (201); defended when both were
refused with 403/415 and alice's own client still worked over TCP; broken when alice's
wrap failed.

Actors: owner (alice), intruder (mallory as the browser). Placement: root. Transport:
tcp. Socket: notify.

Expected:
- hardened: defended (``Origin`` refused, ``Host`` must be loopback, POST bodies must be
  ``application/json``).
- agentsh, pre-235, permissive, accept-once: vulnerable (agentsh's TCP listener was not
  read: assumed unguarded).
"""

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "browser-tcp-api"
ORDER = 250
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("tcp",)
SERVER = {"accept_window": 4}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    out = ctx.run.tool("hostile", ["browser", "--api", ctx.api],
                       as_user=ctx.intruder.user_role)
    answers = out.get("answers") or {}
    ctx.step(ctx.intruder, f"sends browser-shaped POSTs to {ctx.api}", str(answers),
             detail=out)
    ctx.metrics.update(browser_answers=answers)
    created = [k for k, v in answers.items() if v == 201]
    if created:
        return ctx.vulnerable(f"a browser-shaped request created a session: {created} "
                              f"({answers})")
    if not all(v in (403, 415) for v in answers.values()):
        return ctx.error(f"the requests got no clear refusal: {answers}")
    wrap = ctx.owner.wraps()
    if not wrap.ok:
        return ctx.broken(f"alice's own wrap over TCP failed: {wrap.failure()}")
    return ctx.defended(f"browser-shaped requests refused ({answers}); alice's client "
                        "still works over TCP", guard="browser guard")
