"""Alice's notify handoff names bob's process as her wrapper.

Bob (the bystander) runs a process (``sleep``). Alice, the owner, makes her own wrap and
hands over her notify fd correctly, except that the metadata's wrapper pid (0xA7 + pid) is
bob's process, found in /proc, not a child of hers. agentsh validates that pid only when
cgroups/eBPF are on (AGENTSH.md B24/B31, G5); otherwise it trusts it and feeds it to
session registration and the memory probe. The hardened profile always checks that the
wrapper's PPid is the peer and that the peer's uid is among the wrapper's uids (SPEC H10).

Actors: owner (alice), victim (bob, bystander). Placement: root. Transport: unix.
Socket: notify.

Expected (decided from runs):
- agentsh, accept-once, permissive: vulnerable: status 1, ``handoff_ok`` recording bob's
  pid as alice's wrapper.
- hardened: defended: status 0, ``handoff_failed`` ``bad_wrapper_pid``; alice's own wrap
  works.
- pre-235: broken: alice cannot reach her socket (root 0700), nor can her own wrap.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "wrapper-pid-not-child"
ORDER = 180
ACTORS = {"owner": "owner", "victim": "bystander"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def claim_foreign_pid(ctx, kind: str):
    """The victim starts a process; the owner hands over on its own ``kind`` socket naming
    that process's pid (the same code is in ptrace-foreign-pid.py and
    wrapper-pid-not-child.py: scenario files cannot import each other)."""
    victim = ctx.run.spawn(ctx.victim.user_role, ["sleep", "60"])
    ctx._pending.append(victim)
    ctx.step(ctx.victim, "runs sleep 60 (the process to be claimed)", f"pid {victim.pid}")
    argv = ["python3", "-m", "wraplab.actors.pidclaim", "--kind", kind, "--api", ctx.api,
            "--target-uid", str(ctx.victim.uid), "--target-comm", "sleep"]
    res = ctx.run.exec(ctx.owner.user_role, argv, timeout=60)
    try:
        out = res.json()
    except ValueError:
        out = {}
    if not out or (out.get("error") and out.get("http") in (None, 200)):
        return ctx.error(f"pidclaim: {out.get('error') or (res.stderr or '').strip()[-300:]}")
    what = "asks the tracer to attach" if kind == "ptrace" else "names as its wrapper"
    ctx.step(ctx.owner, f"{what} pid {out.get('claimed_pid')} ({out.get('claimed_comm')}, "
             f"uid {ctx.victim.uid}) on its own {kind} socket",
             out.get("result") or out.get("error", ""), errno=out.get("errno"),
             ms=out.get("ms"), detail=out)
    events = ctx.events(out.get("session"))
    claimed = out.get("claimed_pid")
    field = "pid" if kind == "ptrace" else "wrapper_pid"
    ok = [e for e in events if e.get("type") == "handoff_ok" and e.get("kind") == kind]
    failed = [e for e in events if e.get("type") == "handoff_failed" and e.get("kind") == kind]
    ctx.metrics.update(claimed_pid=claimed, answer=out.get("result"),
                       server=(ok or failed or [{}])[0].get("reason") or
                       ("handoff_ok" if ok else None))
    if any(e.get(field) == claimed for e in ok) or out.get("result") in ("ACK", "status 1"):
        return ctx.vulnerable(
            f"the server accepted pid {claimed} of uid {ctx.victim.uid} from alice "
            f"({out.get('result')}; handoff_ok {field}={ok[0].get(field) if ok else '?'})")
    w = ctx.owner.wraps()
    if out.get("errno") or out.get("error"):
        if not w.ok:
            return ctx.broken(f"alice could not reach her own socket "
                              f"({out.get('errno') or out.get('error')}), nor could her wrap: "
                              f"{w.failure()}")
        return ctx.defended(f"alice could not hand over ({out.get('errno')})", guard="kernel")
    verdict = ctx.judge(w)
    if verdict.verdict is not DEFENDED:
        return verdict
    why = failed[0].get("reason") if failed else "?"
    detail = failed[0].get("detail") if failed else None
    return ctx.defended(f"the server refused pid {claimed} ({out.get('result')}, {why}: "
                        f"{detail}); alice's own wrap then worked", guard="pid-check")


def run(ctx):
    return claim_foreign_pid(ctx, "notify")
