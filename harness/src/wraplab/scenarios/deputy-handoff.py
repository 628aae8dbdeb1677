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

Decided from what mallory saw: the status byte (notify) or ACK/NACK (ptrace), and on
signal, which answers nothing, whether her token was read out of the pipe she passed (she
keeps a copy of the read end). A refusal over a connection whose SO_PEERCRED is alice's can
only come from the pid binding (everything else about it is alice's): guard ``pid-check``.
Where the target keeps events they corroborate (her token or pid in a ``handoff_ok``, a
``handoff_failed`` with the pid check's reason); a disagreement is ``error``.

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
                       consumed=got.get("consumed"),
                       server=[(e.get("type"), e.get("reason")) for e in ok + failed])
    if not passed.get("passed"):
        w = ctx.owner.wraps()
        if not w.ok:
            return ctx.broken(f"the deputy could not connect ({passed.get('errno')}), nor "
                              f"could alice's own wrap: {w.failure()}")
        return ctx.defended(f"the deputy could not connect ({passed.get('errno')})",
                            guard="kernel")
    # What mallory saw: an answer byte, or (signal: none) her token drained or not.
    silent = got.get("status") is None
    taken = bool(got.get("accepted")) or (silent and bool(got.get("consumed")))
    refused = got.get("accepted") is False or (silent and got.get("consumed") is False
                                               and got.get("server") == "eof")
    stolen = [e for e in ok if (ctx.socket == "ptrace" and e.get("pid") == got.get("pid"))
              or (e.get("token") and e.get("token") == got.get("token"))]
    if stolen and refused:
        return ctx.error(f"the server's events record mallory's handoff as taken "
                         f"({stolen[0].get('type')}) but she saw a refusal "
                         f"({got.get('result')}, token consumed: {got.get('consumed')})")
    if taken and failed and not stolen:
        return ctx.error(f"mallory saw her handoff taken ({got.get('result')}, token "
                         f"consumed: {got.get('consumed')}) but the server's events record "
                         f"it failed ({failed[0].get('reason')})")
    if taken or stolen:
        e = (stolen or ok or [{}])[0]
        what = "her pid was acknowledged" if ctx.socket == "ptrace" else \
            f"her token {got.get('token')!r} was " + (
                "acknowledged" if got.get("accepted") else "read out of her pipe")
        seen = f"; the server's events: peer uid {e.get('peer_uid')} pid " \
               f"{e.get('peer_pid')}" if e else ""
        return ctx.vulnerable(f"the server accepted mallory's handoff on a connection alice's "
                              f"deputy made: {what} ({got.get('result')}{seen})")
    if not refused:
        return ctx.error(f"mallory saw neither a refusal nor her handoff taken "
                         f"({got.get('result')}, token consumed: {got.get('consumed')})")
    if ctx.target.has_events and not failed:
        return ctx.error(f"mallory saw a refusal ({got.get('result')}) but the server's "
                         "events record no handoff_failed")
    w = ctx.owner.wraps()
    verdict = ctx.judge(w)
    if verdict.verdict is not DEFENDED:
        return verdict
    f = failed[0] if failed else {}
    # Over alice's connection only the pid in the handoff is mallory's: a refusal there is
    # the pid binding (the events, where kept, name the reason).
    pid_bound = ctx.socket != "signal" and got.get("status") is not None
    guard = "pid-check" if (f.get("reason") in ("bad_wrapper_pid", "pid_not_peer") if f
                            else pid_bound) else None
    why = f" ({f.get('reason')}: {f.get('detail')})" if f else ""
    return ctx.defended(f"the server refused mallory's handoff over alice's connection: "
                        f"{got.get('result')}{why}; alice's own wrap then worked",
                        guard=guard)
