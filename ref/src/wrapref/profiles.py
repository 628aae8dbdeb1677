"""Profiles: every per-profile switch of the reference wrap server, in one object.

A :class:`Profile` is a frozen record with one field per rule of SPEC.md §3
(H1..H13), one per rule of docs/hostile-users.md (H14..H26, the server's
defences against hostile local users), plus the few switches the historical
and naive variants need.  The
server never compares profile *names*; it reads the switches, e.g.
``if self.profile.peercred_identity:``.

Profiles (SPEC.md §2):

``agentsh``
    agentsh HEAD after PR #235, gaps included (AGENTSH.md B1..B34, G1..G10).
``hardened``
    the design wraplab recommends: each gap closed.
``pre-235``
    before #235: the directory stays root:root 0700, ``caller_uid`` is
    ignored, no peer check.  Multi-user wrap does not work at all.
``permissive``
    the naive fix: directory 0711, sockets 0666, first connection wins.
``accept-once``
    agentsh's peer check, but the accept loop ends at the first wrong-uid peer
    (a denial of service by anyone who can connect first).

Threat model: the profile is chosen by whoever starts the server; nothing a
client sends can change it.
"""

from __future__ import annotations

import dataclasses

__all__ = [
    "Profile",
    "PROFILES",
    "PROFILE_NAMES",
    "get_profile",
    "UID_IDENTITY_BODY",
    "UID_IDENTITY_PEERCRED",
    "UID_IDENTITY_IGNORED",
    "LAYOUT_AGENTSH",
    "LAYOUT_HARDENED",
    "LAYOUT_ROOT_ONLY",
    "LAYOUT_OPEN",
    "CLEANUP_NOTIFY_OWNS",
    "CLEANUP_LAST_LOOP",
    "CLOEXEC_AGENTSH",
    "CLOEXEC_RECVMSG",
    "SIGNAL_RECV_FIRST_FD",
    "SIGNAL_RECV_EXACT",
]

# H1: where the caller's identity comes from.
UID_IDENTITY_BODY = "body"  # the JSON body's caller_uid (absent or 0 = legacy)
UID_IDENTITY_PEERCRED = "peercred"  # SO_PEERCRED of the API connection (TCP: body)
UID_IDENTITY_IGNORED = "ignored"  # pre-235: there is no caller_uid

# H3/H4: how the wrap directory and its sockets are laid out.
LAYOUT_AGENTSH = "agentsh"  # chown dir first, then bind, then chown/chmod sockets by path
LAYOUT_HARDENED = "hardened"  # bind in a server-only dir, lchown/ACL, hand the dir over last
LAYOUT_ROOT_ONLY = "root-only"  # pre-235: dir server-owned 0700, sockets as bound
LAYOUT_OPEN = "open"  # permissive: dir 0711, sockets 0666, server-owned

# H11: who removes the wrap directory.
CLEANUP_NOTIFY_OWNS = "notify-owns"  # notify/ptrace loop end removes it; signal only closes
CLEANUP_LAST_LOOP = "last-loop"  # the last loop of the wrap removes it

# H8: how received fds get FD_CLOEXEC.
CLOEXEC_AGENTSH = "agentsh"  # notify: set after recvmsg; signal: never
CLOEXEC_RECVMSG = "recvmsg"  # every fd atomically, recvmsg(MSG_CMSG_CLOEXEC)

# How the signal socket receives (AGENTSH.md B26 versus SPEC §1 "the same fd receive").
SIGNAL_RECV_FIRST_FD = "first-fd"  # 1-byte buffer, room for one fd, the first is kept
SIGNAL_RECV_EXACT = "exact"  # same rules as notify: exactly one fd, no MSG_CTRUNC


