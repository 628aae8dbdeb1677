"""Server and client in two containers sharing the socket directory through a volume.

The server runs in the lab's container; the clients and mallory run in a second container
(the lab's peer, from the same image) that mounts the same API directory and temp base
(per-run tmpfs volumes) and shares the server container's PID namespace. The server runs
as root of its own user namespace that maps only root, alice (1001) and nobody (65534),
each to itself, as a server in a user-namespaced container would be: alice in the peer is
alice to the server, but mallory (1003) has no mapping there, so the kernel shows her to
the server as the overflow uid, 65534: the same number as the genuine nobody.

1. Mapped: alice wraps from the peer, held before its dial. Mallory in the peer cannot find the
   socket the usual way (her /proc/net/unix is her own network namespace's, the wrap
   directory is not listable); the scenario records that, hands her the path the harness
   saw, and she tries it first: a full handoff with her own token, then a bare connect.
2. Unmapped: once alice's directory is gone, nobody (a service account, 65534 everywhere)
   wraps from the peer, held before its dial, and mallory tries nobody's socket first. Her uid
   reaches the server as 65534, so a server that expects 65534 cannot tell her from
   nobody: the overflow uid must never be an expected uid (SPEC H2).

Actors: owner (alice, in the peer), nobody (the overflow role, in the peer), intruder
(mallory, in the peer). Placements: root, and root without CAP_CHOWN (where agentsh falls
back to a 0711 directory and 0666 sockets, H4). Transport: unix. Socket: notify.
The verdict is the worse of the two halves.

Expected (decided from runs on the Docker lab):
- hardened: defended. Mapped: the kernel refuses mallory (alice's 0700 directory, or the
  ACL granting only alice) and alice's token arrives, her wrapper pid checked in the
  shared PID namespace (H10). Unmapped: nobody's wrap-init is refused, 400 "invalid
  caller uid: 65534 (the overflow uid)", so no socket ever expects 65534.
- agentsh: root: defended (the directory chowned to alice, then to nobody; the kernel
  refuses mallory both times). Without CAP_CHOWN: vulnerable: behind the 0666 socket the
  peer check alone decides, it expects nobody's 65534 and mallory arrives as 65534: her
  token is taken as nobody's.
- accept-once: as agentsh as root; without CAP_CHOWN vulnerable in both halves (mallory's
  rejection on alice's socket also ends that loop).
- permissive: vulnerable (0711/0666, no peer check).
- pre-235: broken (the root 0700 directory refuses alice and nobody).

Measured before the peer shared the PID namespace: with a PID namespace of its own, the
server sees peer pid 0 for every peer process, so hardened could not check alice's wrapper
pid and failed closed (``bad_wrapper_pid``, "missing notify peer pid"): safe, but alice
could not wrap across containers at all. agentsh accepted, trusting a wrapper pid of the
other namespace.
"""


from wraplab.engine import BROKEN, DEFENDED, ERROR, VULNERABLE, Judgement, combine

SLUG = "shared-volume"
ORDER = 215
ACTORS = {"owner": "owner", "nobody": "overflow", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root", "root-no-chown")
TRANSPORTS = ("unix",)
WINDOW = 5  # the peer container is slower to dial than the lab itself (0.2-0.5 s held)
SERVER = {"accept_window": WINDOW, "peer": True, "peer_shares_pids": True,
          "server_userns": ("owner", "overflow")}
LABS = ("docker",)
LAB_NOTES = {"local": "one host: there is no second container"}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": {"root": DEFENDED, "root-no-chown": VULNERABLE},
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": {"root": DEFENDED, "root-no-chown": VULNERABLE},
}


def run(ctx):
    peer = ctx.run.peer
    who = peer.tool("probe", [], as_user=ctx.owner.user_role)
    ctx.step(ctx.owner, "runs in the peer container",
             f"uid {who.get('uid')}, hostname {peer.name}", detail=who)
    mapped = handoff_under_attack(ctx, ctx.owner, discover=True)
    if mapped.verdict is ERROR:
        return mapped
    unmapped = handoff_under_attack(ctx, ctx.nobody, last=True)
    worst = combine([mapped, unmapped])
    return Judgement(worst.verdict, f"alice (mapped): {mapped.verdict}: {mapped.reason} | "
                     f"nobody (65534; mallory unmapped): {unmapped.verdict}: "
                     f"{unmapped.reason}", worst.guard)


def handoff_under_attack(ctx, owner, discover: bool = False, last: bool = False):
    """``owner`` wraps from the peer, held before its dial; mallory tries its socket first.
    Then (unless ``last``) the wrap's end is waited for."""
    held = owner.starts_wrap(peer=True)
    path = held.socket(ctx.socket)
    if path and discover:
        found = ctx.intruder.runs_tool("find_sockets", "--base", ctx.run.temp_base, peer=True)
        via = next((f["via"] for f in found.get("found", [])
                    if f["path"] == found.get("path")), [])
        ctx.step(ctx.intruder, f"looks for a {ctx.socket} socket from the peer container "
                 "(listing and its own /proc/net/unix)",
                 f"{found.get('path')} (via {' and '.join(via)})"
                 if found.get("path") else "nothing found (other network namespace; "
                 "the wrap directory is not listable)", detail=found)
        ctx.metrics.update(peer_discovered=found.get("path"), peer_discovered_via=via)
    attack = ctx.intruder.attacks_socket(ctx.socket, path, peer=True) if path else None
    wrap = held.release()
    events = ctx.events(wrap.session) if wrap.session else []
    init = next((e for e in events if e.get("type") == "wrap_init"), {})
    ctx.metrics[owner.role] = {
        "api_peer_uid": init.get("api_peer_uid"), "caller_uid": init.get("caller_uid"),
        "fs_isolation": init.get("fs_isolation"),
        "handoffs": [{k: e.get(k) for k in ("peer_uid", "peer_pid", "token")}
                     for e in events if e.get("type") == "handoff_ok"],
        "rejected_uids": sorted({e.get("peer_uid") for e in events
                                 if e.get("type") == "peer_rejected"})}
    if not path and wrap.step == "wrap-init" and wrap.data.get("http_status") == 400:
        return ctx.defended(f"{owner.name}'s wrap-init was refused ({wrap.failure()}): the "
                            f"server never expects uid {owner.uid}, so no unmapped peer "
                            "can match it", guard="uid-range")
    verdict = ctx.judge(wrap, [attack] if attack else [])
    if not last:
        ctx.waits_for_wrap_end(wrap, WINDOW + 5)  # nobody's socket must be the only one left
    return verdict
