"""One test per hardened rule (SPEC.md §3, H1..H13), parametrized over all five profiles.

Each test states what every profile is expected to do, so it fails on a profile that
lacks the rule *and* on a hardened server that stops enforcing it.  Real second users
(owner 1001, intruder 1003) act through forked children that setuid.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat

import pytest
from wrapref import wire
from wrapref import wrapdir as wd
from wrapref.client import WrapClient
from wrapref.profiles import PROFILES
from wrapref.server import Wrap

from .helpers import (
    INTRUDER_UID,
    OWNER_UID,
    Actor,
    connect_unix,
    holds_for,
    need_root,
    notify_attempt,
    run_as,
    token_pipe,
    wait_for,
)
from .test_wrapdir import NoChown, NoChownNoAcl

ALL = ["hardened", "agentsh", "pre-235", "permissive", "accept-once"]
WRAP = "/api/v1/sessions/%s/wrap-init"


def expect(table: dict):
    """parametrize (profile, expected) from a {profile: expected} table covering ALL."""
    assert set(table) == set(ALL)
    return pytest.mark.parametrize("profile,expected", [(p, table[p]) for p in ALL])


def with_wrapdir(srv, cls) -> None:
    srv.wrap_class = type("TestWrap", (Wrap,), {"wrapdir_class": cls})


def sleeper(seconds: float = 20.0):
    select.select([], [], [], seconds)
    return True


def intruder_then_owner(s, sid, path):
    """The intruder hands off on ``path`` first, then the owner dials once:
    ``("EACCES" | "served" | "rejected", the owner's client result)``."""
    out = run_as(INTRUDER_UID, notify_attempt, path, "tok-intruder")
    if out["errno"] == "EACCES":
        intruder = "EACCES"
    elif out["status"] == wire.STATUS_OK:
        intruder = "served"
    else:
        s.wait_event(sid, "peer_rejected")
        intruder = "rejected"
    owner = run_as(OWNER_UID, lambda: WrapClient(sockets={"notify": path}, timeout=3,
                                                 dial="once").run())
    return intruder, owner


# ------------------------------------------------------------------------- H1


@expect({
    "hardened": (403, None, "peercred"),
    "agentsh": (200, "body", "legacy"),
    "accept-once": (200, "body", "legacy"),
    "permissive": (200, "body", "legacy"),
    "pre-235": (200, "legacy", "legacy"),
})
def test_h1_caller_identity(servers, profile, expected):
    """An intruder claiming the owner's uid; an owner sending no caller_uid."""
    need_root()
    s = servers(profile)
    sid = s.new_session()
    status, body = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=INTRUDER_UID)
    source = s.events(sid, "wrap_init")[0]["uid_source"] if status == 200 else None
    status2, _ = s.wrap_init(sid, {}, uid=OWNER_UID)
    assert status2 == 200
    inits = s.events(sid, "wrap_init")
    absent = inits[-1]["uid_source"]
    assert (status, source, absent) == expected
    if profile == "hardened":
        assert "does not match" in body["error"]
        assert inits[-1]["caller_uid"] == OWNER_UID  # the old client is protected too
    elif source == "body":
        assert inits[0]["caller_uid"] == OWNER_UID  # spoof accepted


# ------------------------------------------------------------------------- H2

H2_UIDS = [65534, 4294967295, 2**32, 2**40, True]


@expect({
    "hardened": [400, 400, 400, 400, 400],
    "agentsh": [200, 200, 200, 200, 400],
    "accept-once": [200, 200, 200, 200, 400],
    "permissive": [200, 200, 200, 200, 400],
    "pre-235": [200, 200, 200, 200, 200],
})
def test_h2_uid_ranges(servers, profile, expected):
    s = servers(profile)
    sid = s.new_session()
    got = []
    for uid in H2_UIDS:
        status, body = s.call("POST", WRAP % sid, {"caller_uid": uid})
        got.append(status)
        if status == 400 and uid is not True:
            assert body["error"].startswith(f"invalid caller uid: {uid}")
    assert got == expected
    assert s.call("POST", WRAP % sid, {"caller_uid": -1})[0] == (200 if profile == "pre-235"
                                                                 else 400)


# ------------------------------------------------------------------------- H3


