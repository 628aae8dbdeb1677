"""The filesystem layer on its own: may anyone but alice even connect to her socket?

SPEC H3/H4 promise that the wrap directory and sockets admit exactly the caller: with
CAP_CHOWN the directory is handed to alice (0700, H3's order), without it (or as a
service user) POSIX ACLs grant alice alone (dir ``u:alice:--x``, sockets ``u:alice:rw-``,
group and other nothing, H4). The peer check (H6) stands behind that layer, so in every
other scenario a weakened layer goes unnoticed: the peer check still turns the intruder
away. Here the layer is judged by itself: the attack is *reaching* the server at all
(what a flood, a stall or a log flood needs, and what the peer check then has to carry
alone).

Alice's client is slow to dial. Mallory (no shared group) and bob (alice's group mate,
``wrapusers``: a mode or ACL that grants the group lets him in) each find the socket
(/proc/net/unix shows the path) and make two bare connects, at the same time, before
alice dials (the second shows whether the first one's rejection ended the loop, for a
target without events). Then alice dials.

Verdict: vulnerable when the kernel let either of them connect (the server saw them),
whatever the peer check then did; defended by the kernel when both got EACCES and alice's
token arrived; broken when alice herself could not hand off and nobody got in.

Actors: owner (alice), intruder (mallory), groupmate (bob). Placements: root (chown,
H3), root-no-chown and service (ACL, H4). Transport: unix. Sockets: notify, signal, ptrace.

Expected:
- hardened: defended (kernel): chown 0700 at root, the exact ACL otherwise.
- agentsh: root: defended (0700 chowned to alice; signal: broken by G8, see ``wrong-uid``);
  root-no-chown and service: vulnerable: 0711/0666 fallback, both connect, only the peer
  check stands (G1); their signal cells: broken by G8 first.
- accept-once: as agentsh, except that at root-no-chown/service the first rejection ends
  the loop (vulnerable either way).
- permissive: vulnerable: 0711/0666, the first connection is served and ends the loop.
- pre-235: broken: the directory is the server's 0700, alice cannot reach it either.
"""

from concurrent.futures import ThreadPoolExecutor

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, broken_by_g8

SLUG = "filesystem-layer"
ORDER = 310
ACTORS = {"owner": "owner", "intruder": "attacker", "groupmate": "bystander"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root", "root-no-chown", "service")
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": {"root": DEFENDED, "root-no-chown": VULNERABLE, "service": VULNERABLE,
                "root/signal": broken_by_g8(DEFENDED),
                "root-no-chown/signal": broken_by_g8(VULNERABLE),
                "service/signal": broken_by_g8(VULNERABLE)},
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": {"root": DEFENDED, "root-no-chown": VULNERABLE, "service": VULNERABLE,
                    "root/signal": broken_by_g8(DEFENDED)},
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    path = owner.socket(ctx.socket)
    # Both at once, alice still held; each connects twice, so that a target without events
    # still shows whether a rejection ended the loop (the second connect then meets no live
    # socket: accept-once) or not (it is accepted and closed again: agentsh).
    with ThreadPoolExecutor(max_workers=2) as pool:
        tries = list(pool.map(
            lambda who: who.attacks_socket(ctx.socket, path, steps="connect,connect"),
            (ctx.intruder, ctx.groupmate)))
    wrap = owner.release()
    verdict = ctx.judge(wrap, tries)
    if verdict.verdict is not DEFENDED:
        return verdict
    through = [a for a in tries if a.reached_server]
    ctx.metrics["reached_server"] = sorted(a.actor.name for a in through)
    if through:
        who = ", ".join(f"{a.actor.name} (uid {a.uid})" for a in through)
        return ctx.vulnerable(
            f"the filesystem layer let {who} connect to alice's {ctx.socket} socket: only "
            f"the server's peer check stood between them and her session ({verdict.reason})",
            guard=verdict.guard)
    return verdict
