"""Steps shared by several scenarios, written once."""

from __future__ import annotations

import json
import secrets
import shlex
import time
from collections.abc import Callable
from typing import Any

from wraplab.engine.actors import HarnessError
from wraplab.engine.evidence import LOOP_ENDS, rejections_of
from wraplab.engine.verdicts import DEFENDED, Judgement, combine

__all__ = ["claim_foreign_pid", "deputy_passes", "handoffs_under_flood", "judge_stall",
           "server_state", "same_state",
           "back_to_baseline", "starts_server", "file_text", "log_lines",
           "wrap_seen_from_outside"]


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


def deputy_passes(ctx, deputy, receiver, *, do: str, kind: str, path: str | None = None,
                  hold: float = 5.0, wait: float = 15.0,
                  meanwhile: Callable[[], Any] | None = None,
                  seen_at: float | None = None) -> tuple[dict, dict]:
    """The ``deputy`` (a process of the owner) connects to the ``kind`` wrap socket --
    ``path``, or one of a wrap-init of its own (its own session, ``caller_uid`` = its uid)
    -- and passes the connected socket to the ``receiver`` (the attacker), who then does
    ``do`` (handoff, stall, report) over it. Returns ``(deputy's JSON, receiver's JSON)``.

    Order by barriers: the receiver listens on a rendezvous in the temp base; the deputy
    dials it until it listens (bounded); the receiver waits for the socket (bounded).
    ``meanwhile`` runs once the connection was passed, before the receiver is waited for
    (a stall: release the owner's held client while the receiver holds the connection).
    ``seen_at``: the epoch time by which the harness has seen enough of a stall; a
    receiver still watching then is told to let go (SIGTERM) instead of holding on."""
    rendezvous = f"{ctx.run.temp_base}/rv-{secrets.token_hex(6)}.sock"
    recv = receiver.spawns_tool("deputy", "receive", "--rendezvous", rendezvous, "--do", do,
                                "--kind", kind, "--hold", f"{hold:g}", "--wait", f"{wait:g}")
    where = ["--path", path] if path else ["--api", ctx.api]
    t0 = time.time()
    try:
        passed = deputy.runs_tool("deputy", "pass", "--rendezvous", rendezvous, "--kind", kind,
                                  *where, "--wait", f"{wait:g}", timeout=wait + 30)
    except HarnessError:
        recv.kill()
        raise
    ctx.step(deputy, f"connects to its {kind} socket {passed.get('path')} and passes the "
             f"connection to the {receiver.role}", passed.get("result") or
             passed.get("error", ""), errno=passed.get("errno"), t=passed.get("t", t0),
             ms=passed.get("ms"), detail=passed)
    if not passed.get("passed"):
        recv.kill()
        return passed, {}
    if meanwhile is not None:
        meanwhile()
    res = (recv.wait(wait + hold + 30) if seen_at is None
           else recv.wait_or_end(seen_at, wait + hold + 30))
    try:
        got = res.json()
    except ValueError:
        raise HarnessError(f"deputy receive printed no JSON (exit {res.exit_code}): "
                           f"{(res.stderr or '').strip()[-400:]}") from None
    what = {"handoff": "hands off " + ("its own pid" if kind == "ptrace"
                                       else f"its own token {got.get('token')}"),
            "stall": f"holds it and sends nothing (up to {hold:g} s, or until the harness "
                     "has seen enough)",
            "report": "reports its uid over it"}[do]
    ctx.step(receiver, f"receives the deputy's {kind} connection and {what}",
             got.get("result", ""), errno=got.get("errno"), t=got.get("t", t0),
             ms=got.get("ms"), detail=got)
    return passed, got


#: The owner's wraps under a flood, at most (it stops at the first one lost). A flood that
#: reaches the server wins a dial-once client's handoff only by chance: on 2026-12-01 the
#: agentsh cells without CAP_CHOWN in the local lab lost their first handoff at try 1 to 4,
#: and in 3 of 24 runs of the ptrace cell not in five tries (a false ``defended``; the
#: event-loop server drains the backlog faster than the flood was calibrated on: "two times
#: in three"). About one try in two wins: twelve leave 0.55**12 < 0.1 % to chance. Only a
#: cell whose owner is served every time pays for all twelve (hardened's retrying client).
FLOOD_HANDOFFS = 12