class Swapper(wd.WrapDir):
    """Right after bind, the owner (a real uid-1001 process) tries the symlink swap."""

    canary = None
    swaps = None

    def bind(self, path):
        sock = super().bind(path)

        def attack(path, canary):
            try:
                os.unlink(path)
                os.symlink(canary, path)
                return "swapped"
            except OSError as exc:
                return errno.errorcode[exc.errno]

        self.swaps.append(run_as(OWNER_UID, attack, path, self.canary))
        return sock


@expect({
    "agentsh": ("swapped", OWNER_UID, 0o600),
    "accept-once": ("swapped", OWNER_UID, 0o600),
    "hardened": ("EACCES", 0, 0o644),
    "pre-235": ("EACCES", 0, 0o644),
    "permissive": ("EACCES", 0, 0o644),
})
def test_h3_symlink_swap_between_bind_and_chown(base_dir, profile, expected):
    need_root()
    canary = os.path.join(base_dir, "canary")
    with open(canary, "w") as fh:
        fh.write("root's file\n")
    os.chmod(canary, 0o644)
    base = os.path.join(base_dir, "t")
    os.mkdir(base)
    os.chmod(base, 0o755)
    cls = type("S", (Swapper,), {"canary": canary, "swaps": []})
    d = cls(base, "sess", PROFILES[profile], OWNER_UID, backlog=8)
    try:
        d.create_dir()
        d.add_socket("notify")
        try:
            d.finish()
        except wd.ValidationError:
            pass
    finally:
        d.remove()
    st = os.stat(canary)
    assert (cls.swaps[0], st.st_uid, stat.S_IMODE(st.st_mode)) == expected
    assert os.listdir(base) == []


@expect({
    "agentsh": OWNER_UID, "accept-once": OWNER_UID,
    "hardened": 0, "pre-235": 0, "permissive": 0,
})
def test_h3_directory_owner_when_sockets_are_bound(base_dir, profile, expected):
    need_root()
    seen = []

    class Spy(wd.WrapDir):
        def bind(self, path):
            seen.append(os.lstat(os.path.dirname(path)).st_uid)
            return super().bind(path)

    d = Spy(base_dir, "s", PROFILES[profile], OWNER_UID, backlog=8)
    try:
        d.create_dir()
        d.add_socket("notify")
        d.add_socket("signal")
        d.finish()
    finally:
        d.remove()
    assert seen == [expected, expected]


# ------------------------------------------------------------------------- H4


@expect({
    "hardened": ("acl", "EACCES", True),
    "agentsh": ("none", "rejected", True),
    "accept-once": ("none", "rejected", False),
    "permissive": ("none", "served", False),
    "pre-235": ("same-uid", "EACCES", False),
})
def test_h4_without_cap_chown(servers, profile, expected):
    """chown impossible: hardened grants exactly the owner with ACLs."""
    need_root()
    s = servers(profile)
    with_wrapdir(s.srv, NoChown)
    sid = s.new_session()
    status, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    assert status == 200
    path = resp["notify_socket"]
    if profile == "hardened":
        assert sorted(wd.get_acl(os.path.dirname(path))) == sorted(
            wd.acl_grant(OWNER_UID, 0o1, 0o7))
    intruder, owner = intruder_then_owner(s, sid, path)
    assert (resp["fs_isolation"], intruder, owner["ok"]) == expected


# ------------------------------------------------------------------------- H5


@expect({
    "hardened": ("invalid", "invalid"),
    "agentsh": ("valid", "valid"),
    "accept-once": ("valid", "valid"),
    "permissive": ("valid", "valid"),  # validates nothing
    "pre-235": ("valid", "valid"),
})
def test_h5_validation_sees_owner_and_type(base_dir, profile, expected):
    need_root()
    got = []
    for tamper in ("symlink", "owner"):
        d = wd.WrapDir(base_dir, "s", PROFILES[profile], OWNER_UID, backlog=8)
        try:
            d.create_dir()
            d.add_socket("notify")
            d.finish()
            path = d.sockets["notify"]
            want = stat.S_IMODE(os.stat(path).st_mode)
            if tamper == "symlink":  # a file with the right mode, through a symlink
                target = os.path.join(base_dir, "target")
                open(target, "w").close()
                os.chmod(target, want)
                os.unlink(path)
                os.symlink(target, path)
            else:  # the right mode, the wrong owner
                os.lchown(path, INTRUDER_UID, -1)
            try:
                d.validate()
                got.append("valid")
            except wd.ValidationError:
                got.append("invalid")
        finally:
            d.remove()
    assert tuple(got) == expected