@dataclasses.dataclass(frozen=True)
class Profile:
    """Every switch that differs between profiles.  Field comments name the rule."""

    name: str
    #: H1 -- where the caller uid comes from (see UID_IDENTITY_*).
    caller_identity: str
    #: H2 -- strict uid: int only, 0..4294967294, 65534 refused; else agentsh's
    #: "negative -> 400, no upper bound, uint32 truncation".
    strict_uid: bool
    #: H3 -- directory/socket layout and order (see LAYOUT_*).
    layout: str
    #: H4 -- POSIX ACLs when chown is impossible (else 0711/0666 root-owned).
    use_acl: bool
    #: H4 -- a caller whose uid equals the server's gets server-owned 0700/0600 files.
    same_uid_private: bool
    #: H5 -- validate with lstat: exact mode, owner, type, ACL (else stat bits only).
    strict_validation: bool
    #: H6 -- compare the peer's SO_PEERCRED uid with the expected uid.
    peer_check: bool
    #: H6 (accept-once) -- end the loop at the first wrong-uid peer.
    stop_on_wrong_peer: bool
    #: H7 -- handshake deadline on every accepted socket (else only on ptrace).
    handshake_deadline_all: bool
    #: H7 -- a peer that stalls (no handoff before the deadline, or hangs up without a
    #: byte) is dropped and the loop goes on accepting until the window ends; else the
    #: stalled connection was the loop's one connection (B19) and ends it.
    drop_stalled_peers: bool
    #: H8 -- how received fds become close-on-exec (see CLOEXEC_*).
    cloexec: str
    #: H9 -- the ptrace PID must be the peer or a descendant running as the peer's uid.
    ptrace_pid_bound: bool
    #: H10 -- always validate the notify wrapper PID (PPid == peer, peer uid in its uids).
    validate_wrapper_pid: bool
    #: H11 -- who removes the wrap directory (see CLEANUP_*).
    cleanup: str
    #: H12 -- default listen backlog of the wrap sockets (``--backlog`` overrides).
    backlog: int
    #: H13 -- rate-limit rejection log lines (else one line per rejection).
    rate_limit_logs: bool
    #: Signal socket receive rules (see SIGNAL_RECV_*).
    signal_receive: str
    # -- docs/hostile-users.md: hostile local users (H14..H26) ----------------------
    #: H14 -- cleanup is fd-relative, iterative and bounded (deep trees are flattened,
    #: never recursed), and the wrap's slot is released whatever cleanup finds.
    robust_cleanup: bool = False
    #: H15 -- per-uid quotas on sessions and pending wraps (global caps stay as a backstop).
    per_uid_quotas: bool = False
    #: H16 -- the received fd is read without blocking (MSG_DONTWAIT / O_NONBLOCK), so
    #: SO_RCVLOWAT or any other trick cannot hold the token read past its deadline.
    nonblocking_token_read: bool = False
    #: H17 -- a ptrace ACK ends the wrap (slot, directory, listener); the keepalive is
    #: then held outside the wrap, at most ``keepalives_per_uid`` per uid.
    keepalive_outside_wrap: bool = False
    #: H18 -- refuse to start unless the temp base, the API socket's directory and all
    #: their parents are root's or the server's and writable by nobody else.
    trusted_paths: bool = False
    #: H20 -- byte limits on request fields, on a session's events and on a response.
    byte_limits: bool = False
    #: H21 -- log lines are bounded (each field truncated) and API error lines are
    #: rate-limited per peer uid.
    bounded_logs: bool = False
    #: H22 -- the API has a whole-request deadline, a bounded worker pool and a
    #: per-uid cap on open connections.
    bounded_api: bool = False
    #: H23 -- a session belongs to the SO_PEERCRED uid that created it: only that uid
    #: and root read its events or wrap-init in it; eviction never takes another uid's.
    session_owner: bool = False
    #: H24 -- every file the server creates gets an explicit mode whatever the umask,
    #: and a umask that would break the API is reported.
    explicit_modes: bool = False
    #: H25 -- the TCP API refuses browser-shaped requests (Origin, non-loopback Host,
    #: a Content-Type other than application/json).
    refuse_browsers: bool = False
    #: H26 -- the log file is opened with O_NOFOLLOW (and never through a symlink).
    log_nofollow: bool = False

    @property
    def peercred_identity(self) -> bool:
        """True when the API connection's SO_PEERCRED names the caller (H1)."""
        return self.caller_identity == UID_IDENTITY_PEERCRED

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_AGENTSH = Profile(
    name="agentsh",
    caller_identity=UID_IDENTITY_BODY,
    strict_uid=False,
    layout=LAYOUT_AGENTSH,
    use_acl=False,
    same_uid_private=False,
    strict_validation=False,
    peer_check=True,
    stop_on_wrong_peer=False,
    handshake_deadline_all=False,
    drop_stalled_peers=False,
    cloexec=CLOEXEC_AGENTSH,
    ptrace_pid_bound=False,
    validate_wrapper_pid=False,
    cleanup=CLEANUP_NOTIFY_OWNS,
    backlog=4096,  # Go's net.Listen uses somaxconn (4096 on current kernels)
    rate_limit_logs=False,
    signal_receive=SIGNAL_RECV_FIRST_FD,
    # H14: Go's os.RemoveAll is fd-relative (openat/unlinkat) and has no recursion
    # limit, so agentsh does not share the reference's rmtree RecursionError.
    robust_cleanup=True,
    # H16: agentsh does not read the received fd; it uses it (seccomp ioctls fail at
    # once on a wrong fd), so a blocking read is the reference's own stand-in.
    nonblocking_token_read=True,
)

_HARDENED = Profile(
    name="hardened",
    caller_identity=UID_IDENTITY_PEERCRED,
    strict_uid=True,
    layout=LAYOUT_HARDENED,
    use_acl=True,
    same_uid_private=True,
    strict_validation=True,
    peer_check=True,
    stop_on_wrong_peer=False,
    handshake_deadline_all=True,
    drop_stalled_peers=True,
    cloexec=CLOEXEC_RECVMSG,
    ptrace_pid_bound=True,
    validate_wrapper_pid=True,
    cleanup=CLEANUP_LAST_LOOP,
    backlog=8,
    rate_limit_logs=True,
    signal_receive=SIGNAL_RECV_EXACT,
    robust_cleanup=True,
    per_uid_quotas=True,
    nonblocking_token_read=True,
    keepalive_outside_wrap=True,
    trusted_paths=True,
    byte_limits=True,
    bounded_logs=True,
    bounded_api=True,
    session_owner=True,
    explicit_modes=True,
    refuse_browsers=True,
    log_nofollow=True,
)

PROFILES = {
    p.name: p
    for p in (
        _HARDENED,
        _AGENTSH,
        dataclasses.replace(
            _AGENTSH,
            name="pre-235",
            caller_identity=UID_IDENTITY_IGNORED,
            layout=LAYOUT_ROOT_ONLY,
            peer_check=False,
        ),
        dataclasses.replace(_AGENTSH, name="permissive", layout=LAYOUT_OPEN, peer_check=False),
        dataclasses.replace(_AGENTSH, name="accept-once", stop_on_wrong_peer=True),
    )
}

PROFILE_NAMES = tuple(PROFILES)


def get_profile(name_or_profile) -> Profile:
    """Return the profile called *name_or_profile* (or the Profile itself)."""
    if isinstance(name_or_profile, Profile):
        return name_or_profile
    try:
        return PROFILES[name_or_profile]
    except KeyError:
        choices = ", ".join(PROFILE_NAMES)
        raise ValueError(f"unknown profile {name_or_profile!r} (choose from {choices})") from None