def handoffs_under_flood(ctx, flooder, *, handoffs: int, seconds: float, procs: int,
                         waiters: int) -> Judgement:
    """The owner wraps up to ``handoffs`` times, each time released into a flood of its
    announced socket that is already running (a barrier: the flood says so), the flood
    stopped once the owner is done; the worst of the judgements (a flood that wins only by
    chance still wins one of several nearly always). Stops early once a handoff is lost or
    the kernel refused the flood (nothing left to chance). Records the metrics."""
    judgements, floods, wraps = [], [], []
    for _ in range(handoffs):
        owner = ctx.owner.starts_wrap()
        path = owner.socket(ctx.socket)
        if path is None:  # wrap-init failed: there is nothing to flood
            judgements.append(ctx.judge(owner.release()))
            break
        flood = flooder.starts_flood(path, seconds=seconds, procs=procs, waiters=waiters)
        running = flood.ready()
        wrap = owner.release()
        floods.append(flood.stop())
        wraps.append(wrap)
        if not running:
            return ctx.error(f"the flood never got going: {floods[-1].summary()}")
        judgements.append(ctx.judge(wrap, [floods[-1]], first=False))
        if not wrap.ok or floods[-1].kernel_refused:
            break
    ctx.metrics.update(
        flood_rate=[f.rate for f in floods], flood_attempts=sum(f.attempts for f in floods),
        flood_outcomes=[f.outcomes for f in floods], flood_procs=procs,
        flood_reached_server=[f.reached_server for f in floods],
        owner_handoffs=len(wraps), owner_ok=sum(w.ok for w in wraps),
        owner_failures=sorted({f"{w.step}:{w.errno}" for w in wraps if not w.ok}),
        owner_handoff_ms=[w.dial_ms for w in wraps],
        server_rejections=sum(rejections_of(ctx.events(w.session, fresh=False), {flooder.uid})
                              for w in wraps))
    return combine(judgements)


#: How the server names a peer that sent nothing in time (its ``handoff_failed`` reason).
STALLS = ("timeout", "eof")


def judge_stall(ctx, wrap, *, who: str, held: float, server: str | None, ends: list[dict],
                window: float, handshake: float, open_until: float,
                window_end: float) -> Judgement:
    """The verdict on a connection that was admitted and then sent nothing (slow-client,
    deputy-stall): held past the window (no deadline), or closed in time but as the loop's
    one connection (the owner lost), or dropped in time with the owner served.
    ``who``: the stalled connection as the reasons name it; ``held``: seconds the staller
    saw it open; ``server``: what the staller saw the server do (``open``, ``eof``...);
    ``ends``: the server's loop events of the kind; ``open_until``: the epoch time the
    staller last saw it open (it let go then, or the harness ended its watch);
    ``window_end``: the epoch time by which the accept window had ended."""
    owner = "alice's wrap then " + (wrap.failure() if not wrap.ok else "worked")
    if server == "open":
        if open_until < window_end:
            return ctx.error(f"the staller let go of {who} after {held:.1f} s, before the "
                             f"{window:g} s accept window had ended: no evidence")
        return ctx.vulnerable(
            f"the server held {who} for all {held:.1f} s the staller watched, "
            f"{open_until - window_end:.1f} s past the end of its {window:g} s accept "
            f"window (no handshake deadline); {owner}")
    if held > handshake + 1.5:
        return ctx.error(f"the server closed {who} after {held:.1f} s: neither at its "
                         "handshake timeout nor held past the window")
    why = next((e.get("reason") for e in ends
                if e.get("type") in ("peer_dropped", "handoff_failed")), None)
    if not wrap.ok:
        return ctx.vulnerable(
            f"the server closed {who} after {held:.1f} s (reason {why}), but it was the "
            f"loop's one connection: the loop ended with it and {owner}",
            guard="handshake-deadline")
    ended = next((e for e in ends if e.get("type") in LOOP_ENDS), None)
    if ended and ended.get("type") == "handoff_failed" and ended.get("reason") in STALLS:
        # the stalled connection was first in the queue: once it ended the loop, nobody
        # accepted alice's; an unacknowledged handoff (signal) "succeeds" into that backlog
        return ctx.vulnerable(
            f"the server's {ended.get('kind')} loop ended with {who} ({ended.get('type')}, "
            f"reason {ended.get('reason')}); nobody accepted alice's connection, yet her "
            f"client {'believed its handoff worked (no status byte)' if wrap.ok else 'failed'}",
            guard="handshake-deadline")
    verdict = ctx.judge(wrap)
    if verdict.verdict is not DEFENDED:
        return verdict
    return ctx.defended(f"the server dropped {who} after {held:.1f} s (handshake timeout "
                        f"{handshake:g} s; reason {why}) and kept accepting; {owner}",
                        guard="handshake-deadline")