# ------------------------------------------------------------------------- H6


@expect({
    "hardened": ("rejected", True),
    "agentsh": ("rejected", True),
    "accept-once": ("rejected", False),
    "permissive": ("served", False),
    "pre-235": ("EACCES", False),
})
def test_h6_wrong_uid_peer(servers, profile, expected):
    need_root()
    s = servers(profile)
    with_wrapdir(s.srv, NoChownNoAcl)  # sockets reachable by all: the peer check decides
    sid = s.new_session()
    status, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    path = resp["notify_socket"]
    intruder, owner = intruder_then_owner(s, sid, path)
    assert (intruder, owner["ok"]) == expected
    if intruder == "served":
        assert s.events(sid, "handoff_ok")[0]["token"] == "tok-intruder"


# ------------------------------------------------------------------------- H7


@expect({"hardened": "timeout", "agentsh": "waiting", "accept-once": "waiting",
         "permissive": "waiting", "pre-235": "waiting"})
def test_h7_handshake_deadline(servers, profile, expected):
    s = servers(profile, handshake_timeout=0.3, accept_window=2)
    sid = s.new_session()
    status, resp = s.call("POST", WRAP % sid, {})
    sock = connect_unix(resp["notify_socket"])  # admitted (root/legacy), then silent
    try:
        if holds_for(lambda: not s.events(sid, "peer_dropped")
                     and not s.events(sid, "handoff_failed"), 0.9):
            got = "waiting"
            assert os.path.isdir(os.path.dirname(resp["notify_socket"]))
        else:
            ev = (s.events(sid, "peer_dropped") or s.events(sid, "handoff_failed"))[0]
            got = ev["reason"]
            sock.settimeout(2)
            assert sock.recv(1) == bytes([wire.STATUS_FAIL])
    finally:
        sock.close()
    assert got == expected
    s.wait_event(sid, "dir_removed")


@expect({"hardened": "served", "agentsh": "lost", "accept-once": "lost",
         "permissive": "lost", "pre-235": "lost"})
@pytest.mark.parametrize("kind", ["notify", "ptrace"])
def test_h7_stalled_peer_does_not_cost_the_owner_the_wrap(servers, profile, expected, kind):
    """A silent peer is dropped at the deadline and the loop still serves the owner."""
    s = servers(profile, handshake_timeout=0.3, accept_window=5, ptrace_mode=kind == "ptrace")
    sid = s.new_session()
    _status, resp = s.call("POST", WRAP % sid, {})
    path = resp["notify_socket"]
    ended = lambda: s.events(sid, "peer_dropped") or s.events(sid, "handoff_failed")  # noqa: E731
    with connect_unix(path):  # admitted (root/legacy), sends nothing
        # No deadline on notify outside hardened: the staller then leaves by itself.
        if kind == "ptrace" or profile == "hardened":
            assert wait_for(ended, 3, what="the stall's end")[0]["reason"] == "timeout"
    wait_for(ended, 3, what="the stall's end")
    if kind == "notify":
        wrapper = Actor(None, sleeper)  # a child of this process, for H10
        try:
            got = notify_attempt(path, "tok-owner", wrapper_pid=wrapper.pid)
        finally:
            wrapper.kill()
        served = got["status"] == wire.STATUS_OK
    else:
        try:
            with connect_unix(path) as sock:
                sock.sendall(wire.encode_pid(os.getpid()))
                served = sock.recv(1) == bytes([wire.ACK])
        except OSError:
            served = False
    assert ("served" if served else "lost") == expected
    if served:
        ev = s.wait_event(sid, "handoff_ok")
        assert ev["token"] == ("tok-owner" if kind == "notify" else None)
        assert [e["reason"] for e in s.events(sid, "peer_dropped")] == ["timeout"]
    else:
        assert not s.events(sid, "peer_dropped")
    s.wait_event(sid, "dir_removed")


