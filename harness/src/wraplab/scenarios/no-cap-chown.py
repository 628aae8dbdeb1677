"""Mallory tries alice's socket first, on a server that cannot chown.

The same attack as ``wrong-uid`` (mallory finds alice's socket through the temp base or
/proc/net/unix and tries a full handoff with her own token, then a bare connect, before
alice's slow client dials), but the server cannot give alice the directory: it runs as root
without CAP_CHOWN (``root-no-chown``), or as the unprivileged service user wrapd
(``service``). What protects the socket then is recorded as the verdict's guard: ``kernel``
(the directory/socket ACL or mode made connect fail with EACCES) or ``peer-check`` (mallory
reached the server and SO_PEERCRED made it close her connection).

Actors: owner (alice), intruder (mallory). Placements: root-no-chown, service. Transport:
unix. Sockets: notify, signal, ptrace.

Expected:
- hardened: defended by the kernel: POSIX ACLs grant exactly alice (dir ``u:alice:--x``,
  sockets ``u:alice:rw-``, others nothing).
- agentsh: defended, but only by the peer check: the fallback is dir 0711 + sockets 0666,
  mallory connects and the server rejects her (peer_rejected events).
- accept-once: vulnerable (denial of service): mallory's rejected connection ends the
  accept loop; alice's dial then fails.
- permissive: vulnerable: mallory's handoff is accepted, her token arrives.
- pre-235: broken: the directory stays the server's 0700 and alice cannot reach it.
- agentsh on the signal socket: broken by G8 (below): mallory is rejected on the signal
  socket, but alice's signal dial then loses to the notify loop's cleanup. (accept-once's
  signal cell stays vulnerable: mallory's rejection ends the signal loop.)

Signal sockets and G8 (decided from real runs): agentsh, permissive and accept-once keep
agentsh's cleanup, where the notify loop removes the shared wrap directory right after its
handoff while the signal loop still waits (AGENTSH.md G8, SPEC H11). The owner's client
dials the signal socket after the notify ACK, so it loses that race (ENOENT) nearly every
time: those signal cells are ``broken``. When the owner happens to win the race the
verdict is still ``broken``, because the server's events show the directory removed before
the owner's last handoff; so the verdict follows the server's behaviour, not the race.
hardened removes the directory when the last loop ends.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, broken_by_g8

SLUG = "no-cap-chown"
ORDER = 30
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root-no-chown", "service")
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": {"*": DEFENDED.by("peer-check"),
                "signal": broken_by_g8(DEFENDED.by("peer-check"))},
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    return ctx.judge(owner.release(), [attack])
