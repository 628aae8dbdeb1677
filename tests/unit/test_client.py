"""The owner's client: dialing (H12), result shape, steps, errno names, modes."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest
from wrapref import wire
from wrapref.client import STEPS, WrapClient, dial

from .helpers import INTRUDER_UID, OWNER_UID, holds_for, need_root, run_as, wait_for

RESULT_KEYS = {"ok", "step", "errno", "error", "http_status", "token", "latency_ms", "session",
               "paths", "uid", "pid", "status", "fs_isolation", "wrap_init"}


def full_listener(path):
    """A listener (backlog 0) whose queue is full; returns (listener, queued clients)."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lst.bind(path)
    lst.listen(0)
    queued = []
    while len(queued) < 64:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    return lst, queued


def test_dial_once_fails_at_once_on_full_backlog_and_retry_waits(base_dir):
    path = os.path.join(base_dir, "full.sock")
    lst, queued = full_listener(path)
    try:
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            dial(path, "once", time.monotonic() + 5)
        assert time.monotonic() - started < 0.5
        result = {}

        def retry():
            try:
                result["sock"] = dial(path, "retry", time.monotonic() + 5)
            except OSError as exc:
                result["errno"] = exc.errno

        t = threading.Thread(target=retry)
        t.start()
        lst.settimeout(5)
        for _ in range(len(queued) + 1):  # the server catches up
            conn, _ = lst.accept()
            conn.close()
        t.join(10)
        assert "sock" in result, result
        sock = result["sock"]
        with sock:
            assert sock.gettimeout() is None  # blocking: bounded by SO_SNDTIMEO instead
            sec, usec = struct.unpack("ll", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("ll")))
            assert 0 < sec + usec / 1e6 <= 5
    finally:
        for c in queued:
            c.close()
        lst.close()


def test_dial_retry_gives_up_at_the_deadline(base_dir):
    path = os.path.join(base_dir, "full.sock")
    lst, queued = full_listener(path)
    try:
        started = time.monotonic()
        with pytest.raises(OSError) as info:
            dial(path, "retry", time.monotonic() + 0.3)
        assert info.value.errno == 11  # EAGAIN
        assert 0.25 <= time.monotonic() - started < 2
    finally:
        for c in queued:
            c.close()
        lst.close()


@pytest.mark.parametrize("mode", ["once", "retry"])
def test_dial_missing_socket(base_dir, mode):
    with pytest.raises(FileNotFoundError):
        dial(os.path.join(base_dir, "none.sock"), mode, time.monotonic() + 0.1)


def test_no_server_reports_step_and_errno(base_dir):
    r = WrapClient(api="unix:" + os.path.join(base_dir, "nope.sock"), timeout=1).run()
    assert set(r) >= RESULT_KEYS
    assert (r["ok"], r["step"], r["errno"]) == (False, "session", "ENOENT")


def test_owner_result_shape(server):
    r = WrapClient(api="unix:" + server.api_path, timeout=5).run()
    assert set(r) >= RESULT_KEYS and r["step"] in STEPS
    assert (r["ok"], r["step"], r["status"], r["errno"], r["error"]) == (True, "done", 1, None,
                                                                         None)
    assert r["paths"] == {"notify": r["wrap_init"]["notify_socket"]}
    assert r["fs_isolation"] == "same-uid" and r["latency_ms"] > 0
    assert (r["uid"], r["pid"]) == (os.getuid(), os.getpid())
    ok = server.wait_event(r["session"], "handoff_ok")
    assert ok["token"] == r["token"] and ok["wrapper_pid"] == r["wrapper_pid"]


def test_wrap_init_refused(server):
    need_root()
    r = run_as(INTRUDER_UID, lambda: WrapClient(api="unix:" + server.api_path,
                                                caller_uid=OWNER_UID, timeout=5).run())
    assert (r["ok"], r["step"], r["http_status"]) == (False, "wrap-init", 403)
    assert "does not match" in r["error"]


def test_intruder_on_owner_socket_gets_eacces(server):
    need_root()
    sid = server.new_session()
    status, resp = server.wrap_init(sid, {}, uid=OWNER_UID)
    assert status == 200 and resp["fs_isolation"] == "chown"
    r = run_as(INTRUDER_UID, lambda: WrapClient(sockets={"notify": resp["notify_socket"]},
                                                timeout=1).run())
    assert (r["ok"], r["step"], r["errno"]) == (False, "connect-notify", "EACCES")
    owner = run_as(OWNER_UID, lambda: WrapClient(sockets={"notify": resp["notify_socket"]},
                                                 timeout=5).run())
    assert owner["ok"]