@expect({"hardened": ("peer_dropped", "eof"), "agentsh": ("handoff_failed", "eof"),
         "accept-once": ("handoff_failed", "eof"), "permissive": ("handoff_failed", "eof"),
         "pre-235": ("handoff_failed", "eof")})
def test_h7_peer_that_hangs_up_without_a_byte(servers, profile, expected):
    s = servers(profile, handshake_timeout=5, accept_window=3)
    sid = s.new_session()
    _status, resp = s.call("POST", WRAP % sid, {})
    connect_unix(resp["notify_socket"]).close()
    ev = wait_for(lambda: s.events(sid, "peer_dropped") or s.events(sid, "handoff_failed"),
                  3, what="the hang-up's event")[0]
    assert (ev["type"], ev["reason"]) == expected
    if ev["type"] == "peer_dropped":  # the loop still waits, until its window ends
        assert os.path.isdir(os.path.dirname(resp["notify_socket"]))
        assert s.wait_event(sid, "window_expired", timeout=5)
    s.wait_event(sid, "dir_removed", timeout=6)


# ------------------------------------------------------------------------- H8


@expect({"hardened": True, "agentsh": False, "accept-once": False, "permissive": False,
         "pre-235": False})
def test_h8_signal_fd_cloexec(servers, profile, expected):
    s = servers(profile, signal_socket=True)
    sid = s.new_session()
    _status, resp = s.call("POST", WRAP % sid, {})
    fd = token_pipe("sig")
    with connect_unix(resp["signal_socket"]) as sock:
        wire.send_fds(sock, b"\x00", [fd])
    os.close(fd)
    ev = s.wait_event(sid, "handoff_ok", kind="signal")
    assert ev["token"] == "sig" and ev["cloexec"] is expected


# ------------------------------------------------------------------------- H9


@expect({"hardened": ("NACK", "NACK", "ACK"), "agentsh": ("ACK", "ACK", "ACK"),
         "accept-once": ("ACK", "ACK", "ACK"), "permissive": ("ACK", "ACK", "ACK"),
         "pre-235": ("ACK", "ACK", "ACK")})
def test_h9_ptrace_pid_bound_to_peer(servers, profile, expected):
    """pid 1 (not ours); our child running as another uid; our own child."""
    need_root()
    s = servers(profile, ptrace_mode=True)
    other_uid_child = Actor(OWNER_UID, sleeper)
    own_child = Actor(None, sleeper)
    got = []
    try:
        for pid in (1, other_uid_child.pid, own_child.pid):
            sid = s.new_session()
            _status, resp = s.call("POST", WRAP % sid, {})
            with connect_unix(resp["notify_socket"]) as sock:
                sock.sendall(wire.encode_pid(pid))
                got.append({1: "ACK", 0: "NACK"}[sock.recv(1)[0]])
            s.wait_event(sid, "dir_removed")
            if got[-1] == "NACK":
                assert s.events(sid, "handoff_failed")[0]["reason"] == "pid_not_peer"
    finally:
        other_uid_child.kill()
        own_child.kill()
    assert tuple(got) == expected


# ------------------------------------------------------------------------ H10


@expect({"hardened": (0, 0, 1), "agentsh": (1, 1, 1), "accept-once": (1, 1, 1),
         "permissive": (1, 1, 1), "pre-235": (1, 1, 1)})
def test_h10_wrapper_pid_validated(servers, profile, expected):
    """Metadata pid: pid 1; our own pid (not our child); a real child of ours."""
    s = servers(profile)
    child = Actor(None, sleeper)
    got = []
    try:
        for pid in (1, os.getpid(), child.pid):
            sid = s.new_session()
            _status, resp = s.call("POST", WRAP % sid, {})
            out = notify_attempt(resp["notify_socket"], "t", wrapper_pid=pid)
            got.append(out["status"])
            ev = s.wait_event(sid, "handoff_ok") if out["status"] else s.wait_event(
                sid, "handoff_failed")
            if out["status"]:
                assert ev["wrapper_pid"] == pid  # G5: trusted unvalidated
            else:
                assert ev["reason"] == "bad_wrapper_pid"
    finally:
        child.kill()
    assert tuple(got) == expected


# ------------------------------------------------------------------------ H11


@expect({"hardened": "ok", "agentsh": "ENOENT", "accept-once": "ENOENT",
         "permissive": "ENOENT", "pre-235": "ENOENT"})
