"""One test per rule of docs/hostile-users.md (H14..H26): hostile local users.

Each test states what every profile it runs on is expected to do, so it fails on a
profile that lacks the rule *and* on a hardened server that stops enforcing it.  To
watch a test fail with a rule switched off in ``hardened``, name the Profile field(s)
in ``WRAPREF_UNIT_OFF`` (comma-separated; ``client_check`` for H19, a client option):

    WRAPREF_UNIT_OFF=robust_cleanup pytest tests/unit/test_hostile.py -k h14

Real second users (owner 1001, attacker 1003) act through forked children that setuid.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import socket
import stat
import threading
import time

import pytest
from wrapref import wire
from wrapref.api import APIHandler
from wrapref.client import WrapClient, http_request
from wrapref.observe import open_log
from wrapref.profiles import PROFILES
from wrapref.server import UntrustedPath, WrapServer
from wrapref.wrapdir import empty_dir_fd, empty_dir_steps

from .helpers import (
    INTRUDER_UID,
    OWNER_UID,
    SERVICE_UID,
    Actor,
    CapturingLogger,
    connect_unix,
    holds_for,
    http,
    need_root,
    run_as,
    wait_for,
)

OFF = {f for f in os.environ.get("WRAPREF_UNIT_OFF", "").split(",") if f}
WRAP = "/api/v1/sessions/%s/wrap-init"
EVENTS = "/api/v1/sessions/%s/events"


def prof(name: str = "hardened"):
    """The profile *name*; for hardened, with the switches named in WRAPREF_UNIT_OFF off."""
    p = PROFILES[name]
    if name != "hardened":
        return p
    fields = {f.name for f in dataclasses.fields(p)}
    return dataclasses.replace(p, **{f: False for f in OFF if f in fields})


def client_check() -> str:
    return "any" if "client_check" in OFF else "auto"


def both(table: dict):
    """parametrize (profile, expected) over the profiles in *table*."""
    return pytest.mark.parametrize("profile,expected", list(table.items()))


def new_session_as(s, uid):
    status, body = s.call("POST", "/api/v1/sessions", {}, uid=uid)
    assert status == 201, body
    return body["id"]


# ------------------------------------------------------------------ H14 cleanup


def make_deep_tree(path: str, depth: int) -> int:
    """As the caller: ``depth`` nested directories under *path* (relative mkdirs)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    made = 0
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            made += 1
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "w") as f:
            f.write("x")
    finally:
        os.close(fd)
    return made


@both({"hardened": "removed"})  # agentsh runs the same code (robust_cleanup on): not repeated
def test_h14_deep_tree_in_the_wrap_dir_is_removed_and_the_slot_freed(servers, base_dir,
                                                                     profile, expected):
    """Finding 1: 1,200 nested directories made rmtree raise RecursionError; the wrap
    was never released and the directory outlived SIGTERM."""
    need_root()
    # The window must outlast the owner's tree and symlink (forked steps, slow under load);
    # the test then waits for the window to end.
    s = servers(prof(profile), accept_window=4.0)
    canary = os.path.join(base_dir, "canary")
    with open(canary, "w") as f:
        f.write("keep")
    sid = s.new_session()
    status, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    assert status == 200, resp
    wrapdir = os.path.dirname(resp["notify_socket"])
    assert run_as(OWNER_UID, make_deep_tree, wrapdir, 1200) == 1200
    # A symlink to a file outside: removal must not follow it.
    run_as(OWNER_UID, os.symlink, canary, os.path.join(wrapdir, "link"))
    s.wait_event(sid, "window_expired", timeout=10)
    wait_for(lambda: s.srv.live_wraps() == 0, 10, what="the wrap slot released")
    assert not os.path.exists(wrapdir), "the wrap directory survived its cleanup"
    assert s.wrap_dirs() == []
    with open(canary) as f:
        assert f.read() == "keep"
    assert expected == "removed"


