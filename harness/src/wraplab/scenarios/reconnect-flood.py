"""Mallory floods alice's socket with connect+close while alice hands off.

Alice wraps up to twelve times in a row (``FLOOD_HANDOFFS``); each time her client does
wrap-init and is held before its dial. Mallory (the flooder: two processes, one per core)
gets the socket's path (the one the server announced; /proc/net/unix shows it to anyone) and
connects and closes it as fast as she can (non-blocking AF_UNIX connects); once the flood
runs (it says so after its first few hundred connects), alice's client is released into it,
and the flood is stopped when alice is done. A flood that did not run while alice dialled is
an ``error``, never a verdict. Recorded: the flood's attempts and rate, the kernel's answers
by errno (EACCES: the directory stopped her; EAGAIN: the listener's backlog was full; ok:
the connection was queued), the server's rejections (peer check, from its events), alice's
successes and handoff latencies. The verdict is the worst of the handoffs (broken >
vulnerable > defended): a flood that wins a handoff only by chance (agentsh without
CAP_CHOWN: about two times in three with the thread-per-wrap server, about one in two with
the event-loop one, 2026-12-01) still wins one of twelve nearly always, so the verdict is
stable where one handoff's outcome is not (with five, the ptrace cell came out ``defended``
in 3 of 24 runs). Alice stops early once a handoff is denied, or when the flood never
reached the server (the kernel refused it: nothing left to chance).

The flood: each flooder spins non-blocking connect+close, and 16 threads of it also
connect blocking, so they sleep in the kernel on a full backlog and take each slot the
server frees at once; a spinning flood alone leaves free slots often enough that alice
got through two handoffs in three.

Actors: owner (alice), flooder (mallory). Placements: root (chown path) and root-no-chown
(fallback path). Transport: unix. Sockets: notify, signal, ptrace.

Expected (root): the kernel stops the flood for hardened, agentsh and accept-once
(EACCES on every connect) so they are defended; permissive is vulnerable (its first
connection wins, and the first is mallory's); pre-235 is broken.
Expected (root-no-chown), decided from runs: hardened defended by its ACL (kernel EACCES);
accept-once and permissive vulnerable (the first flood connection ends the loop); pre-235
broken; agentsh vulnerable: its fallback sockets (0666) let the flood through, the
server's peer check rejects each connection, but the listen backlog (4096, Go's somaxconn)
fills faster than one accept loop drains it, and agentsh's client dials once with a
non-blocking connect, so alice gets EAGAIN and her wrap fails (AGENTSH.md G10). The
hardened client would have retried with a blocking connect (SPEC H12).
agentsh and accept-once on the signal socket at root: broken by G8 (below); agentsh on the
signal socket without CAP_CHOWN: broken too, G8 removes the socket before the flood can
matter (alice's dial fails with ENOENT, not EAGAIN).

Signal sockets and G8 (decided from real runs): agentsh, permissive and accept-once keep
agentsh's cleanup, where the notify loop removes the shared wrap directory right after its
handoff while the signal loop still waits (AGENTSH.md G8, SPEC H11). The owner's client
dials the signal socket after the notify ACK, so it loses that race (ENOENT) nearly every
time: those signal cells are ``broken``. When the owner happens to win the race the
verdict is still ``broken``, because the server's events show the directory removed before
the owner's last handoff; so the verdict follows the server's behaviour, not the race.
hardened removes the directory when the last loop ends.

permissive's signal cells are the other side of that race: the flood's first connection
ends the signal loop (``vulnerable``), normally long before alice's notify handoff and the
cleanup after it. On a saturated machine the signal loop may get no turn until that
cleanup has run (seen once in 1,200 runs with two CPU burners, 2026-12-01): alice's signal
dial then meets no socket, a ``broken`` by G8, which ``flood_before_g8`` accepts with its
evidence.
"""

import os

from wraplab.engine import (
    BROKEN,
    DEFENDED,
    FLOOD_HANDOFFS,
    VULNERABLE,
    broken_by_g8,
    flood_before_g8,
    handoffs_under_flood,
)

SLUG = "reconnect-flood"
ORDER = 50
EXCLUSIVE = True
ACTORS = {"owner": "owner", "flooder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root", "root-no-chown")
TRANSPORTS = ("unix",)
# Room for a flood that is slow to start on a saturated machine: the owner is released only
# once the flood runs (8 s was passed once in 1,200 stressed runs: an `error`, not a verdict).
SERVER = {"accept_window": 20}
FLOOD_SECONDS = 30.0  # an upper bound: the flood is stopped once the owner is done
FLOODERS = 2  # one per core: the server and the owner must win a core from them
WAITERS = int(os.environ.get("WRAPLAB_FLOOD_WAITERS", 16))  # blocking connects per flooder
HANDOFFS = FLOOD_HANDOFFS  # the owner's wraps, each under its own flood (won by chance)
KERNEL = DEFENDED.by("kernel")
EXPECT = {
    "hardened": KERNEL,
    "agentsh": {"root": KERNEL, "root-no-chown": VULNERABLE, "root/signal": broken_by_g8(KERNEL),
                "root-no-chown/signal": broken_by_g8(VULNERABLE)},
    "pre-235": BROKEN,
    "permissive": {"*": VULNERABLE, "signal": flood_before_g8(VULNERABLE)},
    "accept-once": {"root": KERNEL, "root/signal": broken_by_g8(KERNEL),
                    "root-no-chown": VULNERABLE},
}


def run(ctx):
    return handoffs_under_flood(ctx, ctx.flooder, handoffs=HANDOFFS, seconds=FLOOD_SECONDS,
                                procs=FLOODERS, waiters=WAITERS)
