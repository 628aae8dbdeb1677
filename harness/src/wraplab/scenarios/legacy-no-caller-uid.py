"""An old client sends no caller_uid, and mallory gets to the socket first.

Alice runs a client that predates caller_uid (``--legacy``: the wrap-init body has no
caller_uid, as agentsh's CLI also does for root, sudo and user-namespace callers). Over the
Unix API the server can still learn her uid from SO_PEERCRED of the API connection; over
loopback TCP it cannot. Mallory finds the socket (temp base listing or /proc/net/unix) and,
before alice's slow client dials, hands off her own token and connects.

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
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": {"unix": DEFENDED, "tcp": VULNERABLE},
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    slow = ctx.owner.starts_wrap(connect_delay=1.5, legacy=True)
    attempts = []
    if ctx.waits_for_socket(ctx.socket):
        attempts.append(ctx.intruder.attacks_socket(ctx.socket))
    wrap = slow.result()
    return ctx.judge(wrap, attempts)
