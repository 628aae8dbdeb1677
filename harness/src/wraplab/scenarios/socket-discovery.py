"""Mallory cannot list the private wrap directory, yet finds the socket in /proc/net/unix.

She then uses the path it gives her (legacy path hijack).

Alice runs a legacy client (no caller_uid, as agentsh's CLI sends for root, sudo and
user-namespace callers, B2) and is slow to dial. Mallory looks for the socket the two ways
a local user has: listing the temp base and each ``wrap-*`` directory in it (the wrap
directory is 0711 or 0700, so listing it fails with EACCES), and reading /proc/net/unix,
which names every bound Unix socket path on the system whatever the directory modes
(AGENTSH.md E1). With the path she hands off her own token before alice dials (legacy
path hijack, G2). The transcript records which way found the path and that listing the
private directory was refused.

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
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    slow = ctx.owner.starts_wrap(connect_delay=2.0, legacy=True)
    attempts = []
    if ctx.waits_for_socket(ctx.socket):
        found = ctx.run.tool("find_sockets", ["--base", ctx.run.temp_base, "--kind",
                                              ctx.socket], as_user=ctx.intruder.user_role)
        path = found.get("path")
        via = next((f["via"] for f in found.get("found", []) if f["path"] == path), [])
        dirs = (found.get("listing") or {}).get("dirs") or {}
        ctx.step(ctx.intruder, f"lists {ctx.run.temp_base} and its wrap-* directories",
                 ", ".join(f"{d}: {e or 'listed'}" for d, e in dirs.items()) or "none",
                 detail=found.get("listing") or {})
        ctx.step(ctx.intruder, "reads /proc/net/unix", f"{path} (via {' and '.join(via)})"
                 if path else "nothing found", detail={"found": found.get("found")})
        ctx.metrics.update(discovered_via=via, dir_listing=dirs)
        if path and via != ["/proc/net/unix"]:
            ctx.note(f"the path was also found by listing: {via}")
        attempts.append(ctx.intruder.attacks_socket(ctx.socket))
    wrap = slow.result()
    return ctx.judge(wrap, attempts)
