"""One local user holds the API with requests that never end; is alice still served?

docs/hostile-users.md H22 (issue 14, finding 6). Every local user can connect to the API
socket. Mallory opens 400 connections to it, sends on each a request line and then one
header line every 2 s, never the blank line that ends the headers (a slowloris), and holds
them. The server runs with an open-file limit of 256 (``SERVER nofile``) so the attack
needs hundreds of connections, not thousands (issue 14 needed 1,100 at the default limit
of 1,024; the limit is the lab's, the server is unchanged). While mallory holds them,
alice creates five sessions (each bounded by 2 s) and then wraps once. Recorded:
mallory's connections (held, answered, refused by a full backlog), alice's success rate
and latency, and the server's fds, threads, CPU and wrap directories before, while held
and after mallory let go.

Verdict: vulnerable when alice was not served while mallory held her connections (one
uid denied every other), or when the server's fds, threads or wrap directories are not
back to their baseline once she let go ("nothing left behind" is asserted); defended when
alice was served every time *and* mallory hit the bound (the server answered her extra
connections 503 at once: evidence she reached it); error when mallory held nothing (the
attack did not happen) or neither reached a bound nor denied alice (too small an attack
for the server's limit).

Actors: owner (alice), attacker (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended (api-bounds): 8 of mallory's connections are served at once
  (``max_workers_per_uid``), the rest answered 503 "too many connections"; each held one
  ends at the 10 s whole-request deadline; alice is served.
- agentsh, pre-235, permissive, accept-once: vulnerable: one fd per connection (and, in the
  reference server before 2026-12-01, one thread) and only a per-read timeout, so mallory's
  trickle holds every fd the server may open; accept fails (EMFILE, the server spins),
  alice's requests wait in the backlog and time out (agentsh is Go's net/http, a goroutine
  per connection; its server timeouts were not read: assumed none per uid,
  docs/hostile-users.md H22).
"""

import time

from wraplab.engine import DEFENDED, VULNERABLE, back_to_baseline, same_state, server_state

SLUG = "api-slowloris"
ORDER = 257
EXCLUSIVE = True  # ~1,500 connects, and 250 server threads on the weak profiles: runs alone
ACTORS = {"owner": "owner", "attacker": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
NOFILE = 256
SERVER = {"nofile": NOFILE}
CONNS = 400
INTERVAL = 2.0
HOLD = 60.0
OWNER_TRIES = 5
OWNER_TIMEOUT = 2.0
EXPECT = {
    "hardened": DEFENDED.by("api-bounds"),
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    base = server_state(ctx)
    if base.get("nofile") != NOFILE:
        return ctx.error(f"the server's open-file limit is {base.get('nofile')}, "
                         f"not the {NOFILE} asked for")
    barrier = ctx.barrier(ctx.attacker)
    holder = ctx.attacker.spawns_tool(
        "hostile", "slowloris", "--api", ctx.api, "--conns", str(CONNS), "--interval",
        f"{INTERVAL:g}", "--seconds", f"{HOLD:g}", "--ready", barrier.file("holding"))
    ready = barrier.wait("holding", 60, while_running=holder)
    t_held = time.time()
    during = server_state(ctx)
    probe = ctx.owner.runs_tool("hostile", "requests", "--api", ctx.api, "--count",
                                str(OWNER_TRIES), "--timeout", f"{OWNER_TIMEOUT:g}",
                                timeout=OWNER_TRIES * OWNER_TIMEOUT + 30)
    tries = probe.get("tries") or []
    ctx.step(ctx.owner, f"creates {OWNER_TRIES} sessions, each bounded by "
             f"{OWNER_TIMEOUT:g} s, while mallory holds her connections",
             f"{probe.get('ok')} of {len(tries)} answered 201; "
             + ", ".join(f"{t['status'] or t['error']} in {t['ms']:.0f} ms" for t in tries),
             t=t_held, detail=probe)
    wrap = ctx.owner.wraps()
    during2 = server_state(ctx)
    holder.signal("TERM")
    res = holder.wait(30)
    try:
        held = res.json()
    except ValueError:
        return ctx.error(f"mallory's slowloris printed no report: {res.describe()} "
                         f"{res.stderr[-300:]}")
    ctx.step(ctx.attacker, f"opens {CONNS} API connections and trickles a header line "
             f"every {INTERVAL:g} s on each",
             f"{held.get('opened')} connected ({held.get('connect_errors') or 'no'} connect "
             f"errors); {held.get('held_at_ready')} held at once, answered at once: "
             f"{held.get('answers_at_ready') or 'none'}; {held.get('held_at_end')} still "
             f"held after {held.get('seconds')} s, answers {held.get('answers') or 'none'}",
             t=held.get("t0"), ms=(held.get("seconds") or 0) * 1000, detail=held)
    let_go = time.time()
    ctx.attack_over()  # what is left is waiting for the server to close her connections
    after = back_to_baseline(ctx, base, 60)
    ok = (probe.get("ok") or 0) + (1 if wrap.ok else 0)
    total = len(tries) + 1
    latency = sorted(t["ms"] for t in tries if t["status"] == 201)
    busy = (held.get("answers_at_ready") or {}).get("503", 0)
    cpu = round((during2.get("cpu_s", 0) - during.get("cpu_s", 0))
                / max(time.time() - t_held, 1e-3) * 100)
    ctx.metrics.update(
        owner_success=round(ok / total, 2), owner_latency_ms=latency, owner_wrap=wrap.ok,
        held_at_ready=held.get("held_at_ready"), refused_503=busy,
        connect_errors=held.get("connect_errors"), baseline=base, during=during,
        during_end=during2, after=after, recovered_s=round(time.time() - let_go, 1),
        server_cpu_percent_while_held=cpu)
    ctx.note(f"alice {ok}/{total} served while mallory held {held.get('held_at_ready')} "
             f"connections (latency ms {latency}); server before {base}, while held "
             f"{during}, after {after}")
    if not ready.get("ok"):
        return ctx.error(f"mallory's slowloris never got its connections open: {ready}")
    if not held.get("held_at_ready"):
        return ctx.error(f"mallory held no connection ({held}): the attack did not happen")
    if not same_state(after, base):
        return ctx.vulnerable(f"left behind after mallory let go: {after} (baseline {base})")
    if ok < total:
        return ctx.vulnerable(
            f"alice was served {ok} of {total} times while mallory held "
            f"{held.get('held_at_ready')} connections (server fds {during.get('fds')} of "
            f"{NOFILE}, threads {during.get('threads')}, CPU {cpu} %); her wrap "
            + ("worked" if wrap.ok else wrap.failure()))
    if not busy:
        return ctx.error(f"mallory held {held.get('held_at_ready')} connections but was never "
                         f"refused and alice was served: the attack did not reach a bound "
                         f"(server fds {during.get('fds')} of {NOFILE})")
    return ctx.defended(
        f"mallory held {held.get('held_at_ready')} connections and was answered 503 on "
        f"{busy} more at once; alice was served {ok} of {total} times (sessions in "
        f"{latency} ms, then a full wrap); server fds {base.get('fds')} -> "
        f"{during.get('fds')} -> {after.get('fds')}, threads {base.get('threads')} -> "
        f"{during.get('threads')} -> {after.get('threads')}", guard="api-bounds")
