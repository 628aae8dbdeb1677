"""Alice's client runs inside a user namespace as "root": a downgrade to legacy.

Alice runs her client under ``unshare -Ur``: inside, getuid() is 0, so the client (like
agentsh's CLI, B2) sends no caller_uid, and agentsh takes the wrap as legacy: dir 0711,
sockets 0666, no peer check. The kernel still reports alice's real uid to the server
through SO_PEERCRED of the API connection and of the wrap socket (AGENTSH.md E2): being
"root" in a namespace is not a way to pass as another user, but it throws away the
protection alice would have had. Mallory, as in ``legacy-no-caller-uid``, finds the socket
(/proc/net/unix) and hands off her own token while alice's client is held before its dial. The
scenario also records what the server learned: ``api_peer_uid`` (alice's real uid) and
``uid_source`` of the ``wrap_init`` event.

Actors: owner (alice, inside ``unshare -Ur``), intruder (mallory). Placement: root.
Transport: unix. Socket: notify.

Expected (decided from runs on the local and Docker labs):
- agentsh, accept-once, permissive: vulnerable: legacy wrap, mallory's token is accepted.
- hardened: defended: the caller is the API peer (SO_PEERCRED: alice's real uid), the
  directory is alice's 0700 and the kernel refuses mallory; alice's client, "root" inside
  its namespace, is alice outside and connects.
- pre-235: broken: the root 0700 directory refuses alice (root in her namespace is not
  root outside).

Docker lab: Docker's default seccomp profile refuses ``unshare`` with CLONE_NEWUSER to a
process without CAP_SYS_ADMIN (``unshare: unshare failed: Operation not permitted``), so
the scenario asks the lab for ``userns`` (``SERVER``): DockerLab then starts the container
with ``seccomp=unconfined`` (the only thing relaxed; see ``wraplab.labs.ServerSpec``).
The local lab ignores the option (the host's policy applies). The verdicts are the same
in both labs.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE

SLUG = "userns-root-client"
ORDER = 210
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8, "userns": True}
LABS = ("docker", "local")
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    probe = ctx.run.exec(ctx.owner.user_role, ["unshare", "-Ur", "id", "-u"], timeout=30)
    ctx.step(ctx.owner, "runs id -u under unshare -Ur",
             (probe.stdout or probe.stderr or "").strip()[-200:] or f"exit {probe.exit_code}")
    if probe.exit_code != 0 or probe.stdout.strip() != "0":
        return ctx.error(f"user namespaces unavailable on the {ctx.cell.lab} lab "
                         f"({(probe.stderr or '').strip()[-200:]})")
    # The owner's client, run inside a new user namespace (uid 0 there), held before its dial.
    owner = ctx.owner.starts_wrap(launcher=("unshare", "-Ur"))
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    wrap = owner.release()
    init = next((e for e in ctx.events(wrap.session) if e.get("type") == "wrap_init"), {})
    ctx.metrics.update(client_uid_inside=wrap.data.get("uid"),
                       sent_caller_uid=(wrap.data.get("wrap_init") or {}).get("caller_uid"),
                       uid_source=init.get("uid_source"), api_peer_uid=init.get("api_peer_uid"),
                       fs_isolation=init.get("fs_isolation"))
    ctx.note(f"the client saw uid {wrap.data.get('uid')} inside its namespace; the server "
             f"saw API peer uid {init.get('api_peer_uid')} and took the caller as "
             f"{init.get('uid_source')} ({init.get('fs_isolation')})")
    return ctx.judge(wrap, [attack])
