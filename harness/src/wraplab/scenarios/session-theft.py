"""Mallory learns alice's session id: can she read it, use it, or make it vanish?

docs/hostile-users.md H23 and H15 (issue 14, finding 7). Session ids are not secrets: the
wrap socket's name carries one (visible to everyone in /proc/net/unix), and the server
logs them. Alice wraps (her session's events then hold her token and ``agent_args``).
Mallory, knowing the id, (1) reads the session's events through the 0666 API, (2) sends
a wrap-init in alice's session, and (3) creates 4,200 sessions of her own, more than the
server keeps (4,096), hoping the oldest, alice's, is forgotten. The harness (root) reads
alice's session before and after.

Verdict: vulnerable when mallory read alice's events (her token among them), got a
wrap-init into alice's session, or made alice's session disappear; defended when each
of mallory's requests on alice's session got 404 while root read the same session (200:
the id was right, ownership stopped her), and alice's session outlived the flood.

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended: sessions belong to the uid that created them (H23); mallory's own
  session quota (256, H15) evicts only her own oldest sessions.
- agentsh, pre-235, permissive, accept-once: vulnerable: any uid that names a session
  reads it and wrap-inits in it (B1; session ownership in agentsh not read: assumed
  none), and a flood evicts the oldest session whoever owns it.
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "session-theft"
ORDER = 245
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 2}
FLOOD = 4200
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    wrap = ctx.owner.wraps()
    sid = wrap.session
    if not sid:
        return ctx.error(f"alice's client made no session: {wrap.failure()}")
    events_path = f"/api/v1/sessions/{sid}/events"
    root_status, _ = ctx.run.api_request("GET", events_path)
    st_read, body = ctx.run.api_request("GET", events_path, as_user=ctx.intruder.user_role)
    leaked = st_read == 200 and wrap.token and wrap.token in str(body)
    ctx.step(ctx.intruder, f"reads alice's session {sid} events",
             f"HTTP {st_read}" + (" (alice's token in it)" if leaked else ""))
    st_init, _ = ctx.run.api_request("POST", f"/api/v1/sessions/{sid}/wrap-init",
                                     {"agent_command": "x", "agent_args": []},
                                     as_user=ctx.intruder.user_role)
    ctx.step(ctx.intruder, f"sends a wrap-init in alice's session {sid}", f"HTTP {st_init}")
    t0 = time.time()
    flood = ctx.run.exec(ctx.intruder.user_role,
                         ["python3", "-m", "wraplab.actors.hostile", "sessions", "--api",
                          ctx.api, "--count", str(FLOOD), "--seconds", "40"], timeout=90).json()
    ctx.step(ctx.intruder, f"creates {FLOOD} sessions of her own",
             f"{flood.get('attempts')} in {flood.get('seconds')} s: {flood.get('outcomes')}",
             t=t0, ms=(flood.get("seconds") or 0) * 1000, detail=flood)
    after_status, _ = ctx.run.api_request("GET", events_path)
    ctx.step("harness", f"reads alice's session {sid} after the flood", f"HTTP {after_status}")
    ctx.metrics.update(root_read=root_status, intruder_read=st_read, intruder_wrap_init=st_init,
                       flood=flood.get("outcomes"), after_flood=after_status)
    if root_status != 200:
        return ctx.error(f"root could not read alice's session (HTTP {root_status})")
    found = []
    if st_read == 200:
        found.append("mallory read alice's events" + (" with her token" if leaked else ""))
    if st_init == 200:
        found.append("mallory's wrap-init ran in alice's session")
    if after_status != 200:
        found.append(f"alice's session was evicted by mallory's flood (HTTP {after_status})")
    if found:
        return ctx.vulnerable("; ".join(found), guard=None)
    if (st_read, st_init) != (404, 404):
        return ctx.error(f"mallory's requests got {st_read}/{st_init}, not the 404 of H23")
    return ctx.defended(f"mallory's read and wrap-init in alice's session got 404 while root "
                        f"read it (200); after {flood.get('attempts')} sessions of mallory's "
                        f"({flood.get('outcomes')}) alice's session is still there",
                        guard="session owner")
