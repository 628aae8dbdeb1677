"""Out-of-range caller_uid values: does the server make a wrap for an identity nobody has?

Alice (any local user would do: the API socket is 0666) sends wrap-init with caller_uid set
to values no real caller has, and to values of the wrong JSON type. For each the scenario
records the HTTP answer and, when a wrap was made, what the server's ``wrap_init`` event
says it did (caller_uid as trusted, uid_source, fs_isolation, directory owner and mode).

The values (SPEC H2, AGENTSH.md B5/G6):
- 4294967295 (2^32-1): ``(uid_t)-1`` means "no change" to chown: the directory stays
  root-owned 0700 yet passes agentsh's permission-bits validation (a wrap nobody can use).
- 4294967296 (2^32): truncated to 32 bits it is 0: root's.
- 2^32 + alice's uid (4294968297 in Docker): truncated it is alice's uid: a wrap "for
  4294968297" handed to alice (uid aliasing).
- 9223372036854775807 (2^63-1, the largest Go int): truncated to 2^32-1.
- 65534: the kernel's overflow uid, what any unmapped uid of another user namespace shows
  as: a directory given to it is reachable by every such peer.
- 9223372036854775808 (2^63): beyond a Go int; -1: negative (B4: 400 everywhere).
- true, 1001.0, "1001": wrong JSON types (400 everywhere: encoding/json into an int).

The attack works when the server answers 200 to one of the impossible values (2^32-1,
2^32, 2^32+1001, 2^63-1, 65534) *and trusts it* (its wrap_init event names that
caller_uid, uid_source ``body``). A 200 that ignored the field (pre-235, legacy) is not
trusting it. Without the server's events (a target that keeps none, or ``--no-events``)
the wrap directory the answer names says it: a wrap someone other than root can reach
(owned by a non-root uid, an ACL entry, searchable by others) was made for the value; a
root-only 0700 directory is a legacy wrap that ignored it.

Actors: owner (alice). Placement: root. Transport: unix. Socket: notify.

Expected (decided from runs):
- agentsh, accept-once, permissive: vulnerable: all five impossible values are trusted
  (200): 2^32-1 and 2^63-1 leave the directory root-owned 0700, 2^32 gives it to root,
  2^32+1001 to alice, 65534 to the overflow uid (permissive keeps its 0711/0666 layout
  and records the value as the caller). The wrong types, 2^63 and -1 are 400.
- hardened: defended: every one is 400 (strict int, 0..4294967294, 65534 refused).
- pre-235: defended: caller_uid is ignored, every wrap is legacy root-only (200, nothing
  trusted).
"""

import json

from wraplab.engine import DEFENDED, VULNERABLE, wrap_seen_from_outside

SLUG = "uid-range"
ORDER = 130
ACTORS = {"owner": "owner"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 3}
EXPECT = {
    "hardened": DEFENDED.by("uid-range"),
    "agentsh": VULNERABLE,
    "pre-235": DEFENDED.by("ignored"),
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}

IMPOSSIBLE = (2**32 - 1, 2**32, 2**32 + 1001, 2**63 - 1, 65534)
INVALID = (2**63, -1, True, 1001.0, "1001")


def run(ctx):
    rows = []
    trusted = []
    impossible = tuple(v if v != 2**32 + 1001 else 2**32 + ctx.owner.uid for v in IMPOSSIBLE)
    for value in impossible + INVALID:
        st, body = ctx.run.api_request("POST", "/api/v1/sessions", {}, as_user="owner")
        if st != 201 or not isinstance(body, dict):
            return ctx.error(f"POST /sessions: HTTP {st} {body!r}")
        sid = body["id"]
        raw = json.dumps({"agent_command": "true", "agent_args": [], "caller_uid": value})
        st, resp = ctx.run.api_request("POST", f"/api/v1/sessions/{sid}/wrap-init", raw,
                                       as_user="owner")
        row = {"caller_uid": json.dumps(value), "http": st}
        if st == 200 and not ctx.target.has_events:
            row.update(wrap_seen_from_outside(ctx, resp))
            if value in impossible and not isinstance(value, bool) and row["reachable"]:
                trusted.append(row)
        elif st == 200:
            init = next((e for e in ctx.events(sid) if e.get("type") == "wrap_init"), {})
            d = init.get("dir")
            row.update(trusted_uid=init.get("caller_uid"), uid_source=init.get("uid_source"),
                       fs_isolation=init.get("fs_isolation"),
                       dir_owner=(init.get("owners") or {}).get(d),
                       dir_mode=(init.get("modes") or {}).get(d))
            if value in impossible and not isinstance(value, bool) \
                    and init.get("uid_source") == "body":
                trusted.append(row)
        else:
            row["error"] = resp.get("error") if isinstance(resp, dict) else resp
        rows.append(row)
        shown = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("caller_uid",))
        ctx.step(ctx.owner, f"wrap-init with caller_uid {row['caller_uid']}", shown)
    ctx.metrics["rows"] = rows
    wrongly_ok = [r for r in rows if r["http"] == 200 and r["caller_uid"] in
                  {json.dumps(v) for v in INVALID} and r.get("uid_source") == "body"]
    if wrongly_ok:
        ctx.note(f"invalid values answered 200 and trusted: {wrongly_ok}")
    if trusted or wrongly_ok:
        bad = trusted + wrongly_ok
        return ctx.vulnerable(
            f"{len(bad)} impossible caller_uid values were trusted: " + "; ".join(
                f"{r['caller_uid']} -> dir owner {r['dir_owner']} mode {r['dir_mode']} "
                f"({r['fs_isolation']})" for r in bad))
    codes = ", ".join(f"{r['caller_uid']}: {r['http']}" for r in rows)
    if any(r["http"] is None or r["http"] >= 500 for r in rows):
        return ctx.error(f"a request got no answer or a server error: {codes}")
    legacy = [r for r in rows if r["http"] == 200]
    if legacy:
        return ctx.defended(f"caller_uid was ignored ({len(legacy)} wraps made as legacy, "
                            f"none trusting the value): {codes}", guard="ignored")
    return ctx.defended(f"every value was refused: {codes}", guard="uid-range")
