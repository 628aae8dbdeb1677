"""Old and new clients against this server: agentsh's compatibility table, under attack.

agentsh's CLI sends ``caller_uid`` since #235; older CLIs (and, today, root, sudo and
user-namespace callers, B2) send none. The server under test is the cell's profile: a new
server (``agentsh``, ``hardened``...) or the old one (``pre-235``, which ignores
caller_uid). Alice wraps twice, once with a new client (caller_uid = her uid) and once with
an old one (``--legacy``: no caller_uid), each time slow to dial while mallory tries a
handoff with her own token first at the socket the server announced (any local user can
read its path in /proc/net/unix). Each row attacks its own wrap's path, so the second row
need not wait for the first wrap to end. The four rows of the
table are: new client x new server, old client x new server (cells of the new profiles),
new client x old server, old x old (the ``pre-235`` cell). Each row is judged as in
``wrong-uid``; the cell's verdict is the worse of its two rows (broken > vulnerable >
defended), and ``metrics.rows`` gives both.

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected (decided from runs):
- agentsh: vulnerable: new client defended (alice's 0700 directory, EACCES for mallory);
  old client vulnerable (legacy: 0711/0666, no peer check, mallory's token arrives: G2).
- hardened: defended in both rows: over the Unix API the caller comes from SO_PEERCRED,
  so an old client gets the same protection as a new one.
- accept-once, permissive: vulnerable (old-client row; permissive in both).
- pre-235 (the old server): broken in both rows: it ignores caller_uid and keeps the
  directory root 0700, so no non-root client can connect (multi-user wrap does not work).
"""


from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, combine

SLUG = "version-skew"
ORDER = 230
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 8.0
SERVER = {"accept_window": WINDOW}
EXPECT = {
    "hardened": DEFENDED.by("kernel"),
    "agentsh": VULNERABLE,
    "pre-235": BROKEN,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def row(ctx, client: str):
    owner = ctx.owner.starts_wrap(legacy=client == "old")
    attack = ctx.intruder.attacks_socket(ctx.socket, owner.socket(ctx.socket))
    return ctx.judge(owner.release(), [attack])


def run(ctx):
    server = "old server" if ctx.profile == "pre-235" else "new server"
    rows, judgements = {}, []
    for client in ("new", "old"):
        j = row(ctx, client)
        judgements.append(j)
        rows[f"{client} client x {server}"] = {"verdict": str(j.verdict), "reason": j.reason}
        ctx.note(f"row {client} client x {server} ({ctx.profile}): {j.verdict}: {j.reason}")
    ctx.metrics["rows"] = rows
    return combine(judgements)