def test_h14_empty_dir_fd_flattens_and_never_follows(base_dir):
    top = os.path.join(base_dir, "top")
    os.mkdir(top)
    outside = os.path.join(base_dir, "outside")
    os.mkdir(outside)
    open(os.path.join(outside, "keep"), "w").close()
    assert make_deep_tree(top, 300) == 300
    for i in range(50):  # wide, too
        os.mkdir(os.path.join(top, f"w{i}"))
        os.symlink(outside, os.path.join(top, f"w{i}", "l"))
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fds_before = len(os.listdir("/proc/self/fd"))
        assert empty_dir_fd(fd, max_depth=8) is True
        assert len(os.listdir("/proc/self/fd")) == fds_before
    finally:
        os.close(fd)
    assert os.listdir(top) == []
    assert os.listdir(outside) == ["keep"]


def test_h14_empty_dir_fd_is_bounded(base_dir):
    top = os.path.join(base_dir, "top")
    os.mkdir(top)
    for i in range(100):
        open(os.path.join(top, f"f{i}"), "w").close()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert empty_dir_fd(fd, max_ops=10) is False  # gave up, did not run away
    finally:
        os.close(fd)


def test_h14_cleanup_yields_between_chunks(base_dir):
    """The bounded removal is a generator: a full tree is emptied in chunks, so the
    server's one event loop serves everybody else between them."""
    top = os.path.join(base_dir, "top")
    os.mkdir(top)
    for i in range(1000):
        open(os.path.join(top, f"f{i}"), "w").close()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    steps, pauses = empty_dir_steps(fd, chunk=100), 0
    try:
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                assert stop.value is True
                break
            pauses += 1
    finally:
        os.close(fd)
    assert pauses >= 9, pauses
    assert os.listdir(top) == []


def test_h14_a_long_cleanup_lets_other_tasks_run(servers):
    """WrapServer.run_steps: the first chunk runs at once, in the caller's thread, the
    rest in the event loop's, and a task that becomes ready in between is served before
    the next chunk. (The loop may start the rest before the caller looks again: which
    thread ran each chunk is the evidence, not what the caller sees right after.)"""
    s = servers(prof("hardened"))
    r, w = os.pipe()
    seen = []
    ran_in = {}

    def other():
        yield (r, time.monotonic() + 10)
        seen.append("other")

    def cleanup():
        ran_in["chunk 1"] = threading.get_ident()
        seen.append("chunk 1")
        yield
        ran_in["chunk 2"] = threading.get_ident()
        os.write(w, b"x")  # the other task is ready now
        seen.append("chunk 2")
        yield
        seen.append("chunk 3")

    try:
        s.srv.loop.spawn(other())
        s.srv.run_steps(cleanup())
        assert ran_in["chunk 1"] == threading.get_ident()  # at once, in the caller's thread
        wait_for(lambda: len(seen) == 4, 5, what="the cleanup's last chunk")
        assert seen == ["chunk 1", "chunk 2", "other", "chunk 3"]
        assert ran_in["chunk 2"] != threading.get_ident()  # the rest: the loop's thread
    finally:
        os.close(r)
        os.close(w)


# ------------------------------------------------------------- H15 per-uid quotas


@both({"hardened": 200, "agentsh": 503})
def test_h15_one_uid_cannot_fill_the_wrap_cap(servers, profile, expected):
    """Finding 2: one uid's pending wraps filled the global cap; the owner got 503."""
    need_root()
    s = servers(prof(profile), accept_window=20)
    s.srv.max_wraps = 6
    s.srv.max_wraps_per_uid = 3

    def flood(n):
        got = []
        for _ in range(n):
            st, sess = http(s.api_path, "POST", "/api/v1/sessions", {})
            got.append(http(s.api_path, "POST", WRAP % sess["id"], {})[0])
        return got

    got = run_as(INTRUDER_UID, flood, 8)
    assert got.count(200) == (3 if expected == 200 else 6)
    sid = new_session_as(s, OWNER_UID)
    status, _resp = s.wrap_init(sid, {}, uid=OWNER_UID)
    assert status == expected


