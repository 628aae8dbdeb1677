"""Accept loops and handshakes, with real second users (forked children that setuid).

What agentsh's wrap_linux_test.go checks -- wrong UID rejected and the loop goes on
(notify, signal, ptrace), matching UID accepted (skipped as root upstream; here it runs
as a real second user), legacy zero UID accepted, status bytes, 0/2/9 fds rejected
with the fd count unchanged, ptrace ACK -- plus window expiry, tokens and cleanup.
"""

from __future__ import annotations

import os
import socket

import pytest
from wrapref import wire
from wrapref.client import WrapClient
from wrapref.server import Wrap

from .helpers import (
    INTRUDER_UID,
    OWNER_UID,
    Actor,
    connect_unix,
    fd_count,
    need_root,
    notify_attempt,
    run_as,
    token_pipe,
    wait_for,
)
from .test_wrapdir import NoChown, NoChownNoAcl


def no_chown(srv) -> None:
    """Make this server's wraps behave as without CAP_CHOWN (agentsh: 0711/0666)."""
    srv.wrap_class = type("NoChownWrap", (Wrap,), {"wrapdir_class": NoChown})


def client(s, **kwargs):
    kwargs.setdefault("timeout", 10)
    return WrapClient(api="unix:" + s.api_path, **kwargs)


def owner_wrap_init(s, sid, body=None, uid=OWNER_UID):
    status, resp = s.wrap_init(sid, body or {}, uid=uid)
    assert status == 200, resp
    return resp


# ------------------------------------------------------------------ matching uid


@pytest.mark.parametrize("profile", ["hardened", "agentsh", "accept-once", "permissive"])
def test_owner_completes_the_handoff(servers, profile):
    need_root()
    s = servers(profile)
    sid = s.new_session()
    result = run_as(OWNER_UID, lambda: client(s, session=sid).run())
    assert result["ok"] and result["step"] == "done" and result["status"] == wire.STATUS_OK
    ok = s.wait_event(sid, "handoff_ok", kind="notify")
    assert (ok["peer_uid"], ok["token"], ok["peer_pid"]) == (OWNER_UID, result["token"],
                                                             result["pid"])
    assert ok["wrapper_pid"] == result["wrapper_pid"]
    s.wait_event(sid, "dir_removed")
    assert s.wrap_dirs() == []
    init = s.events(sid, "wrap_init")[0]
    assert init["caller_uid"] == OWNER_UID
    assert init["uid_source"] == ("peercred" if profile == "hardened" else "body")


def test_matching_uid_accepted_on_reachable_socket(servers):
    # agentsh's AcceptsMatchingUID (skipped as root upstream): fallback modes, real uid.
    need_root()
    s = servers("agentsh")
    no_chown(s.srv)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": OWNER_UID}, uid=None)
    out = run_as(OWNER_UID, notify_attempt, resp["notify_socket"], "tok-owner")
    assert out["status"] == wire.STATUS_OK
    assert s.wait_event(sid, "handoff_ok")["token"] == "tok-owner"


# ------------------------------------------------- wrong uid: rejected, loop goes on


@pytest.mark.parametrize("profile", ["agentsh", "hardened"])
def test_notify_rejects_wrong_uid_and_continues(servers, profile):
    need_root()
    s = servers(profile)
    # No chown and no ACLs: the sockets are 0666, only the peer check stands.
    s.srv.wrap_class = type("OpenWrap", (Wrap,), {"wrapdir_class": NoChownNoAcl})
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    path = resp["notify_socket"]
    assert resp["fs_isolation"] == "none"
    for _ in range(2):
        out = run_as(INTRUDER_UID, notify_attempt, path, "tok-intruder")
        assert out["connected"] and out["status"] is None  # closed, nothing written
    rej = s.events(sid, "peer_rejected")
    assert [(e["peer_uid"], e["expected_uid"], e["count"], e["kind"]) for e in rej] == [
        (INTRUDER_UID, OWNER_UID, 1, "notify"), (INTRUDER_UID, OWNER_UID, 2, "notify")]
    assert all(e["peer_pid"] > 0 for e in rej)
    result = run_as(OWNER_UID, lambda: client(s, sockets={"notify": path}).run())
    assert result["ok"], result
    ok = s.wait_event(sid, "handoff_ok")
    assert ok["token"] == result["token"] and ok["rejections"] == 2
    assert not s.events(sid, "handoff_ok", token="tok-intruder")


def test_signal_rejects_wrong_uid_and_continues(servers):
    s = servers("agentsh", signal_socket=True)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": 99999}, uid=None)
    path = resp["signal_socket"]
    for _ in range(2):  # root is the "wrong uid" here, as in agentsh's own test
        with connect_unix(path) as sock:
            assert sock.recv(1) == b""
    assert len(s.events(sid, "peer_rejected", kind="signal")) == 2
    assert s.wrap_dirs() != []  # still waiting for uid 99999


