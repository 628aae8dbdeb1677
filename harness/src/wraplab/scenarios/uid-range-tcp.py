"""Out-of-range caller_uid values over the TCP API, where the body is the only identity.

``uid-range`` sends its impossible values over the Unix API, where the hardened server
takes the caller's identity from SO_PEERCRED (H1) and answers 403 to any body uid that
differs from the peer's: the range check (SPEC H2) is never what refuses them there. Over
loopback TCP there is no SO_PEERCRED; the hardened server, like agentsh, takes the body's
``caller_uid`` (H1's TCP column), so the strict range check is all that stands.

Alice sends wrap-init over the TCP API with caller_uid 2^32-1 ("no change" to chown),
2^32 (truncates to root), 2^32 + her uid (truncates to her), 2^63-1 and 65534 (the
overflow uid). The attack works when one is answered 200 *and trusted* (the ``wrap_init``
event names it as the caller, ``uid_source`` ``body``; without events, the wrap directory
the answer names is reachable by someone other than root: see ``uid-range``).

Actors: owner (alice). Placement: root. Transport: tcp. Socket: notify.

Expected:
- hardened: defended (validation): every value is 400.
- agentsh, accept-once, permissive: vulnerable: all five are trusted (G6).
- pre-235: defended (ignored): caller_uid is not read, every wrap is legacy.
"""

import json

from wraplab.engine import DEFENDED, VULNERABLE, wrap_seen_from_outside

SLUG = "uid-range-tcp"
ORDER = 360
ACTORS = {"owner": "owner"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("tcp",)
SERVER = {"accept_window": 3}
EXPECT = {
    "hardened": DEFENDED.by("uid-range"),
    "agentsh": VULNERABLE,
    "pre-235": DEFENDED,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    values = (2**32 - 1, 2**32, 2**32 + ctx.owner.uid, 2**63 - 1, 65534)
    rows, trusted = [], []
    for value in values:
        made = ctx.owner.runs_tool("api", "POST", "/api/v1/sessions", "--api", ctx.api,
                                   "--body", "{}")
        if made.get("status") != 201 or not isinstance(made.get("body"), dict):
            return ctx.error(f"POST /sessions over {ctx.api}: {made}")
        sid = made["body"]["id"]
        body = json.dumps({"agent_command": "true", "agent_args": [], "caller_uid": value})
        got = ctx.owner.runs_tool("api", "POST", f"/api/v1/sessions/{sid}/wrap-init",
                                  "--api", ctx.api, "--body", body)
        row = {"caller_uid": value, "http": got.get("status")}
        if got.get("status") == 200 and not ctx.target.has_events:
            row.update(wrap_seen_from_outside(ctx, got.get("body")))
            if row["reachable"]:
                trusted.append(row)
        elif got.get("status") == 200:
            init = next((e for e in ctx.events(sid) if e.get("type") == "wrap_init"), {})
            row.update(trusted_uid=init.get("caller_uid"), uid_source=init.get("uid_source"),
                       transport=init.get("transport"))
            if init.get("uid_source") == "body":
                trusted.append(row)
        else:
            b = got.get("body")
            row["error"] = b.get("error") if isinstance(b, dict) else b
        rows.append(row)
        ctx.step(ctx.owner, f"wrap-init over {ctx.api} with caller_uid {value}",
                 ", ".join(f"{k}={v}" for k, v in row.items() if k != "caller_uid"))
    ctx.metrics["rows"] = rows
    codes = ", ".join(f"{r['caller_uid']}: {r['http']}" for r in rows)
    if trusted:
        return ctx.vulnerable(f"{len(trusted)} impossible caller_uid values were trusted over "
                              f"TCP: {codes}")
    if any(r["http"] is None or r["http"] >= 500 for r in rows):
        return ctx.error(f"a request got no answer or a server error: {codes}")
    if any(r["http"] == 200 for r in rows):
        return ctx.defended(f"caller_uid was ignored (legacy wraps): {codes}", guard="ignored")
    return ctx.defended(f"every value was refused: {codes}", guard="uid-range")
