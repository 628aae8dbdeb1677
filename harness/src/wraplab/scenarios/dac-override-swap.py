"""Mallory keeps CAP_DAC_OVERRIDE and puts her own socket where alice's wrap socket was.

The layers in front of alice's sockets all stop at the directory: its mode or ACL (SPEC
H3/H4), validated by the server (H5) before the hand-over. A process of mallory's uid that
kept CAP_DAC_OVERRIDE (container root that dropped to her uid, see
``dac-override-intruder``) passes them all *after* the server's validation: she unlinks
alice's socket and binds her own at the same path. The server's peer check (H6) never sees
alice, she never reaches the server. What is left is the client: whether it checks who
listens at the other end before it hands its descriptor over (docs/hostile-users.md H19:
the wrap socket's SO_PEERCRED must be the API's server).

Order, by barriers: alice's client does wrap-init and holds before its dial; mallory's
squat tool (``--swap``) replaces alice's notify socket and says when hers listens; the
harness checks the path is now hers (stat), then releases alice's client, and once alice's
client has ended, tells mallory's listener to report.

Verdict: vulnerable when mallory received alice's descriptor (her token); defended
(client-check) when alice's client connected to mallory's socket (her listener saw alice's
SO_PEERCRED) and refused it, handing nothing over; broken when alice could not reach the
path at all (a layout that never lets her in); error when the swap did not happen.

Actors: owner (alice), intruder (mallory + CAP_DAC_OVERRIDE). Placements: root (chown),
root-no-chown and service (ACL). Transport: unix. Socket: notify (the client's check is one
and the same for every kind; on the agentsh family a swapped signal socket goes with the
directory the notify loop removes (G8) before alice dials it, so that cell would show G8,
not this attack).

Expected:
- hardened: defended by the client's check (H19): the listener's uid is mallory's, not the
  server's; alice's client stops with EPERM before it sends anything.
- agentsh, permissive, accept-once: vulnerable: the client checks nobody (agentsh's CLI
  dials the path it was given, AGENTSH.md B34) and hands mallory its fd.
- pre-235: broken: the directory stays root's 0700, alice cannot reach either socket.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "dac-override-swap"
ORDER = 305
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root", "root-no-chown", "service")
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED.by("client-check"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    owner, mallory = ctx.owner.starts_wrap(), ctx.intruder.with_caps("dac_override")
    path = owner.socket(ctx.socket)
    if path is None:
        return ctx.error(f"the server announced no {ctx.socket} socket: nothing to swap")
    swap = mallory.swaps_socket(path)
    if not swap.listening:
        owner.release()
        return ctx.error(f"mallory's socket never took {path}: {swap.failure()}")
    wrap = owner.release()
    return judge_swap(ctx, wrap, swap.result())


def judge_swap(ctx, wrap, got):
    """The verdict from what alice's client and mallory's listener saw."""
    peer = got.get("peer") or {}
    if got.get("token") and got["token"] == wrap.token:
        return ctx.vulnerable(f"alice's client handed its {ctx.socket} fd to mallory's socket "
                              f"(token {got['token']!r}; alice's client: "
                              f"{'ok' if wrap.ok else wrap.failure()})")
    if peer.get("uid") == ctx.owner.uid and wrap.errno == "EPERM" \
            and wrap.failed_kind == ctx.socket and not got.get("token"):
        return ctx.defended("alice's client connected to mallory's socket, found its "
                            "SO_PEERCRED uid was not the server's and handed nothing over",
                            guard="client-check")
    if not got.get("connected_t") and wrap.errno == "EACCES":
        return ctx.broken(f"alice could not reach her own {ctx.socket} path ({wrap.failure()})")
    return ctx.error(f"no verdict: mallory's listener saw {peer or 'nobody'}, token "
                     f"{got.get('token')!r}; alice's client: "
                     f"{'ok' if wrap.ok else wrap.failure()}")
