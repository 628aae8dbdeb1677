"""Alice asks the root tracer to attach bob's process into her session.

Bob (the bystander) runs a process (``sleep``). Alice, the owner, creates her own session
and wrap-init in ptrace mode, connects to her own ptrace socket (the peer check admits
her), and sends bob's pid, found in /proc the way ``ps`` does, instead of her child's.
agentsh's tracer attaches any pid that exists (AGENTSH.md B28-B30, G4): a root tracer
would then trace bob's process under alice's session policy. The hardened profile requires
the pid to be the peer or its descendant and to run as the peer's uid (SPEC H9).

The reference server does not really attach (``attach: "simulated"``); the verdict is the
server's answer (ACK/NACK) and its ``handoff_ok``/``handoff_failed`` event.

Actors: owner (alice), victim (bob, bystander). Placement: root. Transport: unix.
Socket: ptrace.

Expected (decided from runs):
- agentsh, accept-once, permissive: vulnerable: ACK, ``handoff_ok`` with bob's pid.
- hardened: defended: NACK, ``handoff_failed`` ``pid_not_peer``; alice's own wrap works.
- pre-235: broken: alice cannot reach her socket (root 0700), nor can her own wrap.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, claim_foreign_pid

SLUG = "ptrace-foreign-pid"
ORDER = 170
ACTORS = {"owner": "owner", "victim": "bystander"}
SOCKETS = ("ptrace",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": DEFENDED.by("pid-check"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    return claim_foreign_pid(ctx, "ptrace")