@both({"hardened": 200, "agentsh": 404})
def test_h15_h23_session_flood_does_not_evict_the_owner(servers, profile, expected):
    """Finding 7: 4,096 new sessions evicted the owner's session (then 404)."""
    need_root()
    s = servers(prof(profile))
    s.srv.max_sessions = 8
    s.srv.max_sessions_per_uid = 4
    sid = new_session_as(s, OWNER_UID)

    def flood(n):
        return [http(s.api_path, "POST", "/api/v1/sessions", {})[0] for _ in range(n)]

    got = run_as(INTRUDER_UID, flood, 20)
    assert set(got) == {201}  # the flooder only ever evicts its own oldest
    status, _resp = s.wrap_init(sid, {}, uid=OWNER_UID)
    assert status == expected


# ---------------------------------------------------------- H16 token read


def lowat_handoff(path: str, hold: float) -> dict:
    """Hand over a socket with SO_RCVLOWAT 1 MiB holding one byte; time the status byte."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1 << 20)
    b.send(b"t")
    r, w = os.pipe()
    wrapper = os.fork()  # a real wrapper child (H10 checks its parent)
    if wrapper == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        sock = connect_unix(path, hold)
        started = time.monotonic()
        wire.send_fds(sock, wire.encode_metadata(wrapper), [a.fileno()])
        a.close()
        try:
            data = sock.recv(1)
            status = data[0] if data else None
        except OSError:
            status = None
        waited = time.monotonic() - started
        b.close()
        sock.close()
    finally:
        os.close(w)
        os.waitpid(wrapper, 0)
    return {"status": status, "waited": waited}


@both({"hardened": "bounded", "agentsh": "bounded"})
def test_h16_so_rcvlowat_cannot_block_the_token_read(servers, profile, expected):
    """Finding 2: a handed-over socket with SO_RCVLOWAT held the server's read (and the
    slot, fds, directory) for as long as the sender liked."""
    need_root()
    s = servers(prof(profile), accept_window=10, handshake_timeout=0.5)
    sid = s.new_session()
    status, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    assert status == 200
    out = run_as(OWNER_UID, lowat_handoff, resp["notify_socket"], 4.0, timeout=20)
    assert out["status"] is not None, f"no status byte within {out['waited']:.1f}s"
    assert out["waited"] < 3.0
    ok = s.wait_event(sid, "handoff_ok")
    assert ok["token"] == "t"
    assert expected == "bounded"


# ---------------------------------------------------------- H17 keepalive


def ptrace_hold(path: str, hold: float) -> dict:
    sock = connect_unix(path, 5)
    sock.sendall(wire.encode_pid(os.getpid()))
    ack = sock.recv(1)
    time.sleep(hold)  # the attacker's hold, not a wait for a condition
    sock.close()
    return {"ack": ack[0] if ack else None}


@both({"hardened": 0, "agentsh": 1})
def test_h17_keepalive_does_not_extend_the_wrap(servers, profile, expected):
    need_root()
    s = servers(prof(profile), accept_window=0.3, ptrace_mode=True)
    sid = s.new_session()
    status, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
    assert status == 200
    holder = Actor(OWNER_UID, ptrace_hold, resp["notify_socket"], 1.5)
    try:
        s.wait_event(sid, "handoff_ok")
        pending = lambda: (s.srv.live_wraps(), len(s.wrap_dirs()))  # noqa: E731
        if expected:  # still pending well past the 0.3 s window, while the peer holds on
            assert holds_for(lambda: pending() == (1, 1), 0.8)
        else:  # gone at once, while the peer still holds the keepalive
            wait_for(lambda: pending() == (0, 0), 0.8, what="the wrap released at the ACK")
        assert holder.result(10)["ack"] == 1
    finally:
        holder.kill()


def test_h17_keepalives_per_uid_are_capped(servers):
    need_root()
    s = servers(prof(), accept_window=5, ptrace_mode=True)
    s.srv.keepalives_per_uid = 1
    acks = []
    holders = []
    try:
        for _ in range(2):
            sid = s.new_session()
            _st, resp = s.wrap_init(sid, {"caller_uid": OWNER_UID}, uid=OWNER_UID)
            holders.append(Actor(OWNER_UID, ptrace_hold, resp["notify_socket"], 1.5))
            ev = s.wait_event(sid, "handoff_ok" if not acks else "handoff_failed")
            acks.append(ev["type"])
        assert acks == ["handoff_ok", "handoff_failed"]
        assert [h.result(10)["ack"] for h in holders] == [1, 0]
    finally:
        for h in holders:
            h.kill()


# ------------------------------------------------------------ H18 trusted paths


def start_server(profile, temp_base, api_dir):
    srv = WrapServer(profile=profile, temp_base=temp_base,
                     apis=["unix:" + os.path.join(api_dir, "api.sock")], log=CapturingLogger())
    srv.start()
    srv.stop()
    return "started"


@pytest.mark.parametrize("case", ["temp-owned", "temp-symlink", "api-owned", "writable"])
@both({"hardened": "refused", "agentsh": "started"})
def test_h18_untrusted_paths_refused_at_startup(base_dir, case, profile, expected):
    """Finding 3: a temp base or API directory another user owns was trusted."""
    need_root()
    good = os.path.join(base_dir, "good")
    os.mkdir(good, 0o755)
    evil = os.path.join(base_dir, "evil")
    os.mkdir(evil, 0o755)
    os.chown(evil, INTRUDER_UID, INTRUDER_UID)
    temp, api = good, good
    if case == "temp-owned":
        temp = evil
    elif case == "temp-symlink":
        temp = os.path.join(base_dir, "link")
        os.symlink(evil, temp)
    elif case == "api-owned":
        api = evil
    else:
        os.chmod(evil, 0o777)
        os.chown(evil, 0, 0)
        temp = evil
    try:
        got = start_server(prof(profile), temp, api)
    except UntrustedPath as exc:
        got = "refused"
        assert "refusing" in str(exc)
    assert got == expected


def test_h18_legitimate_set_ups_start(base_dir):
    """Root's sticky 1777 temp base (/tmp, the labs'), a service-owned API directory."""
    need_root()
    sticky = os.path.join(base_dir, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    assert start_server(prof(), sticky, base_dir) == "started"
    svc = os.path.join(base_dir, "svc")
    os.mkdir(svc, 0o755)
    os.chown(svc, SERVICE_UID, SERVICE_UID)

    def as_service():
        return start_server(prof(), sticky, svc)

    assert run_as(SERVICE_UID, as_service) == "started"


# ------------------------------------------------------------ H19 client check


def _mode(path: str) -> int | None:
    try:
        return os.lstat(path).st_mode & 0o777
    except FileNotFoundError:
        return None


def fake_api(api_dir: str, hold: float) -> dict:
    """The attacker's fake API and notify socket; report whether a token arrived."""
    os.makedirs(api_dir, exist_ok=True)
    api_path = os.path.join(api_dir, "api.sock")
    notify_path = os.path.join(api_dir, "n.sock")
    api = socket.socket(socket.AF_UNIX)
    api.bind(api_path)
    api.listen(8)
    os.chmod(api_path, 0o666)
    notify = socket.socket(socket.AF_UNIX)
    notify.bind(notify_path)
    notify.listen(8)
    os.chmod(notify_path, 0o666)
    os.chmod(api_dir, 0o755)
    deadline = time.monotonic() + hold
    got = {"requests": 0, "token": None}
    answers = [(201, {"id": "s-fake"}), (200, {"notify_socket": notify_path,
                                               "ptrace_mode": False})]
    api.settimeout(0.2)
    notify.settimeout(0.2)
    while time.monotonic() < deadline and got["token"] is None:
        for lst in (api, notify):
            try:
                conn, _ = lst.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                if lst is api:
                    req = conn.recv(65536)
                    if not req:  # connected, then hung up without a byte: refused
                        got["hangups"] = got.get("hangups", 0) + 1
                        return got
                    got["requests"] += 1
                    st, body = answers[min(got["requests"], 2) - 1]
                    data = json.dumps(body).encode()
                    conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close"
                                 b"\r\n\r\n" % (st, len(data)) + data)
                else:
                    try:
                        _d, fds, _f = wire.recv_fds(conn, 16, 1, True)
                    except OSError:
                        continue
                    if not fds:  # connected, then hung up with nothing: refused
                        got["hangups"] = got.get("hangups", 0) + 1
                        return got
                    for fd in fds:
                        got["token"] = os.read(fd, 256).decode()
                        os.close(fd)
                    try:
                        conn.sendall(b"\x01")
                    except OSError:
                        pass
    return got


