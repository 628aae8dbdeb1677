"""The axes of the matrix and the options a scenario may set, each declared once.

A cell is one point on the axes (profile × socket × placement × transport × lab × base). A
scenario picks its sockets, placements and transports (the target's axes, declared in
:mod:`wraplab.targets`), and may set the :data:`SERVER_OPTIONS`: each is either passed to
the lab's :class:`~wraplab.labs.ServerSpec` (``where == "server"``) or read by the engine
(``where == "engine"``).
"""

from __future__ import annotations

from wraplab.targets import PLACEMENTS, PROFILES, SOCKETS, TRANSPORTS

__all__ = ["PROFILES", "SOCKETS", "PLACEMENTS", "TRANSPORTS", "LABS", "BASES", "USER_ROLES",
           "SERVER_OPTIONS", "server_options", "engine_options", "GUARDS"]

LABS = ("docker", "local")
BASES = ("bookworm", "trixie")
#: users.conf roles a scenario actor may be played by (plus root).
USER_ROLES = ("owner", "bystander", "attacker", "service", "overflow", "root")

#: What a scenario's ``SERVER`` may set: name -> (where it goes, what it is).
SERVER_OPTIONS = {
    "accept_window": ("server", "seconds each accept loop waits (the server's window)"),
    "handshake_timeout": ("server", "seconds an admitted peer has for its handshake"),
    "backlog": ("server", "listen backlog of the wrap sockets"),
    "userns": ("server", "actors may create user namespaces (seccomp relaxed)"),
    "peer": ("server", "a second container sharing the socket directory (Docker)"),
    "peer_shares_pids": ("server", "the peer container shares the server's PID namespace"),
    "server_userns": ("server", "roles mapped into the server's own user namespace"),
    "umask": ("server", "the umask the server starts under (e.g. 0o077)"),
    "nofile": ("server", "the server's open-file limit (RLIMIT_NOFILE, soft and hard)"),
    "client_budget": ("engine", "seconds the owner's client has for its handoffs once it "
                                "dials (default 4)"),
}


def server_options(server: dict) -> dict:
    """The scenario's options that go to the lab's ServerSpec."""
    return {k: v for k, v in server.items() if SERVER_OPTIONS[k][0] == "server"}


def engine_options(server: dict) -> dict:
    """The scenario's options the engine reads itself."""
    return {k: v for k, v in server.items() if SERVER_OPTIONS[k][0] == "engine"}


#: What can stop an attack (a verdict's ``guard``), and what it means.
GUARDS = {
    "kernel": "the kernel refused the attacker (directory/socket mode or ACL: EACCES)",
    "peer-check": "the server compared the peer's SO_PEERCRED uid and closed on it (H6)",
    "peercred": "over the Unix API the server took the caller from SO_PEERCRED (H1: 403)",
    "uid-range": "the server refused the caller uid (H2)",
    "validation": "the server's own check of what it made (lstat: mode, owner, type; H5)",
    "handshake-deadline": "an admitted peer that stalled was dropped in time (H7)",
    "handshake": "the server refused a malformed handoff",
    "pid-check": "the wrapper or ptrace pid was not the peer's own (H9, H10)",
    "cloexec": "every received fd was close-on-exec from the start (H8)",
    "cleanup": "the server released everything when the window ended",
    "layout": "the server never handed the directory to the caller while it bound sockets",
    "ignored": "the server ignored the claim",
    "rate-limit": "rejections were counted, their log lines rate-limited (H13)",
    "backlog": "the owner got through a flood that reached the server (H12)",
    "client-check": "the owner's client found a listener that is not the server "
                    "(SO_PEERCRED) and handed nothing over (H19)",
    "trusted-paths": "the server refused to start on a directory another user owns or can "
                     "write, with a message naming it (H18)",
    "api-bounds": "the API served the owner while one uid held connections: per-uid and "
                  "total workers bounded, whole-request deadline (H22)",
    "explicit-modes": "every file the server made had its mode set whatever the umask, and "
                      "an unusual umask was reported (H24)",
    "nofollow": "the server would not open its log through a symlink (O_NOFOLLOW) and "
                "refused to start (H26)",
}