def server_state(ctx, pid: int | None = None) -> dict:
    """The server's fds, threads, RSS, CPU seconds, umask, open-file limit and the
    ``wrap-*`` entries of its temp base, as root (the in-lab ``hostile state`` tool): what a
    resource attack must leave as it found it. ``pid``: another server than the lab's."""
    return ctx.run.tool("hostile", ["state", "--pid", str(pid or ctx.run.server.pid),
                                    "--base", ctx.run.temp_base])


def same_state(a: dict, b: dict) -> bool:
    """Whether two :func:`server_state` readings agree on fds, threads and directories."""
    return all(a.get(k) == b.get(k) for k in ("fds", "threads", "dirs"))


def back_to_baseline(ctx, base: dict, timeout: float, pause: float = 0.2) -> dict:
    """Wait (at most ``timeout`` s) until :func:`server_state` agrees with ``base``; the
    last reading either way."""
    return ctx.waits_until("fds, threads and wrap directories are back to the baseline",
                           lambda: (lambda st: st if same_state(st, base) else None)(
                               server_state(ctx)),
                           time.time() + timeout, pause=pause) or server_state(ctx)


def wrap_seen_from_outside(ctx, resp) -> dict:
    """A target without events: the wrap directory a wrap-init answer names, as root sees
    it. ``reachable``: someone other than root can reach it (owned by a non-root uid, an ACL
    entry, or searchable by others) -- a wrap made for the caller_uid it was sent; a
    root-only 0700 directory is the legacy wrap of a server that ignored the value."""
    sock = resp.get("notify_socket") if isinstance(resp, dict) else None
    if not sock:
        return {"reachable": False, "dir_owner": None}
    f = ctx.facts(sock.rsplit("/", 1)[0], "wrap directory")
    mode = f.get("mode") or 0
    return {"dir_owner": f.get("uid"), "dir_mode": f"{mode:04o}",
            "fs_isolation": resp.get("fs_isolation"), "acl": f.get("acl"),
            "reachable": bool(f.get("exists")) and (f.get("uid") != 0 or bool(f.get("acl"))
                                                     or bool(mode & 0o011))}
def starts_server(ctx, what: str, *, api_path: str, temp_base: str, log_file: str,
                  window: float = 5.0, **options) -> dict:
    """The administrator (root) starts another server of the cell's target and profile on
    paths the scenario chose (a startup attack: what lies at those paths before the server
    starts), with the SERVER options in ``options`` (``umask``...; engine.axes). Waits
    (bounded) until it serves ``/healthz`` on ``api_path`` or exits. Returns ``serving``,
    ``exit_code``, ``stderr`` (when it exited), ``pid``, ``argv`` and ``handle`` (tracked:
    killed at the end of the cell). ``what``: why the administrator starts it (the step)."""
    spec = ctx.target.server_spec(placement="root", socket=ctx.socket, transport="unix",
                                  lab=ctx.cell.lab, accept_window=window, **options)
    argv = [*spec.launcher, *spec.command({
        "api": f"unix:{api_path}", "api_path": api_path, "temp_base": temp_base,
        "log_file": log_file, "target_dir": ctx.run.target_dir, "tcp_port": ""})]
    handle = ctx.track(ctx.run.spawn("root", argv))
    api = f"unix:{api_path}"

    def up():
        if not handle.running:
            return "exited"
        status, _ = ctx.run.api_request("GET", "/healthz", api=api)
        return "serving" if status == 200 else None

    state = ctx.waits_until(f"the administrator's server on {api} serves or exits", up,
                            time.time() + 20, pause=0.2)
    out = {"serving": state == "serving", "argv": argv, "handle": handle,
           "pid": handle.pid}
    if state == "exited":
        res = handle.wait(5)
        out.update(exit_code=res.exit_code, stderr=(res.stderr or "").strip()[-600:])
    ctx.step("root", f"{what}: {shlex.join(argv)}",
             "serving" if out["serving"] else
             f"exit {out.get('exit_code')}: {out.get('stderr') or '(nothing on stderr)'}"
             if state == "exited" else "neither served nor exited in 20 s")
    return out


def file_text(ctx, path: str) -> str:
    """A file's text read as root in the lab ("" when missing): evidence, not a move."""
    res = ctx.run.exec("root", ["cat", "--", path], timeout=30)
    return res.stdout if res.exit_code == 0 else ""


def log_lines(text: str) -> list[dict]:
    """JSON log lines of a text (others as ``{"raw": line}``)."""
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        out.append(obj if isinstance(obj, dict) else {"raw": line})
    return out
