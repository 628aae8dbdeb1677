"""Mallory tries alice's socket before alice does.

A root server gets alice's wrap-init (naming her uid) and makes her sockets. Alice's client
is held between wrap-init and its first dial. Mallory, the attacker, has the socket's path
(as any local user can: /proc/net/unix shows every bound path, even inside a directory she
cannot enter; the harness hands her the path the server announced to alice) and tries it
first: a full handoff with her own token (notify: 0xA7 + her pid + her pipe fd; signal:
0x00 + fd; ptrace: her pid), then a bare connect. Only then is alice's client released. The
owner's token must be the one that arrived and mallory's never.

What mallory can see, checked against the reference server: /proc/net/unix gives her the
socket path, and the socket's name carries the session id (unless the path budget hashed
it); the events endpoint answers anyone on the 0666 API socket who names a session, so she
could also read alice's events (wrap_init with the paths, then the handoff with alice's
token). The scenario does not need them: the path from /proc/net/unix is enough.

Actors: owner (alice), intruder (mallory). Placement: root (the chown path). Transport:
unix. Sockets: notify, signal, ptrace.

Expected:
- hardened, agentsh, accept-once: defended. The directory is alice's 0700, so the kernel
  refuses mallory (EACCES) before the server sees her; accept-once's weakness never fires.
- permissive: vulnerable. The directory is 0711 and the socket 0666 with no peer check:
  mallory's handoff is accepted (her token arrives) and alice's wrap then fails.
- pre-235: broken. The directory stays root 0700: alice is refused like mallory.
- agentsh and accept-once on the signal socket: broken, by G8 (below), not by mallory.

Signal sockets and G8 (decided from real runs): agentsh, permissive and accept-once keep
agentsh's cleanup, where the notify loop removes the shared wrap directory right after its
handoff while the signal loop still waits (AGENTSH.md G8, SPEC H11). The owner's client
dials the signal socket after the notify ACK, so it loses that race (ENOENT) nearly every
time: those signal cells are ``broken``. When the owner's dial wins the race but the
server's events show the directory removed before the signal loop ended, the verdict is
still ``broken``. Only when the notify loop is descheduled between its ACK and its cleanup
(seen once in a CI run under load) does the owner's whole signal handoff come first: then the
run shows the attack alone, and ``broken_by_g8`` accepts that verdict too. hardened removes
the directory when the last loop ends.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, broken_by_g8

KERNEL = DEFENDED.by("kernel")

SLUG = "wrong-uid"
ORDER = 20
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": KERNEL,
    "agentsh": {"*": KERNEL, "signal": broken_by_g8(KERNEL)},
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": {"*": KERNEL, "signal": broken_by_g8(KERNEL)},
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    return ctx.judge(owner.release(), [attack])
