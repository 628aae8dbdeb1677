"""Malformed handoffs: does the server refuse them, leak nothing, and still serve the owner?

Alice (the only peer the peer check admits on her sockets) makes one wrap per case and
sends a malformed handoff on it with the ``malformed`` actor tool, then reads the server's
answer. Cases, notify: 0, 2 and 9 fds; wrong magic (0x00 + pid + 1 fd); a short payload
(0xA7 + 2 bytes + 1 fd); an fd with no payload; a valid handoff followed by a second
sendmsg. Signal: 0, 2 and 9 fds; no payload. Ptrace: a 2-byte pid then EOF; pid 0; a pid
above pid_max. Then the harness waits until every case's accept loop has ended (events),
checks the server's fd count is back to its baseline, and alice wraps normally.

The attack works when the server accepts a handoff it must refuse (SPEC §1: zero fds,
more than one fd or MSG_CTRUNC on notify; a bad ptrace pid), leaks an fd, or can no longer
serve alice.

Actors: owner (alice). Placement: root. Transport: unix. Sockets: notify, signal, ptrace.
Accept window 1.5 s, handshake timeout 1 s; each case waits up to 2 s for the server's
answer (the window is only what the harness then waits for: every refused case's loop
goes on accepting until it ends).

Expected (decided from runs):
- hardened, agentsh, accept-once, permissive on notify and ptrace: defended. 0/2/9 fds get
  status 0 and every received fd is closed; the ptrace cases get NACK; fds are back to
  the baseline and alice's wrap works. Recorded differences (not judged): agentsh accepts
  wrong magic and the short payload as its legacy fd-only form (status 1, B22), hardened
  answers 0 (``no_metadata``: H10 requires the metadata); an fd sent with no payload
  reaches nobody (a stream socket sends no data, so no fd), so agentsh waits until alice
  closes (``eof``, no deadline, H7) where hardened answers 0 at its handshake timeout.
- signal: hardened defended; agentsh, accept-once and permissive broken by G8 (alice's own
  signal dial loses to the notify loop's cleanup, as in ``wrong-uid``). Recorded: agentsh's
  signal receive keeps the first of 2 or 9 fds (B26: room for one, the rest are closed
  by the kernel, MSG_CTRUNC ignored) where hardened refuses them.
- pre-235: broken: the directory is root 0700; no case can even connect, nor can alice.
"""

import time

from wraplab.engine import BROKEN, DEFENDED, LOOP_ENDS, broken_by_g8

SLUG = "malformed-handoff"
NEEDS = ("events",)
NEEDS_WHY = (
    "it waits until the server recorded the end of every case's loop before reading the "
    "server's fds (else a pending loop reads as a leak)"
)
ORDER = 160
ACTORS = {"owner": "owner"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 1.5
HANDSHAKE_TIMEOUT = 1.0
ANSWER_WAIT = 2.0  # a case's wait for the server's answer: past the handshake timeout
SERVER = {"accept_window": WINDOW, "handshake_timeout": HANDSHAKE_TIMEOUT}
HANDSHAKE = DEFENDED.by("handshake")
EXPECT = {
    "hardened": HANDSHAKE,
    "agentsh": {"*": HANDSHAKE, "signal": broken_by_g8(HANDSHAKE)},
    "pre-235": BROKEN,
    "permissive": {"*": HANDSHAKE, "signal": broken_by_g8(HANDSHAKE)},
    "accept-once": {"*": HANDSHAKE, "signal": broken_by_g8(HANDSHAKE)},
}
MUST_REFUSE = {
    "notify": {"fds0", "fds2", "fds9", "no_payload"},
    "signal": {"fds0", "no_payload"},
    "ptrace": {"short", "zero", "nonexistent"},
}


def fds_of(ctx) -> int:
    return int(ctx.run.server_info().get("fd_count") or 0)


def run(ctx):
    base = fds_of(ctx)
    t0 = time.time()
    res = ctx.run.exec("owner", ["python3", "-m", "wraplab.actors.malformed", "--kind",
                                 ctx.socket, "--api", ctx.api, "--wait", f"{ANSWER_WAIT:g}"],
                       timeout=120)
    try:
        out = res.json()
    except ValueError:
        return ctx.error(f"malformed printed no JSON (exit {res.exit_code}): "
                         f"{(res.stderr or '').strip()[-300:]}")
    results = out.get("results") or []
    for r in results:
        ctx.step(ctx.owner, f"sends a malformed {ctx.socket} handoff: {r['case']}",
                 r.get("result") or r.get("error", ""), errno=r.get("errno"),
                 t=t0, ms=r.get("ms"), detail=r)
    errors = [r for r in results if r.get("error")]
    if errors:
        return ctx.error(f"cases could not be set up: {errors}")
    # Every case's loops must have ended before the fd count means anything.
    ends: dict = {}
    pending: list = []

    def every_loop_ended() -> bool:
        pending.clear()
        for r in results:
            ev = ctx.events(r["session"])
            kinds = set((next((e for e in ev if e.get("type") == "wrap_init"), {})
                         .get("sockets") or {}).keys())
            done = {e.get("kind") for e in ev if e.get("type") in LOOP_ENDS}
            ends[r["case"]] = [(e.get("kind"), e.get("type"), e.get("reason"))
                               for e in ev if e.get("type") in LOOP_ENDS]
            r["accepted"] = any(e.get("type") == "handoff_ok" and e.get("kind") == ctx.socket
                                for e in ev)
            if not kinds <= done:
                pending.append(r["case"])
        return not pending

    ctx.waits_until("every case's loops have ended", every_loop_ended,
                    time.time() + WINDOW + 5, pause=0.3)
    ctx.note(f"loop ends per case: {ends}" + (f"; still pending: {pending}" if pending else ""))
    after = ctx.waits_until("the server's fds are back to the baseline",
                            lambda: (lambda n: n if n == base else None)(fds_of(ctx)),
                            time.time() + 3) or fds_of(ctx)
    table = {r["case"]: {"answer": r.get("result"), "accepted": r.get("accepted"),
                         "ends": ends.get(r["case"])} for r in results}
    ctx.metrics.update(cases=table, fds_baseline=base, fds_after=after)
    wrongly = [r["case"] for r in results
               if r["case"] in MUST_REFUSE[ctx.socket] and r.get("accepted")]
    connected = [r for r in results if not r.get("errno")]
    wrap = ctx.owner.wraps()
    if wrongly:
        return ctx.vulnerable(f"the server accepted malformed {ctx.socket} handoffs: {wrongly}")
    if pending:
        return ctx.vulnerable(f"loops still open {WINDOW + 5:g} s later: {pending}")
    if after != base:
        return ctx.vulnerable(f"server fds {after} after the cases, baseline {base}: a leak")
    verdict = ctx.judge(wrap)
    if verdict.verdict is not DEFENDED:
        return verdict
    if not connected:
        return ctx.broken("no case could connect, yet alice's wrap worked")
    answers = ", ".join(f"{c}: {v['answer']}" for c, v in table.items())
    return ctx.defended(f"every malformed handoff that must be refused was ({answers}); fds "
                        f"back to {base}; alice's wrap then worked", guard="handshake")
