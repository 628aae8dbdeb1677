"""Mallory hands off over a connection alice's own process made: only the pid checks see it.

A confused deputy (a process of alice's that connects where told and passes the
connection on) does a wrap-init of its own as alice, connects to the socket it names and
passes the connected socket to mallory over SCM_RIGHTS. SO_PEERCRED was recorded at
connect, so the server sees alice (uid, and the deputy's pid): the directory (H3/H4) and
the peer check (H6) let mallory's bytes through. She then hands off her own: notify =
0xA7 + the pid of a child of *hers* as the wrapper + her pipe fd; ptrace = her own pid
(the tracer would attach her process: she gets alice's seccomp supervisor); signal =
0x00 + her fd.

What can stand: on notify, the wrapper pid check (SPEC H10: the wrapper's PPid must be
the peer pid and the peer uid among its uids -- mallory's child has mallory's pid as
parent and her uid); on ptrace, the pid binding (H9: the pid must be the peer or its
descendant, running as the peer's uid). On signal, nothing in SPEC §3 binds the fd to the
connecting process: the hardened design has no rule for it (a gap this scenario shows).
Afterwards alice wraps once more on her own (her own handoff must still work).

Actors: owner (alice), deputy (alice, a second process), intruder (mallory). Placement:
root. Transport: unix. Sockets: notify, ptrace, signal.

Expected:
- hardened: notify: defended (pid-check: ``bad_wrapper_pid``); ptrace: defended
  (pid-check: ``pid_not_peer``); signal: **vulnerable**: mallory's fd is accepted as
  alice's (no rule of §3 covers it; the design gap is reported, not hidden).
- agentsh, accept-once, permissive: vulnerable: no wrapper pid validation (B31 without
  cgroups/eBPF), no ptrace pid binding, and nothing on signal: mallory's handoff is
  accepted.
- pre-235: broken: the deputy cannot reach the root-only directory (nor can alice).
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, deputy_passes

SLUG = "deputy-handoff"
NEEDS = ("events",)
NEEDS_WHY = (
    "which uid the server saw on the passed connection and how the loop ended are read from "
    "handoff_ok / handoff_failed"
)
ORDER = 330
ACTORS = {"owner": "owner", "deputy": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": {"*": DEFENDED.by("pid-check"), "signal": VULNERABLE},
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    passed, got = deputy_passes(ctx, ctx.deputy, ctx.intruder, do="handoff", kind=ctx.socket)
    if passed.get("error"):
        return ctx.error(f"deputy: {passed['error']}")
    events = ctx.events(passed.get("session"))
    mine = [e for e in events if e.get("kind") == ctx.socket]
    ok = [e for e in mine if e.get("type") == "handoff_ok"]
    failed = [e for e in mine if e.get("type") == "handoff_failed"]
    ctx.metrics.update(deputy=passed.get("result"), intruder=got.get("result"),
                       server=[(e.get("type"), e.get("reason")) for e in ok + failed])
    if not passed.get("passed"):
        w = ctx.owner.wraps()
        if not w.ok:
            return ctx.broken(f"the deputy could not connect ({passed.get('errno')}), nor "
                              f"could alice's own wrap: {w.failure()}")
        return ctx.defended(f"the deputy could not connect ({passed.get('errno')})",
                            guard="kernel")
    stolen = [e for e in ok if (ctx.socket == "ptrace" and e.get("pid") == got.get("pid"))
              or (e.get("token") and e.get("token") == got.get("token"))]
    if stolen or got.get("accepted"):
        e = (stolen or ok or [{}])[0]
        what = f"pid {e.get('pid')} (mallory's)" if ctx.socket == "ptrace" \
            else f"token {e.get('token')!r} (mallory's)"
        return ctx.vulnerable(
            f"the server accepted mallory's handoff on a connection alice's deputy made: "
            f"{what}, recorded as peer uid {e.get('peer_uid')} pid {e.get('peer_pid')}")
    if not failed:
        return ctx.error(f"mallory's handoff ended neither in handoff_ok nor handoff_failed "
                         f"({got.get('result')})")
    w = ctx.owner.wraps()
    verdict = ctx.judge(w)
    if verdict.verdict is not DEFENDED:
        return verdict
    f = failed[0]
    guard = "pid-check" if f.get("reason") in ("bad_wrapper_pid", "pid_not_peer") else None
    return ctx.defended(f"the server refused mallory's handoff over alice's connection "
                        f"({f.get('reason')}: {f.get('detail')}); alice's own wrap then "
                        f"worked", guard=guard)