def test_h19_client_refuses_a_fake_api(base_dir):
    """Finding 3: an API socket directory owned by the attacker: fake API, owner's fd."""
    need_root()
    os.chmod(base_dir, 0o1777)  # like /tmp: the attacker can make its directory here
    api_dir = os.path.join(base_dir, "wrapapi")
    attacker = Actor(INTRUDER_UID, fake_api, api_dir, 5.0)
    try:
        wait_for(lambda: os.path.exists(os.path.join(api_dir, "n.sock")), 5,
                 what="the fake API")
        r = run_as(OWNER_UID, lambda: WrapClient(api="unix:" + os.path.join(api_dir, "api.sock"),
                                                 timeout=3, server_uid=client_check()).run())
        got = attacker.result(10)
    finally:
        attacker.kill()
    assert got["token"] is None, "the owner's token reached the attacker"
    assert (r["ok"], r["step"], r["errno"]) == (False, "session", "EPERM")
    assert got["requests"] == 0 and got.get("hangups") == 1  # refused before a byte was sent


def test_h19_client_refuses_a_wrap_socket_served_by_another_uid(base_dir, server):
    """The swapped wrap directory: the listener is the attacker's, not the server's."""
    need_root()
    os.chmod(base_dir, 0o1777)
    api_dir = os.path.join(base_dir, "attacker")
    attacker = Actor(INTRUDER_UID, fake_api, api_dir, 5.0)
    try:
        # Ready once it is open to all (bound under the umask first, then chmod 0666).
        wait_for(lambda: _mode(os.path.join(api_dir, "n.sock")) == 0o666, 5,
                 what="the attacker's socket, mode 0666")
        want = 0 if client_check() == "auto" else "any"
        r = run_as(OWNER_UID, lambda: WrapClient(
            sockets={"notify": os.path.join(api_dir, "n.sock")}, timeout=3,
            server_uid=want).run())
        got = attacker.result(10)
    finally:
        attacker.kill()
    assert got["token"] is None, "the owner's token reached the attacker"
    assert (r["ok"], r["step"], r["errno"]) == (False, "connect-notify", "EPERM")