def test_signal_and_ptrace_modes(servers):
    s = servers("hardened", signal_socket=True)
    r = WrapClient(api="unix:" + s.api_path, timeout=5).run()
    assert r["ok"] and set(r["paths"]) == {"notify", "signal"}
    sig = s.wait_event(r["session"], "handoff_ok", kind="signal")
    assert sig["token"] == r["token"]
    p = servers("hardened", ptrace_mode=True)
    r = WrapClient(api="unix:" + p.api_path, timeout=5).run()
    assert r["ok"] and r["status"] == wire.ACK and set(r["paths"]) == {"ptrace"}
    ok = p.wait_event(r["session"], "handoff_ok", kind="ptrace")
    assert ok["pid"] == r["wrapper_pid"]
    p.wait_event(r["session"], "dir_removed")  # the keepalive ended with the client


@pytest.mark.parametrize("wrapper_pid,hardened_ok", [("child", True), ("self", False)])
def test_wrapper_pid_modes(server, wrapper_pid, hardened_ok):
    r = WrapClient(api="unix:" + server.api_path, wrapper_pid=wrapper_pid, timeout=5).run()
    assert r["ok"] is hardened_ok
    if not hardened_ok:
        assert (r["step"], r["status"], r["error"]) == ("handoff-notify", 0,
                                                        "server rejected wrap setup")


def test_wrap_init_body():
    assert "caller_uid" not in WrapClient(caller_uid=None).wrap_init_body()
    assert WrapClient(caller_uid=5).wrap_init_body()["caller_uid"] == 5
    body = WrapClient(mode="shim").wrap_init_body()
    assert body["mode"] == "shim"
    assert ("caller_uid" in body) is (os.getuid() != 0)  # omitempty, as agentsh


def test_session_option_and_tcp_api(servers):
    s = servers("agentsh", extra_apis=["tcp:127.0.0.1:0"])
    tcp = [a for a in s.srv.bound_apis if a.startswith("tcp:")][0]
    sid = s.new_session("given-id")
    r = WrapClient(api=tcp, session=sid, caller_uid=None, timeout=5).run()
    assert r["ok"] and r["session"] == "given-id"
    assert s.events(sid, "wrap_init")[0]["transport"] == "tcp"


def test_held_client_announces_and_dials_only_when_released(server, base_dir):
    """--announce/--hold-before-dial: the server's answer is written before any dial, no
    connection reaches the socket while the client is held, and the release lets it on."""
    announce = os.path.join(base_dir, "announced.json")
    release = os.path.join(base_dir, "release")
    box = {}
    client = WrapClient(api="unix:" + server.api_path, timeout=5, announce=announce,
                        hold_before_dial=release)
    t = threading.Thread(target=lambda: box.update(r=client.run()))
    t.start()
    try:
        wait_for(lambda: os.path.exists(announce), 5.0, what="the announcement")
        with open(announce, encoding="utf-8") as f:
            info = json.load(f)
        assert set(info["paths"]) == {"notify"} and info["session"]
        assert oct(os.stat(announce).st_mode & 0o777) == "0o600"
        # Held: the loop is live and nobody has dialled (no loop end, nothing accepted).
        assert holds_for(lambda: not server.events(info["session"], "handoff_ok"), 0.3)
        assert t.is_alive()
    finally:
        open(release, "w").close()
        t.join(10)
    r = box["r"]
    assert (r["ok"], r["step"]) == (True, "done")
    assert r["paths"] == info["paths"] and r["held_ms"] >= 300
    assert info["t"] <= r["t_dial"] <= r["t_end"]


def test_held_client_never_released_fails_at_hold(server, base_dir):
    r = WrapClient(api="unix:" + server.api_path, timeout=0.3,
                   hold_before_dial=os.path.join(base_dir, "never")).run()
    assert (r["ok"], r["step"], r["errno"]) == (False, "hold", "ETIMEDOUT")
    assert r["t_dial"] is None


def test_hold_timeout_is_its_own_bound(server, base_dir):
    """The hold may outlast the dial budget (--timeout): a loaded harness is slow to
    release, and the dial's budget starts only then."""
    release = os.path.join(base_dir, "release")
    client = WrapClient(api="unix:" + server.api_path, timeout=0.2, hold_timeout=5,
                        hold_before_dial=release)
    box = {}
    t = threading.Thread(target=lambda: box.update(r=client.run()))
    t.start()
    wait_for(lambda: client.session is not None, 5.0, what="the session")
    assert holds_for(lambda: t.is_alive(), 0.4)  # past --timeout, still held
    open(release, "w").close()
    t.join(10)
    assert box["r"]["ok"], box["r"]
