"""Mallory takes the signal socket's path once the server removed the wrap directory.

SPEC H11: the wrap directory goes when the *last* loop of the session ends. agentsh's
notify loop removes it right after its own handoff while the signal loop still waits
(AGENTSH.md G8): in ``signal-after-notify`` that only breaks alice's wrap. But the
directory lived in the server's temp base, world-writable with the sticky bit, and its
name was public (/proc/net/unix shows the socket path): once it is gone anyone may create
it again. Mallory does: she finds alice's signal socket path, tries ``mkdir`` of its
directory until it succeeds (EEXIST while the server's is there), binds her own socket at
the same name and waits. Alice's client, after its notify ACK, dials the signal path it was
given -- now mallory's socket -- and hands its signal fd to her. A client that retries a
vanished socket (the hardened client, H12) walks into it every time.

Order, by barriers: alice does wrap-init (her notify and signal sockets); mallory's squat
tool finds the signal path and says so (a file); alice's minimal client hands off on
notify; the harness waits until mallory's socket sits at the signal path (stat: owned by
her) or 2 s have passed; then alice's client dials the signal path and hands off.

Verdict: vulnerable when mallory received alice's fd (her token), or when mallory's socket
was listening at alice's signal path before alice dialled it while her signal loop still
waited (a pending wrap's path was hers: within the accept window and before alice's
signal handoff; the server's events, where kept, date the loop's end); defended (cleanup)
when the directory stayed until the last loop ended (mallory's mkdir failed with EEXIST
all the while) and alice's handoffs worked (notify: status byte 1; signal: her token read
out of the pipe she passed, and not by mallory; the events corroborate: a disagreement is
``error``); broken when alice failed without mallory holding the path.

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
signal.

Expected:
- hardened: defended (cleanup): the directory outlives both loops; mallory's directory
  only appears after alice is done, and nobody dials it.
- agentsh, accept-once, permissive: vulnerable: the notify loop removes the directory,
  mallory's socket takes the signal path while the signal loop still waits (G8 made
  exploitable; alice's once-dialling client usually gets ENOENT first, but any later dial
  is mallory's).
- pre-235: broken: alice cannot reach the root-only directory (mallory takes the path only
  when the window ends, after alice's dials).
"""

import time

from wraplab.engine import BROKEN, DEFENDED, LOOP_ENDS, VULNERABLE

SLUG = "signal-squat"
ORDER = 380
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("signal",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 5.0
SERVER = {"accept_window": WINDOW}
EXPECT = {
    "hardened": DEFENDED.by("cleanup"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner, mallory = ctx.owner, ctx.intruder
    st, body = ctx.run.api_request("POST", "/api/v1/sessions", {}, as_user=owner.user_role)
    if st != 201 or not isinstance(body, dict):
        return ctx.error(f"POST /sessions: HTTP {st} {body!r}")
    sid = body["id"]
    st, resp = ctx.run.api_request("POST", f"/api/v1/sessions/{sid}/wrap-init",
                                   {"agent_command": "true", "agent_args": [],
                                    "caller_uid": owner.uid}, as_user=owner.user_role)
    if st != 200 or not isinstance(resp, dict) or not resp.get("signal_socket"):
        return ctx.error(f"wrap-init: HTTP {st} {resp!r}")
    t_init = time.time()
    ctx.events(sid)  # collected with the outcome
    notify, signal = resp["notify_socket"], resp["signal_socket"]
    ctx.step(owner, "wrap-init (notify and signal sockets)", f"{notify}, {signal}")
    gate = ctx.barrier(mallory)
    squatter = mallory.spawns_tool("squat", "--path", signal, "--deadline", "6", "--hold", "3",
                                   "--ready", gate.file("ready"), "--stop", gate.file("stop"))
    if not gate.wait("ready", 10, while_running=squatter).get("ok"):
        squatter.kill()
        return ctx.error("mallory's squat tool never started on the signal path")
    first = owner.attacks_socket("notify", steps="handoff", path=notify)
    ctx.waits_until("mallory's socket sits at the signal path (2 s at most)",
                    lambda: ctx.run.stat(signal).uid == mallory.uid, time.time() + 2.0)
    second = owner.attacks_socket("signal", steps="handoff", path=signal)
    gate.release("stop")  # alice has dialled: a squat after this could catch nothing of hers
    res = squatter.wait(20)
    try:
        got = res.json()
    except ValueError:
        return ctx.error(f"squat printed no JSON (exit {res.exit_code}): {res.stderr[-300:]}")
    ctx.step(mallory, f"takes the path {got.get('path')} once its directory is gone "
             f"({got.get('tries')} mkdir tries)",
             f"listening from +{got['squat_t'] - got['found_t']:.3f}s; token received: "
             f"{got.get('token')!r}" if got.get("squat_t") else f"never: {got.get('errno')}",
             errno=got.get("errno"), t=got.get("found_t"), detail=got)
    events = ctx.events(sid)
    ends = {e.get("kind"): float(e.get("ts") or 0) for e in events
            if e.get("type") in LOOP_ENDS}
    ok = {e.get("kind"): e.get("token") for e in events if e.get("type") == "handoff_ok"}
    squat = got.get("squat_t")
    ctx.metrics.update(squat_t=squat, loop_ends=ends, mkdir_tries=got.get("tries"),
                       stolen=bool(got.get("token")))
    late = [a["t"] for h in (first, second) for a in h.attempts if a["t"] > t_init + WINDOW]
    if late:
        return ctx.error(f"no verdict: alice dialled {min(late) - t_init:.1f} s after "
                         f"wrap-init, past the {WINDOW:g} s accept window (the harness was "
                         "too slow); whatever answered then says nothing of the server")
    if got.get("token") and got["token"] == second.token:
        return ctx.vulnerable(f"alice's client dialled mallory's socket at its signal path "
                              f"and handed her its fd (token {got['token']!r})")
    dialled = min((a["t"] for a in second.attempts), default=None)
    pending = ("signal" not in ends or squat < ends["signal"]) if ends else \
        squat is not None and squat < t_init + WINDOW
    if squat and dialled and squat < dialled and pending:
        return ctx.vulnerable(
            f"mallory's socket listened at alice's signal path {signal} before alice dialled "
            f"it, while her signal loop still waited: the server had removed the directory "
            f"under it (G8); alice's dial: {second.refusals()}")
    arrived = first.accepted and second.accepted  # status 1; the signal token drained
    if events and arrived != (ok.get("notify") == first.token
                              and ok.get("signal") == second.token):
        return ctx.error(f"alice saw her handoffs {'' if arrived else 'not '}taken "
                         f"({first.refusals()}; {second.refusals()}) but the server's "
                         f"handoff_ok events say otherwise ({ok})")
    if arrived:
        return ctx.defended(f"the directory stayed until alice's last loop ended (mallory's "
                            f"mkdir: {got.get('tries')} tries, EEXIST while it mattered); "
                            "alice's notify and signal tokens arrived", guard="cleanup")
    return ctx.broken(f"alice's handoffs did not both arrive ({first.refusals()}; "
                      f"{second.refusals()}) and mallory never held the path while it mattered")
