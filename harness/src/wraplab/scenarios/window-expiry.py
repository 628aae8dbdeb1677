"""Nobody dials: when the accept window ends, is everything the wrap made gone?

Alice sends wrap-init and then never connects (a client that crashed between wrap-init and
its dial). The scenario reads the server's fd and thread counts (/proc, as root) before
(baseline), while the wrap is pending (it must hold more: the listener; a server with a
thread per loop, its thread too),
and once the wrap directory and its sockets no longer exist (waited for up to the window
plus 5 s); then the fd and thread counts must be back to the baseline. Where the target
keeps events they corroborate: one ``window_expired`` per loop and ``dir_removed``; events
that disagree with what the observer saw are an ``error``. A leak here is a resource
exhaustion anyone who can call wrap-init can repeat (the API socket is 0666).

This is a property every profile must have (SPEC §1: every accept loop has one absolute
deadline; design.md: every loop ends with exactly one end event); it does not single out a
weak profile. The stalled-peer case, where agentsh holds past its window, is
``slow-client``.

Actors: owner (alice). Placement: root. Transport: unix. Sockets: notify, signal, ptrace.
Window: 1 s (nobody dials, so nothing races it: the window is only what is waited for).

Expected (decided from runs): defended in every profile: no directory or socket left,
fds and threads back to baseline (and one ``window_expired`` per loop, ``dir_removed``).
"""

import os
import time

from wraplab.engine import DEFENDED, LOOP_ENDS

SLUG = "window-expiry"
ORDER = 150
ACTORS = {"owner": "owner"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 1.0
SERVER = {"accept_window": WINDOW}
EXPECT = {p: DEFENDED.by("cleanup") for p in ("hardened", "agentsh", "pre-235", "permissive",
                                "accept-once")}


def counts(ctx) -> dict:
    info = ctx.run.server_info()
    return {"fds": info.get("fd_count"), "threads": info.get("threads")}


def run(ctx):
    base = counts(ctx)
    st, body = ctx.run.api_request("POST", "/api/v1/sessions", {}, as_user="owner")
    if st != 201:
        return ctx.error(f"POST /sessions: HTTP {st} {body!r}")
    sid = body["id"]
    ctx.watch_session(sid)
    st, resp = ctx.run.api_request(
        "POST", f"/api/v1/sessions/{sid}/wrap-init",
        {"agent_command": "true", "agent_args": [], "caller_uid": ctx.owner.uid},
        as_user="owner")
    t_init = time.time()
    ctx.step(ctx.owner, "sends wrap-init, then never dials", f"HTTP {st}")
    if st != 200 or not isinstance(resp, dict):
        return ctx.error(f"wrap-init: HTTP {st} {resp!r}")
    # The sockets as the server announced them (ptrace mode: one socket, in notify_socket).
    kind = "ptrace" if resp.get("ptrace_mode") else "notify"
    sockets = {kind: resp.get("notify_socket"), "signal": resp.get("signal_socket")}
    sockets = {k: v for k, v in sockets.items() if v}
    paths = [os.path.dirname(next(iter(sockets.values()))), *sockets.values()]
    kinds = sorted(sockets)
    during = counts(ctx)
    for f in ctx.run.stat_many(paths):
        ctx.files.append({"path": f.path, "exists": f.exists, "kind": f.kind, "uid": f.uid,
                          "mode": f.mode, "label": "while pending"})
    ctx.metrics.update(baseline=base, pending=during, kinds=kinds)

    def all_gone():
        return not any(f.exists for f in ctx.run.stat_many(paths))

    gone = ctx.waits_until("the wrap directory and its sockets are gone", all_gone,
                           t_init + WINDOW + 5)
    after = ctx.waits_until("the server's fds and threads are back to the baseline",
                            lambda: (lambda c: c if c == base else None)(counts(ctx)),
                            time.time() + 3) or counts(ctx)
    left = [f.path for f in ctx.run.stat_many(paths) if f.exists]
    ev = ctx.events(sid)
    ends = [(e.get("kind"), e.get("type")) for e in ev if e.get("type") in LOOP_ENDS]
    ctx.metrics.update(after=after, loop_ends=ends, left=left)
    problems = []
    if not gone or left:
        problems.append(f"{WINDOW + 5:g} s after wrap-init still there: {left}")
    if after != base:
        problems.append(f"server fds/threads {after} vs baseline {base}")
    if problems:
        return ctx.vulnerable("after the window: " + "; ".join(problems))
    if ctx.target.has_events:
        expired = sorted(k for k, t in ends if t == "window_expired")
        if expired != kinds or len(ends) != len(kinds) or not any(
                e.get("type") == "dir_removed" for e in ev):
            return ctx.error(f"the directory, sockets, fds and threads are back, but the "
                             f"server's events say otherwise: loop ends {ends}, "
                             f"{'a' if any(e.get('type') == 'dir_removed' for e in ev) else 'no'}"
                             f" dir_removed (expected one window_expired per loop of {kinds})")
    seen = f"each loop ended with window_expired ({', '.join(kinds)}), " \
        if ctx.target.has_events else ""
    return ctx.defended(
        f"{seen}the directory and sockets are gone, fds/threads back to {base} "
        f"(pending: {during})", guard="cleanup")
