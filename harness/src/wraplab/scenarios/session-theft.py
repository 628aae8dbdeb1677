"""Mallory learns alice's session id: can she read it, use it, or make it vanish?

docs/hostile-users.md H23 and H15 (issue 14, finding 7). Session ids are not secrets: the
wrap socket's name carries one (visible to everyone in /proc/net/unix), and the server
logs them. Alice wraps (her session's events then hold her token and ``agent_args``).
Mallory, knowing the id, (1) reads the session's events through the 0666 API, (2) sends
a wrap-init in alice's session, and (3) creates 4,200 sessions of her own, more than the
server keeps (4,096), hoping the oldest, alice's, is forgotten. The harness (root) checks
that alice's session exists before and after, black-box for any server: a wrap-init in it
with a body that is not a JSON object (``[]``) is 400 while the session is known, 404 once
it is not (docs/protocol.md: an unknown session is 404 before anything in the body), and
nothing is made either way. Where the target keeps events, root's read of them (200/404)
corroborates; a disagreement is ``error``. Step (1) is moot for a target without an events
endpoint (mallory gets 404 like everyone).

Verdict: vulnerable when mallory read alice's events (her token among them), got a
wrap-init into alice's session, or made alice's session disappear; defended when each
of mallory's requests on alice's session got 404 while root found the same session (the
id was right, ownership stopped her), and alice's session outlived the flood.

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

from wraplab.engine import DEFENDED, VULNERABLE, HarnessError

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


def exists(ctx, sid: str, when: str) -> bool:
    """Root's black-box check that the session ``sid`` is known to the server: a wrap-init
    whose body is not a JSON object is 400 for a known session, 404 for an unknown one; the events
    (200/404), where the target keeps them, must agree (else a HarnessError)."""
    st, body = ctx.run.api_request("POST", f"/api/v1/sessions/{sid}/wrap-init",
                                   "[]")
    if st not in (400, 404):
        raise HarnessError(f"root's probe of session {sid} {when}: HTTP {st} {body!r} "
                           "(400 or 404 expected)")
    known = st == 400
    said = f"HTTP {st}"
    if ctx.target.has_events:
        ev, _ = ctx.run.api_request("GET", f"/api/v1/sessions/{sid}/events")
        said += f"; its events: HTTP {ev}"
        if (ev == 200) != known:
            raise HarnessError(f"root's probe of session {sid} {when} says "
                               f"{'known' if known else 'unknown'} ({said}): they disagree")
    ctx.step("harness", f"checks that alice's session {sid} exists {when} (a wrap-init with "
             "an invalid body)", f"{'yes' if known else 'no'} ({said})")
    return known


def run(ctx):
    wrap = ctx.owner.wraps()
    sid = wrap.session
    if not sid:
        return ctx.error(f"alice's client made no session: {wrap.failure()}")
    events_path = f"/api/v1/sessions/{sid}/events"
    try:
        known = exists(ctx, sid, "before")
    except HarnessError as exc:
        return ctx.error(str(exc))
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
    try:
        kept = exists(ctx, sid, "after the flood")
    except HarnessError as exc:
        return ctx.error(str(exc))
    ctx.metrics.update(root_found=known, intruder_read=st_read, intruder_wrap_init=st_init,
                       flood=flood.get("outcomes"), kept_after_flood=kept)
    if not known:
        return ctx.error("root could not find alice's session (its probe got 404)")
    found = []
    if st_read == 200:
        found.append("mallory read alice's events" + (" with her token" if leaked else ""))
    if st_init == 200:
        found.append("mallory's wrap-init ran in alice's session")
    if not kept:
        found.append("alice's session was evicted by mallory's flood (root's probe: 404)")
    if found:
        return ctx.vulnerable("; ".join(found), guard=None)
    if (st_read, st_init) != (404, 404):
        return ctx.error(f"mallory's requests got {st_read}/{st_init}, not the 404 of H23")
    return ctx.defended(f"mallory's read and wrap-init in alice's session got 404 while root "
                        f"found it; after {flood.get('attempts')} sessions of mallory's "
                        f"({flood.get('outcomes')}) alice's session is still there",
                        guard="session owner")