def test_ptrace_rejects_wrong_uid_and_continues(servers):
    need_root()
    s = servers("agentsh", ptrace_mode=True)
    no_chown(s.srv)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": OWNER_UID}, uid=None)
    path = resp["notify_socket"]

    def ptrace_attempt(pid):
        with connect_unix(path) as sock:
            try:
                sock.sendall(wire.encode_pid(pid))
                return list(sock.recv(1))
            except (ConnectionResetError, BrokenPipeError):  # closed unread (B17)
                return []

    for _ in range(2):
        assert run_as(INTRUDER_UID, ptrace_attempt, 1) == []
    assert len(s.events(sid, "peer_rejected", kind="ptrace")) == 2
    result = run_as(OWNER_UID, lambda: client(s, sockets={"ptrace": path}).run())
    assert result["ok"] and result["status"] == wire.ACK
    ok = s.wait_event(sid, "handoff_ok", kind="ptrace")
    assert ok["pid"] == result["wrapper_pid"] and ok["token"] is None and ok["rejections"] == 2
    s.wait_event(sid, "dir_removed")


def test_intruder_cannot_even_reach_a_chowned_socket(servers):
    need_root()
    s = servers("agentsh")
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": OWNER_UID}, uid=None)
    assert resp["fs_isolation"] == "chown"
    out = run_as(INTRUDER_UID, notify_attempt, resp["notify_socket"], "tok")
    assert out == {"connected": False, "errno": "EACCES", "status": None, "eof": False}
    assert s.events(sid, "peer_rejected") == []  # stopped by the kernel, not the server


# ---------------------------------------------------------------------- legacy


@pytest.mark.parametrize("body", [{}, {"caller_uid": 0}])
def test_legacy_zero_uid_accepts_anyone(servers, body):
    need_root()
    s = servers("agentsh")
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, body, uid=None)
    assert resp["fs_isolation"] == "none"
    out = run_as(INTRUDER_UID, notify_attempt, resp["notify_socket"], "tok-x")
    assert out["status"] == wire.STATUS_OK
    ok = s.wait_event(sid, "handoff_ok")
    assert (ok["peer_uid"], ok["token"]) == (INTRUDER_UID, "tok-x")
    assert s.events(sid, "wrap_init")[0]["uid_source"] == "legacy"


# ------------------------------------------------------------------ malformed fds


@pytest.mark.parametrize("profile", ["agentsh", "hardened"])
@pytest.mark.parametrize("nfds,reason", [(0, "no_fds"), (2, "too_many_fds"), (9, "ctrunc")])
def test_bad_fd_counts_get_status_0_and_leak_nothing(servers, profile, nfds, reason):
    s = servers(profile)
    sid = s.new_session()
    before = fd_count()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    payload = wire.encode_metadata(os.getpid())
    out = notify_attempt(resp["notify_socket"], "t", nfds=nfds, payload=payload)
    assert out["status"] == wire.STATUS_FAIL
    failed = s.wait_event(sid, "handoff_failed")
    assert failed["reason"] == reason and failed["peer_uid"] == os.getuid()
    s.wait_event(sid, "dir_removed")
    wait_for(lambda: s.srv.live_wraps() == 0, what="loop ended")
    assert fd_count() == before
    assert not s.events(sid, "handoff_ok")


def test_signal_receive_rules_differ(servers):
    # agentsh keeps the first of several fds on the signal socket (B26); hardened
    # applies the notify rules (exactly one fd, no MSG_CTRUNC).
    results = {}
    for profile in ("agentsh", "hardened"):
        s = servers(profile, signal_socket=True)
        sid = s.new_session()
        resp = owner_wrap_init(s, sid, {}, uid=None)
        fds = [token_pipe(f"sig-{profile}") for _ in range(2)]
        with connect_unix(resp["signal_socket"]) as sock:
            wire.send_fds(sock, b"\x00", fds)
        wire.close_fds(fds)
        ev = wait_for(lambda s=s, sid=sid: [e for e in s.events(sid)
                                            if e["type"].startswith("handoff_")])[0]
        results[profile] = (ev["type"], ev.get("reason"))
    assert results == {"agentsh": ("handoff_ok", None),
                       "hardened": ("handoff_failed", "too_many_fds")}


@pytest.mark.parametrize("profile,expect", [("agentsh", 1), ("hardened", 0)])
@pytest.mark.parametrize("payload", [b"\x00", b"\xa7\x01\x02", b"\x11\x22\x33\x44\x55\x66"])
def test_legacy_and_short_payloads(servers, profile, expect, payload):
    s = servers(profile)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    out = notify_attempt(resp["notify_socket"], "tok", payload=payload)
    assert out["status"] == expect
    if expect:
        assert s.wait_event(sid, "handoff_ok")["wrapper_pid"] == os.getpid()  # B23: peer pid
    else:
        assert s.wait_event(sid, "handoff_failed")["reason"] == "no_metadata"


