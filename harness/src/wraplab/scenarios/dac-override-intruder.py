"""Mallory keeps CAP_DAC_OVERRIDE: the directory lets her through, the peer check must not.

Container root that dropped to mallory's uid but kept CAP_DAC_OVERRIDE (a common
mistake: ``setuid`` without clearing the capability sets, or ``--cap-add`` plus
``--user``) is mallory as far as SO_PEERCRED goes, but the kernel skips the mode and ACL
checks of the wrap directory and its sockets for her. So here, unlike ``wrong-uid`` and
``no-cap-chown``, the filesystem layer (SPEC H3/H4) does not stop her, and the server's
peer check (H6) is the only thing between her and alice's session.

Alice's client is slow to dial (it waits after wrap-init). Mallory (uid 1003 with
CAP_DAC_OVERRIDE) finds the socket by listing the temp base and the wrap directory, then
tries it first: a full handoff with her own token (notify: 0xA7 + a child of hers as the
wrapper + her pipe fd; signal: 0x00 + fd; ptrace: her own pid), then a bare connect.
Then alice dials. Only alice's token may arrive.

Actors: owner (alice), intruder (mallory + CAP_DAC_OVERRIDE). Placements: root (chown),
root-no-chown and service (ACL). Transport: unix. Sockets: notify, signal, ptrace.

Expected:
- hardened: defended by the peer check: mallory connects (the kernel lets her), the
  server rejects her uid (``peer_rejected``) and goes on accepting; alice's token arrives.
- agentsh: defended by the peer check, the same way; signal: broken by G8 (the notify
  loop removes the directory before alice's signal dial, see ``wrong-uid``).
- accept-once: vulnerable: mallory's rejection ends the loop, alice's dial fails (a denial
  of service by anyone who reaches the socket).
- permissive: vulnerable: no peer check, mallory's handoff is the one accepted.
- pre-235: vulnerable: no peer check, and the root-only directory does not stop a
  CAP_DAC_OVERRIDE holder: her handoff is accepted (alice cannot reach her socket at all).
"""

from wraplab.engine import DEFENDED, VULNERABLE, broken_by_g8

SLUG = "dac-override-intruder"
ORDER = 300
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root", "root-no-chown", "service")
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED.by("peer-check"),
    "agentsh": {"*": DEFENDED, "signal": broken_by_g8(DEFENDED.by("peer-check"))},
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    capable = ctx.intruder.with_caps("dac_override")
    attack = capable.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    return ctx.judge(owner.release(), [attack])
