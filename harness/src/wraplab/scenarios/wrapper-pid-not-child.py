"""Alice's notify handoff names bob's process as her wrapper.

Bob (the bystander) runs a process (``sleep``). Alice, the owner, makes her own wrap and
hands over her notify fd correctly, except that the metadata's wrapper pid (0xA7 + pid) is
bob's process, found in /proc, not a child of hers. agentsh validates that pid only when
cgroups/eBPF are on (AGENTSH.md B24/B31, G5); otherwise it trusts it and feeds it to
session registration and the memory probe. The hardened profile always checks that the
wrapper's PPid is the peer and that the peer's uid is among the wrapper's uids (SPEC H10).

Actors: owner (alice), victim (bob, bystander). Placement: root. Transport: unix.
Socket: notify.

Expected (decided from runs):
- agentsh, accept-once, permissive: vulnerable: status 1, ``handoff_ok`` recording bob's
  pid as alice's wrapper.
- hardened: defended: status 0, ``handoff_failed`` ``bad_wrapper_pid``; alice's own wrap
  works.
- pre-235: broken: alice cannot reach her socket (root 0700), nor can her own wrap.
"""

from wraplab.engine import BROKEN, DEFENDED, VULNERABLE, claim_foreign_pid

SLUG = "wrapper-pid-not-child"
ORDER = 180
ACTORS = {"owner": "owner", "victim": "bystander"}
SOCKETS = ("notify",)
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
    return claim_foreign_pid(ctx, "notify")