def test_h19_client_accepts_the_real_server(server):
    need_root()
    r = run_as(OWNER_UID, lambda: WrapClient(api="unix:" + server.api_path, timeout=5).run())
    assert r["ok"], r
    r = run_as(OWNER_UID, lambda: WrapClient(api="unix:" + server.api_path, timeout=5,
                                             server_uid=0).run())
    assert r["ok"], r
    r = run_as(OWNER_UID, lambda: WrapClient(api="unix:" + server.api_path, timeout=5,
                                             server_uid=SERVICE_UID).run())
    assert (r["ok"], r["step"], r["errno"]) == (False, "session", "EPERM")


# ------------------------------------------------------------ H20 byte limits


@both({"hardened": 413, "agentsh": 200})
def test_h20_request_fields_are_bounded(servers, profile, expected):
    """Finding 4: 60 KB agent_args were kept in the events of every wrap-init."""
    s = servers(prof(profile), accept_window=0.2)
    sid = s.new_session()
    status, _ = s.wrap_init(sid, {"agent_args": ["a" * 60000]})
    assert status == expected


def test_h20_session_events_are_bounded_in_bytes(servers):
    s = servers(prof(), accept_window=0.05)
    s.srv.max_event_bytes = 8 * 1024
    sid = s.new_session()
    for _ in range(30):
        status, _ = s.wrap_init(sid, {"agent_args": ["a" * 1000]})
        assert status == 200
    wait_for(lambda: s.srv.live_wraps() == 0, 10, what="wraps over")
    status, body = s.call("GET", EVENTS % sid)
    assert status == 200 and body["dropped"] > 0
    assert len(json.dumps(body["events"])) <= 8 * 1024


