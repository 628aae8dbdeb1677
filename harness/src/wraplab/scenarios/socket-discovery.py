"""Mallory cannot list the private wrap directory, yet finds the socket in /proc/net/unix.

She then uses the path it gives her (legacy path hijack).

Alice runs a legacy client (no caller_uid, as agentsh's CLI sends for root, sudo and
user-namespace callers, B2), held between wrap-init and its dial. Mallory looks for the
socket the two ways a local user has: listing the temp base and each directory in it (the
wrap directory is 0711 or 0700, so listing it fails with EACCES), and reading
/proc/net/unix, which names every bound Unix socket path on the system whatever the
directory modes (AGENTSH.md E1). She looks for any listening socket under the temp base,
with no assumption about its name; the harness checks that what she found is the socket
the server announced to alice (else the attack did not happen: ``error``). With the path
she hands off her own token before alice dials (legacy path hijack, G2). The transcript
records which way found the path and that listing the private directory was refused.

Actors: owner (alice, legacy client), intruder (mallory). Placement: root. Transport:
unix. Socket: notify.

Expected (decided from runs), in every profile mallory finds the path via /proc/net/unix
only:
- agentsh, accept-once, permissive: vulnerable: the legacy sockets are 0666 in a 0711
  directory with no peer check; mallory's token arrives and alice's wrap aborts.
- hardened: defended: knowing the path is not enough: over the Unix API the caller is
  learned from SO_PEERCRED, the directory is alice's 0700, and the kernel refuses
  mallory (EACCES).
- pre-235: broken: the root 0700 directory refuses alice too.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "socket-discovery"
ORDER = 190
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap(legacy=True)
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket), discover=True)
    find = next((s for s in attack.steps if s.get("action") == "find"), {})
    ctx.metrics.update(discovered_via=find.get("via"), dir_listing=find.get("dirs"))
    if attack.path and find.get("via") != ["/proc/net/unix"]:
        ctx.note(f"the path was also found by listing: {find.get('via')}")
    return ctx.judge(owner.release(), [attack])
