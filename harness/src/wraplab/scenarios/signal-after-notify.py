"""Alice alone: is her signal socket still there when she dials it after the notify ACK?

No attacker. Alice wraps with the signal filter on, three times. Her client (like
agentsh's CLI) hands over the notify fd, waits for the ACK, then dials the signal socket.
agentsh's notify goroutine removes the whole wrap directory, signal socket path included,
right after its ACK (AGENTSH.md B32, G8; SPEC H11), so the client's signal dial races that
removal. The verdict follows the server's own events, not the race: the directory removed
(``dir_removed``) while the signal loop had not ended is ``broken`` even when alice's dial
happened to win.

Actors: owner (alice). Placement: root. Transport: unix. Socket: signal.

Expected (decided from runs):
- agentsh, accept-once, permissive: broken (G8): ``dir_removed`` comes before the signal
  loop's end; alice's signal dial usually fails with ENOENT.
- hardened: defended: the directory goes when the last loop of the wrap ends; alice's
  three wraps hand over notify and signal.
- pre-235: broken: the root 0700 directory refuses alice.
"""

from wraplab.engine import BROKEN, DEFENDED, broken_by_g8, combine

SLUG = "signal-after-notify"
ORDER = 200
ACTORS = {"owner": "owner"}
SOCKETS = ("signal",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
WRAPS = 3
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": broken_by_g8(DEFENDED),
    "pre-235": BROKEN,
    "permissive": broken_by_g8(DEFENDED),
    "accept-once": broken_by_g8(DEFENDED),
}


def run(ctx):
    wraps = [ctx.owner.wraps() for _ in range(WRAPS)]
    ctx.metrics.update(owner_ok=sum(w.ok for w in wraps),
                       failures=[f"{w.step}:{w.errno}" for w in wraps if not w.ok])
    return combine([ctx.judge(w) for w in wraps])
