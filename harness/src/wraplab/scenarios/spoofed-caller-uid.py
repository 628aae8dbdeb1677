"""Mallory claims alice's uid in her own wrap-init.

Mallory runs the owner's client herself with ``--caller-uid <alice's uid>``: she creates a
session, sends wrap-init naming alice, then dials the sockets the server made and tries a
full handoff with her own token. What she would gain is a wrap the server attributes to
alice (her agent's fd and pid recorded under alice's identity). Then alice wraps normally,
to show the server still serves her.

AGENTSH.md B2/H1: agentsh takes the caller identity from the body, so it believes her; the
hardened profile takes it from SO_PEERCRED of the API connection on the Unix API and
answers 403 when the body says otherwise (over TCP it has no peer credentials and uses the
body, as agentsh does).

Actors: owner (alice), intruder (mallory). Placement: root. Transports: unix and tcp.
Socket: notify (the claim is checked once, at wrap-init; the socket kind changes nothing).

Expected (decided from runs):
- hardened over unix: defended by the API peer check: 403 "caller_uid 1001 does not match
  the API peer uid 1003"; no directory is made.
- hardened over tcp, agentsh, accept-once: defended, because the claim is self-defeating:
  the server believes it and gives the directory and sockets to alice (0700/0600), so the
  kernel refuses mallory's connect (EACCES); her claim only ever hands alice a socket.
- permissive: vulnerable: its sockets are root-owned 0666 in a 0711 directory with no peer
  check, so mallory completes the handoff of the wrap made for "alice".
- pre-235: broken: caller_uid is ignored (legacy), the directory stays root 0700, mallory
  is refused by the kernel, and so is alice afterwards.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "spoofed-caller-uid"
ORDER = 120
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix", "tcp")
SERVER = {"accept_window": 6}
EXPECT = {
    "hardened": {"unix": DEFENDED.by("peercred"), "tcp": DEFENDED.by("kernel")},
    "agentsh": DEFENDED.by("kernel"),
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": DEFENDED.by("kernel"),
}


def run(ctx):
    alice = ctx.owner.uid
    m = ctx.intruder.wraps(caller_uid=alice)
    events = ctx.events(m.session) if m.session else []
    init = next((e for e in events if e.get("type") == "wrap_init"), None)
    stolen = [e for e in events if e.get("type") == "handoff_ok"
              and e.get("peer_uid") == ctx.intruder.uid]
    ctx.metrics.update(mallory_step=m.step, mallory_errno=m.errno,
                       mallory_http=m.data.get("http_status"),
                       wrap_init_caller_uid=init.get("caller_uid") if init else None,
                       wrap_init_uid_source=init.get("uid_source") if init else None,
                       fs_isolation=init.get("fs_isolation") if init else None)
    if m.ok or stolen:
        return ctx.vulnerable(
            f"mallory (uid {ctx.intruder.uid}) claimed caller_uid {alice} and completed the "
            f"handoff of that wrap (server's wrap_init: caller_uid "
            f"{init.get('caller_uid') if init else '?'}, uid_source "
            f"{init.get('uid_source') if init else '?'}; handoff_ok from uid "
            f"{stolen[0]['peer_uid'] if stolen else '?'})")
    if m.step in ("session", "wrap-init"):
        why = f"the server refused her wrap-init ({m.failure()})"
        guard = "peercred" if m.data.get("http_status") == 403 else "validation"
    elif m.errno in ("EACCES", "EPERM"):
        made = "?" if not init else (
            f"uid {init['caller_uid']}" if init.get("caller_uid") is not None
            else "no caller (legacy)") + f", fs_isolation {init.get('fs_isolation')}"
        why = (f"the claim was self-defeating: the server made the wrap for {made} and the "
               f"kernel refused her connect ({m.errno})")
        guard = "kernel"
    elif any(e.get("type") == "peer_rejected" for e in events):
        why = "the server's peer check rejected her connection"
        guard = "peer-check"
    else:
        why = f"her wrap {m.failure()}"
        guard = None
    w = ctx.owner.wraps()
    if not w.ok:
        return ctx.broken(f"mallory got nothing ({why}), but alice's own wrap then "
                          f"{w.failure()}")
    verdict = ctx.judge(w)
    if verdict.verdict is not DEFENDED:
        return verdict
    return ctx.defended(f"{why}; alice's own wrap then worked", guard=guard)
