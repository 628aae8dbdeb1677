"""Steps shared by several scenarios, written once."""

from __future__ import annotations

from wraplab.engine.verdicts import DEFENDED

__all__ = ["claim_foreign_pid"]


def claim_foreign_pid(ctx, kind: str):
    """The victim starts a process; the owner hands over on its own ``kind`` socket naming
    that process's pid (ptrace: the pid to trace; notify: the wrapper pid in the metadata).
    The steps of ptrace-foreign-pid and wrapper-pid-not-child."""
    victim = ctx.track(ctx.run.spawn(ctx.victim.user_role, ["sleep", "60"]))
    ctx.step(ctx.victim, "runs sleep 60 (the process to be claimed)", f"pid {victim.pid}")
    out = ctx.owner.runs_tool("pidclaim", "--kind", kind, "--api", ctx.api,
                              "--target-uid", str(ctx.victim.uid), "--target-comm", "sleep")
    if out.get("error") and out.get("http") in (None, 200):
        return ctx.error(f"pidclaim: {out.get('error')}")
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
