"""The owner hands off on its own socket, with nobody in the way.

A root server gets a wrap-init from alice (the owner) that names her uid; her client does
every handoff the socket kind needs (notify; notify then signal; or ptrace) and her token
must be the one the server records. While the sockets exist the harness records their
files (owner, mode, type, ACL) and checks them against what the server says it did
(``fs_isolation`` and ``modes`` of the ``wrap_init`` event): chown = directory owned by the
owner 0700, sockets 0600; acl = an ACL entry for the owner; none = 0711/0666.

Actors: owner (alice). Placement: root. Transport: unix. Sockets: notify, signal, ptrace.

Expected: every profile defended except ``pre-235``, which is broken: its directory stays
root:root 0700, so the owner's connect gets EACCES from the kernel (multi-user wrap never
worked before #235); and the signal socket of the agentsh-derived profiles (below).

Signal sockets and G8 (decided from real runs): agentsh, permissive and accept-once keep
agentsh's cleanup, where the notify loop removes the shared wrap directory right after its
handoff while the signal loop still waits (AGENTSH.md G8, SPEC H11). The owner's client
dials the signal socket after the notify ACK, so it loses that race (ENOENT) nearly every
time: those signal cells are ``broken``. When the owner happens to win the race the
verdict is still ``broken``, because the server's events show the directory removed before
the owner's last handoff; so the verdict follows the server's behaviour, not the race.
hardened removes the directory when the last loop ends.
"""

from wraplab.engine import BROKEN, DEFENDED, broken_by_g8

SLUG = "matching-uid"
ORDER = 10
ACTORS = {"owner": "owner"}
SOCKETS = ("notify", "signal", "ptrace")
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 8}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": {"*": DEFENDED, "signal": broken_by_g8(DEFENDED)},
    "pre-235": BROKEN,
    "permissive": {"*": DEFENDED, "signal": broken_by_g8(DEFENDED)},
    "accept-once": {"*": DEFENDED, "signal": broken_by_g8(DEFENDED)},
}


def run(ctx):
    owner = ctx.owner.starts_wrap()
    owner.announced  # noqa: B018 - the files' facts are taken while the client is held
    wrap = owner.release()
    verdict = ctx.judge(wrap)
    if verdict.verdict is DEFENDED:
        wrong = ctx.files_not_as_claimed(wrap)
        if wrong:
            return ctx.vulnerable("the files are not as the server says: " + "; ".join(wrong))
    return verdict
