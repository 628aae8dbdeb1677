"""wire: SO_PEERCRED, metadata, SCM_RIGHTS receive rules, CLOEXEC, /proc readers."""

from __future__ import annotations

import os
import socket

import pytest
from wrapref import wire

from .helpers import OWNER_UID, Actor, fd_count, need_root, run_as, token_pipe


def test_peercred_from_socketpair():
    # agentsh: GetConnPeerCreds (self-connect returns own pid/uid).
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        cred = wire.peercred(a)
    assert (cred.pid, cred.uid, cred.gid) == (os.getpid(), os.getuid(), os.getgid())


def test_peercred_of_another_user(base_dir):
    need_root()
    path = os.path.join(base_dir, "l.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with srv:
        srv.bind(path)
        os.chmod(path, 0o666)
        srv.listen(1)
        srv.settimeout(10)

        def connect_and_report():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.recv(1)
            return os.getpid()

        actor = Actor(OWNER_UID, connect_and_report)
        conn, _ = srv.accept()
        with conn:
            cred = wire.peercred(conn)
            conn.sendall(b"x")
        pid = actor.result()
    assert cred.uid == OWNER_UID and cred.gid == OWNER_UID and cred.pid == pid


@pytest.mark.parametrize("pid", [1, 4242, 0xFFFFFFFF])
def test_metadata_round_trip(pid):
    data = wire.encode_metadata(pid)
    assert len(data) == 5 and data[0] == 0xA7
    assert wire.parse_metadata(data) == pid


@pytest.mark.parametrize("data", [b"\x00", b"", b"\xa7\x01\x02\x03", b"\xa6\x01\x00\x00\x00"])
def test_legacy_payloads_carry_no_pid(data):
    assert wire.parse_metadata(data) is None


def test_ptrace_pid_is_signed():
    assert wire.decode_pid(wire.encode_pid(1234)) == 1234
    assert wire.decode_pid(b"\xff\xff\xff\xff") == -1


def _pair():
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


def test_round_trip_with_pid_and_token():
    a, b = _pair()
    with a, b:
        r = token_pipe("tok-1")
        wire.send_fds(a, wire.encode_metadata(777), [r])
        os.close(r)
        data, fds, flags = wire.recv_fds(b, wire.MAX_PAYLOAD, wire.MAX_FDS, cloexec=True)
    assert wire.parse_metadata(data) == 777 and len(fds) == 1 and not flags & socket.MSG_CTRUNC
    try:
        assert wire.read_token(fds[0], 1.0) == b"tok-1"
    finally:
        wire.close_fds(fds)


@pytest.mark.parametrize("cloexec", [True, False])
def test_cloexec_on_receipt(cloexec):
    # H8: MSG_CMSG_CLOEXEC sets FD_CLOEXEC atomically; without it the fd arrives inheritable.
    a, b = _pair()
    with a, b:
        r = token_pipe("x")
        wire.send_fds(a, b"\x00", [r])
        os.close(r)
        _data, fds, _flags = wire.recv_fds(b, 16, 8, cloexec=cloexec)
    try:
        assert wire.fd_cloexec(fds[0]) is cloexec
    finally:
        wire.close_fds(fds)


@pytest.mark.parametrize("n,ctrunc", [(2, False), (8, False), (9, True)])
def test_many_fds_and_ctrunc_leave_fd_count_unchanged(n, ctrunc):
    a, b = _pair()
    with a, b:
        before = fd_count()
        sent = [token_pipe("t") for _ in range(n)]
        wire.send_fds(a, b"\x00", sent)
        wire.close_fds(sent)
        data, fds, flags = wire.recv_fds(b, 16, 8, cloexec=True)
        assert bool(flags & socket.MSG_CTRUNC) is ctrunc
        assert len(fds) == min(n, 8)
        wire.close_fds(fds)
        assert fd_count() == before


def test_read_token_bounded_by_limit_and_timeout():
    r, w = os.pipe()
    try:
        os.write(w, b"a" * 300)
        assert wire.read_token(r, 1.0) == b"a" * wire.TOKEN_LIMIT
    finally:
        os.close(r)
        os.close(w)
    r, w = os.pipe()  # a writer that never writes nor closes
    try:
        with pytest.raises(TimeoutError):
            wire.read_token(r, 0.05)
    finally:
        os.close(r)
        os.close(w)


def test_proc_status_and_descendants():
    me = wire.proc_status(os.getpid())
    assert me["ppid"] == os.getppid()
    assert me["uids"] == (os.getuid(), os.geteuid()) + me["uids"][2:]
    assert wire.proc_status(0) is None and wire.proc_status(-5) is None
    assert wire.proc_status(2**22 + 12345) is None  # above pid_max
    assert wire.is_descendant(os.getpid(), os.getpid())
    assert wire.is_descendant(os.getpid(), os.getppid())
    assert not wire.is_descendant(os.getppid(), os.getpid())


def test_proc_status_of_other_user_child():
    need_root()

    def report():
        return {"pid": os.getpid(), "status": wire.proc_status(os.getpid())}

    out = run_as(OWNER_UID, report)
    assert out["status"]["uids"] == [OWNER_UID] * 4
    assert out["status"]["ppid"] == os.getpid()


def test_proc_status_rejects_malformed(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "status").write_text("Name:\tx\nPPid:\tabc\nUid:\t1\t1\t1\t1\n")
    (tmp_path / "8").mkdir()
    (tmp_path / "8" / "status").write_text("PPid:\t1\nUid:\t1\t2\t3\t4\nUid:\t5\t6\t7\t8\n")
    assert wire.proc_status(7, proc=str(tmp_path)) is None
    assert wire.proc_status(8, proc=str(tmp_path)) == {"ppid": 1, "uids": (5, 6, 7, 8)}


def test_errno_name():
    assert wire.errno_name(13) == "EACCES"
    assert wire.errno_name(None) is None