# ------------------------------------------------------------- H21 log bounds


@both({"hardened": "bounded", "agentsh": "unbounded"})
def test_h21_log_lines_are_bounded(servers, profile, expected):
    """Finding 5: a 404 with a long path logged 65 KB; one user wrote ~23 MB/s."""
    s = servers(prof(profile))
    for _ in range(50):
        status, _ = s.call("GET", "/" + "x" * 60000)
        assert status in (404, 414, 431)
    lines = [json.dumps(r) for r in s.logs("api error")]
    total = sum(len(x) for x in lines)
    got = "bounded" if total < 20000 and max(map(len, lines)) < 2048 else "unbounded"
    assert got == expected, (len(lines), total)


# ------------------------------------------------------------ H22 bounded API


def trickle_headers(path: str, seconds: float) -> dict:
    sock = connect_unix(path, 5)
    started = time.monotonic()
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    closed = None
    while time.monotonic() - started < seconds:
        try:
            sock.sendall(b"X-a: b\r\n")
        except OSError:
            closed = time.monotonic() - started
            break
        time.sleep(0.05)  # the attacker's pace
    sock.close()
    return {"closed": closed}


@both({"hardened": "cut", "agentsh": "open"})
def test_h22_whole_request_deadline(servers, monkeypatch, profile, expected):
    """Finding 6: a per-read timeout only; a trickle kept a thread and fd for ever."""
    monkeypatch.setattr(APIHandler, "request_timeout", 0.3)
    s = servers(prof(profile))
    # Same uid: a thread, not a forked child (a fork of this threaded process can hang).
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        out = pool.submit(trickle_headers, s.api_path, 1.5).result(timeout=15)
    got = "cut" if out["closed"] is not None and out["closed"] < 1.2 else "open"
    assert got == expected


def hold_connections(path: str, n: int, hold: float) -> dict:
    socks = [connect_unix(path, 5) for _ in range(n)]
    for sk in socks:
        sk.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(0.3)  # let the server accept them all (the attacker's pace)
    extra = connect_unix(path, 5)
    try:  # a server at its cap may answer 503 and close before this arrives
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    extra.settimeout(1.0)
    try:
        head = extra.recv(64)
    except OSError:
        head = b""
    time.sleep(hold)
    for sk in [*socks, extra]:
        sk.close()
    return {"extra": head.decode(errors="replace")}


@both({"hardened": "503", "agentsh": "waiting"})
def test_h22_per_uid_connection_cap(servers, profile, expected):
    need_root()
    s = servers(prof(profile))
    holder = Actor(INTRUDER_UID, hold_connections, s.api_path, 8, 0.3)
    try:
        # While the attacker holds 8 connections (its cap), the owner is served.
        t0 = time.monotonic()
        status, _ = s.call("GET", "/healthz", uid=OWNER_UID)
        assert status == 200 and time.monotonic() - t0 < 2
        out = holder.result(15)
    finally:
        holder.kill()
    got = "503" if " 503 " in out["extra"] else "waiting"
    assert got == expected, out


# ------------------------------------------------------------ H23 session owner


@both({"hardened": 404, "agentsh": 200})
def test_h23_sessions_belong_to_their_creator(servers, profile, expected):
    """Finding 7: any uid that learned a session id read its events and wrap-inited."""
    need_root()
    s = servers(prof(profile), accept_window=0.3)
    sid = new_session_as(s, OWNER_UID)
    status, _ = s.wrap_init(sid, {}, uid=OWNER_UID)
    assert status == 200
    assert s.call("GET", EVENTS % sid, uid=INTRUDER_UID)[0] == expected
    assert s.wrap_init(sid, {}, uid=INTRUDER_UID)[0] == expected
    assert s.call("GET", EVENTS % sid)[0] == 200  # root (the harness) always reads
    assert s.call("GET", EVENTS % sid, uid=OWNER_UID)[0] == 200