def test_h11_directory_outlives_pending_signal_loop(servers, profile, expected):
    s = servers(profile, signal_socket=True)
    sid = s.new_session()
    _status, resp = s.call("POST", WRAP % sid, {})
    wrapper = Actor(None, sleeper)
    try:
        out = notify_attempt(resp["notify_socket"], "n", wrapper_pid=wrapper.pid)
        assert out["status"] == wire.STATUS_OK
    finally:
        wrapper.kill()
    s.wait_event(sid, "handoff_ok", kind="notify")
    if expected == "ENOENT":
        s.wait_event(sid, "dir_removed")  # G8: right after the notify ACK
    fd = token_pipe("sig")
    try:
        with connect_unix(resp["signal_socket"]) as sock:
            wire.send_fds(sock, b"\x00", [fd])
        got = "ok"
    except OSError as exc:
        got = errno.errorcode[exc.errno]
    finally:
        os.close(fd)
    assert got == expected
    if got == "ok":
        assert s.wait_event(sid, "handoff_ok", kind="signal")["token"] == "sig"
        s.wait_event(sid, "dir_removed")


# ------------------------------------------------------------------------ H12


@expect({"hardened": 9, "agentsh": None, "accept-once": None, "permissive": None,
         "pre-235": None})
def test_h12_listen_backlog(base_dir, profile, expected):
    """Non-blocking connects that queue before EAGAIN (None: more than 64)."""
    d = wd.WrapDir(base_dir, "s", PROFILES[profile], 0, backlog=PROFILES[profile].backlog)
    socks = []
    try:
        d.create_dir()
        d.add_socket("notify")
        d.finish()
        queued = None
        for i in range(65):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            socks.append(c)
            try:
                c.connect(d.sockets["notify"])
            except BlockingIOError:
                queued = i
                break
    finally:
        for c in socks:
            c.close()
        d.remove()
    assert queued == expected


def test_h12_backlog_option_overrides(servers):
    s = servers("agentsh", backlog=2)
    assert s.srv.backlog == 2
    assert servers("hardened").srv.backlog == 8
    assert servers("agentsh").srv.backlog == 4096


# ------------------------------------------------------------------------ H13


@expect({"hardened": (True, 20), "agentsh": (20, 20), "accept-once": (1, 1),
         "permissive": (0, 0), "pre-235": (0, 0)})
def test_h13_rejection_logs_rate_limited(servers, profile, expected):
    """20 wrong-uid connections: log lines and the final per-uid count."""
    s = servers(profile, extra_apis=["tcp:127.0.0.1:0"], accept_window=2)
    tcp = [a for a in s.srv.bound_apis if a.startswith("tcp:")][0]
    from wrapref.client import http_request

    sid = s.new_session()
    status, resp = http_request(tcp, "POST", WRAP % sid, {"caller_uid": 99999})
    assert status == 200
    for _ in range(20):
        try:
            with connect_unix(resp["notify_socket"], 0.3) as sock:
                sock.recv(1)
        except OSError:  # refused (loop ended) or admitted and waiting (timeout)
            break
        if s.events(sid, "handoff_ok") or s.events(sid, "handoff_failed"):
            break
    lines = [r for r in s.logs("rejecting") if r["level"] == "warn"]
    rejected = s.events(sid, "peer_rejected")
    count = rejected[-1]["count"] if rejected else 0
    if expected[0] is True:
        assert 3 <= len(lines) <= 5 and lines[-1]["count"] >= 3
        assert count == expected[1]
    else:
        assert (len(lines), count) == expected


def test_rejection_events_are_bounded(servers):
    s = servers("agentsh", accept_window=1.5)
    sid = s.new_session()
    _status, resp = s.call("POST", WRAP % sid, {"caller_uid": 99999})
    n = 0
    while n < 230:
        with connect_unix(resp["notify_socket"], 1) as sock:
            sock.recv(1)
        n += 1
    ev = s.wait_event(sid, "window_expired", timeout=5)
    assert ev["rejections"] == 230
    rejected = s.events(sid, "peer_rejected")
    assert len(rejected) == 200 and rejected[-1]["count"] == 200
    wait_for(lambda: s.events(sid, "dir_removed"))
