"""An old client sends no caller_uid, and mallory gets to the socket first.

Alice runs a client that predates caller_uid (``--legacy``: the wrap-init body has no
caller_uid, as agentsh's CLI also does for root, sudo and user-namespace callers). Over the
Unix API the server can still learn her uid from SO_PEERCRED of the API connection; over
loopback TCP it cannot. Mallory has the socket's path (/proc/net/unix shows it to anyone;
the harness hands her the path the server announced) and, while alice's client is held
between wrap-init and its dial, hands off her own token and connects.

Actors: owner (alice, legacy client), intruder (mallory). Placement: root. Transports: unix
and tcp (127.0.0.1). Sockets: notify, signal, ptrace.

Expected:
- agentsh: vulnerable (AGENTSH.md G2): legacy means dir 0711, sockets 0666 and no peer
  check, so mallory's fd/pid is injected into alice's session and alice's wrap aborts.
- hardened over unix: defended: the caller is the API peer (SO_PEERCRED), so the chown
  path applies and the kernel refuses mallory (EACCES).
- hardened over tcp: vulnerable, like agentsh: a TCP API carries no peer credentials, so a
  legacy caller cannot be identified. This is the residual risk of enabling a TCP API.
- permissive, accept-once: vulnerable (no caller uid means anyone is accepted).
- pre-235: broken (root 0700 directory: alice is refused too).
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "legacy-no-caller-uid"
ORDER = 40
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix", "tcp")
# The hardened client retries a missing socket until its budget ends; where mallory's
# handoff took the wrap the directory is gone, so the budget is all that alice waits for.
# Her handoff, when it can happen, takes milliseconds once she is released.
SERVER = {"accept_window": 8, "client_budget": 1.5}
EXPECT = {
    "hardened": {"unix": DEFENDED.by("kernel"), "tcp": VULNERABLE},
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner = ctx.owner.starts_wrap(legacy=True)
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    return ctx.judge(owner.release(), [attack])