def test_h23_root_created_session_is_claimed_by_its_first_user(servers):
    need_root()
    server = servers(prof())
    status, body = server.call("POST", "/api/v1/sessions", {})
    sid = body["id"]
    assert server.wrap_init(sid, {}, uid=OWNER_UID)[0] == 200
    assert server.wrap_init(sid, {}, uid=INTRUDER_UID)[0] == 404
    assert server.call("GET", EVENTS % sid)[0] == 200


# ------------------------------------------------------------ H24 explicit modes


def with_umask(mask, fn, *args):
    old = os.umask(mask)
    try:
        return fn(*args)
    finally:
        os.umask(old)


@both({"hardened": (0o640, 0o755), "agentsh": (0o666, 0o700)})
def test_h24_modes_do_not_follow_the_umask(base_dir, profile, expected):
    """Finding 8: umask 000 gave a 0666 log; 077 a 0700 API directory nobody could use."""
    p = prof(profile)
    log = os.path.join(base_dir, "server.log")
    stream = with_umask(0, open_log, log, p.log_nofollow, p.explicit_modes)
    stream.close()
    api_dir = os.path.join(base_dir, "run", "wrapref")
    os.mkdir(os.path.join(base_dir, "run"), 0o755)
    temp = os.path.join(base_dir, "tmp")
    os.mkdir(temp, 0o755)
    srv = WrapServer(profile=p, temp_base=temp, apis=["unix:" + api_dir + "/api.sock"],
                     log=CapturingLogger())
    with_umask(0o077, srv.start)
    srv.stop()
    got = (stat.S_IMODE(os.stat(log).st_mode), stat.S_IMODE(os.stat(api_dir).st_mode))
    assert got == expected


# ------------------------------------------------------------ H25 TCP browsers


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example", "Content-Type": "text/plain"},
    {"Origin": "null"},
    {"Host": "evil.example:8080"},
    {"Content-Type": "text/plain"},
])
@both({"hardened": "refused", "agentsh": "created"})
def test_h25_tcp_api_refuses_browser_shaped_requests(servers, headers, profile, expected):
    """Finding 9: a web page in a local browser created sessions over the TCP API."""
    s = servers(prof(profile), extra_apis=["tcp:127.0.0.1:0"])
    port = int([a for a in s.srv.bound_apis if a.startswith("tcp:")][0].rsplit(":", 1)[1])
    hdrs = {"Host": f"127.0.0.1:{port}", "Content-Type": "application/json", **headers}
    body = b'{"id": null}'
    req = "POST /api/v1/sessions HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in hdrs.items()) + f"Content-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(req.encode() + body)
        head = sock.recv(64).decode()
    finally:
        sock.close()
    got = "created" if " 201 " in head else "refused"
    assert got == expected, head
    # the project's own client still works over TCP
    status, resp = http_request(f"tcp:127.0.0.1:{port}", "POST", "/api/v1/sessions", {})
    assert status == 201


# ------------------------------------------------------------ H26 log symlink


@both({"hardened": "refused", "agentsh": "followed"})
def test_h26_log_file_symlink_not_followed(base_dir, profile, expected):
    """Finding 10: --log-file followed a symlink planted where the log would be."""
    p = prof(profile)
    target = os.path.join(base_dir, "victim")
    with open(target, "w") as f:
        f.write("secret\n")
    os.chmod(target, 0o600)
    link = os.path.join(base_dir, "server.log")
    os.symlink(target, link)
    try:
        stream = open_log(link, p.log_nofollow, p.explicit_modes)
    except OSError:
        got = "refused"
    else:
        stream.write("appended\n")
        stream.close()
        got = "followed"
    assert got == expected
    with open(target) as f:
        assert f.read() == ("secret\n" if got == "refused" else "secret\nappended\n")


def test_h26_log_fifo_does_not_hang(base_dir):
    fifo = os.path.join(base_dir, "server.log")
    os.mkfifo(fifo)
    p = prof()
    if not p.log_nofollow:
        pytest.skip("H26 switched off: opening a FIFO for writing would block here")
    with pytest.raises(OSError):
        open_log(fifo, p.log_nofollow, p.explicit_modes)