def test_unreadable_token_fails_the_handoff(servers):
    s = servers("agentsh", handshake_timeout=0.3)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    r, w = os.pipe()  # the write end stays open and silent
    try:
        with connect_unix(resp["notify_socket"]) as sock:
            wire.send_fds(sock, wire.encode_metadata(os.getpid()), [r])
            assert sock.recv(1) == bytes([wire.STATUS_FAIL])
    finally:
        os.close(r)
        os.close(w)
    assert s.wait_event(sid, "handoff_failed")["reason"] == "token_unreadable"


# ------------------------------------------------------------------------ ptrace


@pytest.mark.parametrize("pid,reason", [(0, "bad_pid"), (-1, "bad_pid"),
                                        (2**22 + 777, "bad_pid")])
def test_ptrace_nack(servers, pid, reason):
    s = servers("agentsh", ptrace_mode=True)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    with connect_unix(resp["notify_socket"]) as sock:
        sock.sendall(wire.encode_pid(pid))
        assert sock.recv(1) == bytes([wire.NACK])
    ev = s.wait_event(sid, "handoff_failed")
    assert (ev["reason"], ev["pid"]) == (reason, pid)


def test_ptrace_short_read_nacks_after_deadline(servers):
    s = servers("agentsh", ptrace_mode=True, handshake_timeout=0.3)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    with connect_unix(resp["notify_socket"]) as sock:
        sock.sendall(b"\x01\x02")
        assert sock.recv(1) == bytes([wire.NACK])
    assert s.wait_event(sid, "handoff_failed")["reason"] == "timeout"


def test_ptrace_ack_then_keepalive_until_client_closes(servers):
    s = servers("agentsh", ptrace_mode=True)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    sock = connect_unix(resp["notify_socket"])
    try:
        sock.sendall(wire.encode_pid(os.getpid()))
        assert sock.recv(1) == bytes([wire.ACK])
        ok = s.wait_event(sid, "handoff_ok")
        assert (ok["pid"], ok["attach"]) == (os.getpid(), "simulated")
        sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sock.recv(1)  # the server holds the connection open
        assert s.events(sid, "dir_removed") == []
    finally:
        sock.close()
    s.wait_event(sid, "dir_removed")


# ------------------------------------------------------------------ window expiry


@pytest.mark.parametrize("profile", ["agentsh", "hardened", "pre-235"])
def test_window_expiry_removes_the_directory(servers, profile):
    s = servers(profile, accept_window=0.3, signal_socket=True)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    assert os.path.isdir(os.path.dirname(resp["notify_socket"]))
    expired = wait_for(lambda: len(s.events(sid, "window_expired")) == 2 and
                       s.events(sid, "window_expired"))
    assert {e["kind"] for e in expired} == {"notify", "signal"}
    assert all(e["rejections"] == 0 for e in expired)
    s.wait_event(sid, "dir_removed")
    assert s.wrap_dirs() == []
    wait_for(lambda: s.srv.live_wraps() == 0, what="loops ended")


def test_rejections_do_not_extend_the_window(servers):
    s = servers("agentsh", accept_window=0.5)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": 99999}, uid=None)

    def hammer():
        n = 0
        while os.path.exists(resp["notify_socket"]):
            try:
                with connect_unix(resp["notify_socket"], 1) as sock:
                    sock.recv(1)
                n += 1
            except OSError:
                break
        return n

    actor = Actor(None, hammer)
    ev = s.wait_event(sid, "window_expired", timeout=3)
    assert ev["rejections"] > 0
    assert actor.result() > 0
    init_ts = s.events(sid, "wrap_init")[0]["ts"]
    assert ev["ts"] - init_ts < 1.5


# --------------------------------------------------------------------- accept-once


def test_accept_once_ends_at_first_wrong_uid(servers):
    s = servers("accept-once")
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {"caller_uid": 99999}, uid=None)
    with connect_unix(resp["notify_socket"]) as sock:
        assert sock.recv(1) == b""
    ev = s.wait_event(sid, "handoff_failed")
    assert ev["reason"] == "wrong_peer" and ev["rejections"] == 1
    s.wait_event(sid, "dir_removed")


# ------------------------------------------------------------------ server stop


def test_stop_removes_pending_and_stalled_wraps(servers):
    s = servers("agentsh", signal_socket=True)
    sid = s.new_session()
    resp = owner_wrap_init(s, sid, {}, uid=None)
    stall = connect_unix(resp["notify_socket"])  # admitted (legacy), then silent
    try:
        s.wait_event(sid, "wrap_init")
        wait_for(lambda: s.srv.live_wraps() == 1)
        s.srv.stop()
        assert s.wrap_dirs() == [] and not os.path.exists(s.api_path)
        kinds = {e["kind"] for e in s.events(sid, "handoff_failed", reason="shutdown")}
        assert kinds == {"notify", "signal"}
    finally:
        stall.close()
