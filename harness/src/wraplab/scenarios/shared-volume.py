"""Server and client in two containers sharing the socket directory through a volume.

The server runs in the lab's container; alice's client and mallory run in a second
container (the lab's peer, from the same image) that mounts the same API directory and
temp base (per-run tmpfs volumes). Both containers are in the same (initial) user
namespace, so uid 1001 in the peer is uid 1001 to the kernel: file modes, ACLs and
SO_PEERCRED treat alice in the peer exactly as alice next to the server. Alice's client is
slow to dial. Mallory in the peer cannot find the socket the usual way: the peer has its
own network namespace, so its /proc/net/unix does not list the server's sockets, and the
wrap directory is not listable (0700/0711); the scenario records that, then hands her the
path the harness saw (an attacker who guessed it) and she tries it first: a full handoff
with her own token, then a bare connect. Then alice dials from the peer.

Actors: owner (alice, in the peer), intruder (mallory, in the peer). Placement: root.
Transport: unix. Socket: notify.

Expected (decided from runs on the Docker lab). The containers share the user namespace
but not the PID namespace, so SO_PEERCRED gives the server peer pid 0 for anyone in the
peer, and the wrapper pid in the notify payload is a pid of the peer's namespace:
- agentsh, accept-once: defended. The directory is alice's 0700 (chown to the numeric uid
  1001, which is alice in both containers): the kernel refuses mallory (EACCES) and
  alice's token arrives from the other container (handoff_ok peer_uid=1001, peer_pid=0;
  the wrapper pid it accepts names a process of the other container's PID namespace).
- permissive: vulnerable. 0711 directory, 0666 socket, no peer check: mallory's token
  arrives from the other container and alice's wrap then fails.
- pre-235: broken. The root 0700 directory refuses alice too.
- hardened: broken. The kernel refuses mallory as under agentsh, but the server refuses
  alice's handoff too: her peer pid is 0 (not visible in the server's PID namespace), so
  it cannot check the wrapper pid and fails closed (handoff_failed
  ``reason=bad_wrapper_pid``, "missing notify peer pid"). Alice in another container
  cannot wrap at all against hardened: safe, but broken for the legitimate user.

Not covered: an unmapped uid. SO_PEERCRED shows a peer whose uid has no mapping in the
*receiver's* user namespace as the overflow uid (65534), and that must never match the
caller. Producing it needs the server (not the client) inside a user namespace that does
not map the client's uid (a Docker daemon with userns-remap, or the server started under
``unshare -U``, where it could not chown to alice at all); the lab does neither, so this
scenario only shows the mapped half. ``uid-range`` covers a caller_uid of 65534 sent by
a client.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "shared-volume"
ORDER = 215
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8, "peer": True}
LABS = ("docker",)
LAB_NOTES = {"local": "one host: there is no second container"}
EXPECT = {
    "hardened": BROKEN,
    "agentsh": DEFENDED,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": DEFENDED,
}


def run(ctx):
    peer = ctx.run.peer
    who = peer.tool("probe", [], as_user=ctx.owner.user_role)
    ctx.step(ctx.owner, "runs in the peer container",
             f"uid {who.get('uid')}, hostname {peer.name}", detail=who)
    slow = ctx.owner.starts_wrap(connect_delay=2.0, peer=True)
    attempts = []
    path = ctx.waits_for_socket(ctx.socket)
    if path:
        found = peer.tool("find_sockets", ["--base", ctx.run.temp_base, "--kind", ctx.socket],
                          as_user=ctx.intruder.user_role)
        via = next((f["via"] for f in found.get("found", [])
                    if f["path"] == found.get("path")), [])
        ctx.step(ctx.intruder, f"looks for a {ctx.socket} socket from the peer container "
                 "(listing and its own /proc/net/unix)",
                 f"{found.get('path')} (via {' and '.join(via)})"
                 if found.get("path") else "nothing found (other network namespace; "
                 "the wrap directory is not listable)", detail=found)
        ctx.metrics.update(peer_discovered=found.get("path"), peer_discovered_via=via)
        attempts.append(ctx.intruder.attacks_socket(ctx.socket, path=path, peer=True))
    wrap = slow.result()
    init = next((e for e in ctx.events(wrap.session) if e.get("type") == "wrap_init"), {})
    ok = [e for e in ctx.events(wrap.session) if e.get("type") == "handoff_ok"]
    ctx.metrics.update(api_peer_uid=init.get("api_peer_uid"),
                       fs_isolation=init.get("fs_isolation"),
                       handoff_peer_uids=[e.get("peer_uid") for e in ok])
    return ctx.judge(wrap, attempts)
