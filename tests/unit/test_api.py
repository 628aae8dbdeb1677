"""The HTTP/JSON API: routes, shapes, strict body and JSON handling, transports.

Every bad input must get a 4xx ``{"error": msg}``, create nothing, and leave the
server serving (the ``servers`` fixture also checks fds/threads/dirs at the end).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
from wrapref import api as api_mod
from wrapref.api import APIHandler, UsageError, make_api_server, parse_api
from wrapref.server import SESSION_ID_RE

from .helpers import connect_unix, http, read_response, require

WRAP = "/api/v1/sessions/%s/wrap-init"


def assert_still_serving(s):
    status, body = http(s.api_path, "GET", "/healthz")
    assert status == 200 and body["ok"] is True
    assert s.wrap_dirs() == []


def test_healthz_shape(server):
    status, body = http(server.api_path, "GET", "/healthz")
    assert status == 200
    assert body == {"ok": True, "pid": os.getpid(), "uid": os.geteuid(), "profile": "hardened",
                    "temp_base": server.temp_base, "signal_socket": False, "ptrace_mode": False}


def test_serving_is_the_first_log_line(server):
    first = server.capture.records()[0]
    assert first["msg"] == "serving" and first["level"] == "info"
    assert first["apis"] == ["unix:" + server.api_path]
    assert first["pid"] == os.getpid() and first["uid"] == os.geteuid()
    assert first["profile"] == "hardened" and isinstance(first["ts"], float)


def test_api_socket_is_0666(server):
    assert os.stat(server.api_path).st_mode & 0o777 == 0o666


def test_sessions_create_and_events(server):
    status, body = http(server.api_path, "POST", "/api/v1/sessions")
    assert status == 201 and SESSION_ID_RE.match(body["id"])
    status, ev = http(server.api_path, "GET", "/api/v1/sessions/{}/events".format(body["id"]))
    assert (status, ev) == (200, {"session": body["id"], "events": []})


def test_session_ids(server):
    status, body = http(server.api_path, "POST", "/api/v1/sessions", {"id": "my.id-1_X"})
    assert (status, body) == (201, {"id": "my.id-1_X"})
    status, body = http(server.api_path, "POST", "/api/v1/sessions", {"id": "my.id-1_X"})
    assert status == 409 and body == {"error": "session already exists"}
    for bad in ["bad/id", "", "x" * 201, "sp ace", 5, None, "é"]:
        status, body = http(server.api_path, "POST", "/api/v1/sessions", {"id": bad})
        if bad is None:
            assert status == 201  # null = let the server choose
            continue
        assert status == 400 and "session id" in body["error"], bad
    assert_still_serving(server)


def test_session_limit_evicts_idle_sessions_only(servers, monkeypatch):
    s = servers("agentsh")
    monkeypatch.setattr(s.srv, "max_sessions", 2)
    ids = [http(s.api_path, "POST", "/api/v1/sessions")[1]["id"] for _ in range(3)]
    assert http(s.api_path, "GET", f"/api/v1/sessions/{ids[0]}/events")[0] == 404
    for sid in ids[1:]:  # both kept sessions get a pending wrap: nothing to evict
        assert http(s.api_path, "POST", WRAP % sid, {})[0] == 200
    assert http(s.api_path, "POST", "/api/v1/sessions") == (503, {"error": "too many sessions"})


def test_pending_wrap_limit(servers, monkeypatch):
    s = servers("agentsh")
    monkeypatch.setattr(s.srv, "max_wraps", 2)
    sid = s.new_session()
    assert [http(s.api_path, "POST", WRAP % sid, {})[0] for _ in range(3)] == [200, 200, 503]
    assert len(s.wrap_dirs()) == 2


def test_budget_exhausted_is_500_and_leaves_nothing(servers):
    s = servers("agentsh")
    deep = s.temp_base
    while len(deep) < 95:
        deep = os.path.join(deep, "d" * min(30, 96 - len(deep)))
        os.mkdir(deep)
    top = os.path.join(s.temp_base, os.listdir(s.temp_base)[0])
    original, s.srv.temp_base = s.srv.temp_base, deep
    try:
        sid = s.new_session()
        status, body = http(s.api_path, "POST", WRAP % sid, {})
        assert status == 500 and "too long for Unix socket" in body["error"]
        assert os.listdir(deep) == [] and s.events(sid) == []
    finally:
        s.srv.temp_base = original
        shutil.rmtree(top)


def test_validation_failure_is_500_and_leaves_nothing(servers):
    from wrapref.server import Wrap

    from .test_wrapdir import ChmodStubbed

    s = servers("agentsh")
    s.srv.wrap_class = type("W", (Wrap,), {"wrapdir_class": ChmodStubbed})
    sid = s.new_session()
    status, body = http(s.api_path, "POST", WRAP % sid, {})
    assert status == 500 and "permissions not established" in body["error"]
    assert s.wrap_dirs() == [] and s.events(sid) == []
    assert_still_serving(s)


def test_unknown_session_is_404(server):
    assert http(server.api_path, "POST", WRAP % "nope", {}) == (
        404, {"error": "session not found"})
    assert http(server.api_path, "GET", "/api/v1/sessions/nope/events") == (
        404, {"error": "session not found"})
    assert_still_serving(server)


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/nope", 404),
    ("GET", "/api/v1/sessions/x/other", 404),
    ("GET", "/api/v1/sessions", 405),
    ("DELETE", "/healthz", 405),
    ("PUT", WRAP % "x", 405),
    ("FOO", "/healthz", 405),
    ("POST", "/healthz", 405),
])
def test_routes_and_methods(server, method, path, status):
    got, body = http(server.api_path, method, path)
    assert got == status and isinstance(body, dict) and set(body) == {"error"}
    assert_still_serving(server)


BAD_BODIES = [
    (b"hello", "invalid json"),
    (b"", "invalid json"),
    (b"[1, 2]", "invalid json: expected an object"),
    (b'"str"', "invalid json: expected an object"),
    (b'{"agent_command": "\xff"}', "invalid json: body is not UTF-8"),
    (b'\xef\xbb\xbf{}', "invalid json"),
    (b'{"caller_uid": 1, "caller_uid": 2}', "duplicate key"),
    (b'{"caller_uid": NaN}', "NaN"),
    (b'{"caller_uid": Infinity}', "Infinity"),
    (b'{"caller_uid": -Infinity}', "Infinity"),
    (b'{"caller_uid": true}', "caller_uid must be an integer"),
    (b'{"caller_uid": 1.0}', "caller_uid must be an integer"),
    (b'{"caller_uid": 1e400}', "caller_uid must be an integer"),
    (b'{"caller_uid": "1001"}', "caller_uid must be an integer"),
    (b'{"agent_args": "ls"}', "agent_args must be a list"),
    (b'{"agent_args": ["ok", 1]}', "agent_args must be a list"),
    (b'{"agent_command": ["x"]}', "agent_command must be a string"),
    (b'{"agent_command": "a\\u0000b"}', "NUL"),
    (b'{"agent_args": ["a\\u0000"]}', "NUL"),
    (b'{"k\\u0000": 1}', "NUL"),
    (b'{"mode": "root"}', "invalid mode"),
    (b'{"mode": 1}', "mode must be a string"),
    (b'{"caller_uid": -1}', "invalid caller uid: -1"),
    (b'{"caller_uid": 1' + b"0" * 5000 + b"}", "invalid json"),
    (b"[" * 100000 + b"]" * 100000, None),  # too large or too deep: 400 or 413
]


@pytest.mark.parametrize("profile", ["hardened", "agentsh"])
@pytest.mark.parametrize("body,msg", BAD_BODIES, ids=range(len(BAD_BODIES)))
def test_bad_bodies(servers, profile, body, msg):
    s = servers(profile)
    sid = s.new_session()
    status, reply = http(s.api_path, "POST", WRAP % sid, body)
    assert 400 <= status < 500 and set(reply) == {"error"}
    if msg is not None:
        assert status == 400 and msg in reply["error"], reply
    assert s.events(sid) == []
    assert_still_serving(s)


def test_unknown_fields_are_ignored(server):
    sid = server.new_session()
    status, body = http(server.api_path, "POST", WRAP % sid, {"x": 1, "agent_command": "a"})
    assert status == 200 and body["fs_isolation"] == "same-uid"


def raw_request(path, data: bytes, half_close=False, timeout=10):
    sock = connect_unix(path, timeout)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return read_response(sock)
    finally:
        sock.close()


def post(sid, headers: str, body: bytes = b"") -> bytes:
    return (f"POST {WRAP % sid} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").encode() + body


@pytest.mark.parametrize("headers,body,status,msg", [
    ("", b"{}", 411, "Content-Length required"),
    ("Content-Length: 2\r\nContent-Length: 2\r\n", b"{}", 400, "duplicated Content-Length"),
    ("Content-Length: -1\r\n", b"{}", 400, "negative Content-Length"),
    ("Content-Length: abc\r\n", b"{}", 400, "invalid Content-Length"),
    ("Content-Length: +2\r\n", b"{}", 400, "invalid Content-Length"),
    ("Content-Length: 1_0\r\n", b"{}", 400, "invalid Content-Length"),
    ("Content-Length: 100000\r\n", b"{}", 413, "body too large"),
    # more digits than int() converts (4,300): a clear 413, not a 500 or a dropped request
    ("Content-Length: " + "9" * 5000 + "\r\n", b"{}", 413, "body too large"),
    ("Transfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n", 501, "Transfer-Encoding"),
    ("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"{}", 501, "Transfer-Encoding"),
])
def test_content_length_rules(server, headers, body, status, msg):
    sid = server.new_session()
    got, reply = raw_request(server.api_path, post(sid, headers, body))
    assert got == status and msg in reply["error"]
    assert server.events(sid) == []
    assert_still_serving(server)


def test_a_huge_content_length_after_a_latin1_space_is_413(server):
    """Header bytes are read as Latin-1, where 0xA0 is a space that strip() removes."""
    sid = server.new_session()
    head = post(sid, "").replace(b"\r\n\r\n", b"\r\nContent-Length: \xa0" + b"9" * 5000
                                 + b"\r\n\r\n")
    got, reply = raw_request(server.api_path, head + b"{}")
    assert got == 413 and "body too large" in reply["error"], reply
    assert_still_serving(server)


def test_short_body_is_400(server):
    sid = server.new_session()
    got, reply = raw_request(server.api_path, post(sid, "Content-Length: 10\r\n", b"{}"),
                             half_close=True)
    assert got == 400 and "incomplete body: 2 of 10" in reply["error"]
    assert_still_serving(server)


def test_slow_body_is_408(server, monkeypatch):
    monkeypatch.setattr(APIHandler, "body_timeout", 0.3)
    sid = server.new_session()
    started = time.monotonic()
    got, reply = raw_request(server.api_path, post(sid, "Content-Length: 10\r\n", b"{}"))
    assert got == 408 and "timed out" in reply["error"]
    assert time.monotonic() - started < 5
    assert_still_serving(server)


def test_trickled_body_is_bounded_in_total(server, monkeypatch):
    # A byte every 0.1 s never trips a per-recv timeout; the total deadline does.
    monkeypatch.setattr(APIHandler, "body_timeout", 0.4)
    sid = server.new_session()
    sock = connect_unix(server.api_path)
    started = time.monotonic()
    closed_at = None
    try:
        sock.sendall(post(sid, "Content-Length: 40\r\n"))
        for _ in range(30):
            try:
                sock.sendall(b" ")
            except OSError:
                closed_at = time.monotonic() - started
                break
            time.sleep(0.1)  # the attacker's pace, not a wait for a condition
        try:
            got, reply = read_response(sock)
        except ConnectionResetError:  # closed with our last bytes unread
            got, reply = None, None
    finally:
        sock.close()
    assert closed_at is not None and closed_at < 2.5, "the server kept reading the body"
    assert got in (408, None)
    if got == 408:
        assert "timed out" in reply["error"]


def test_garbage_request_line_is_json_400(server):
    got, reply = raw_request(server.api_path, b"\x00\x01 garbage\r\n\r\n")
    assert got == 400 and set(reply) == {"error"}
    assert_still_serving(server)


def test_events_list_wrap_init(server):
    sid = server.new_session()
    status, body = http(server.api_path, "POST", WRAP % sid, {"agent_command": "a"})
    assert status == 200
    ev = server.events(sid, "wrap_init")[0]
    assert ev["session"] == sid and ev["wrap"] == os.path.basename(ev["dir"])
    assert ev["caller_uid"] == os.geteuid() and ev["uid_source"] == "peercred"
    assert ev["transport"] == "unix" and ev["fs_isolation"] == "same-uid"
    assert ev["sockets"] == {"notify": body["notify_socket"]}
    assert ev["modes"] == {ev["dir"]: "0700", body["notify_socket"]: "0600"}
    assert ev["profile"] == "hardened" and isinstance(ev["ts"], float)


def test_wrap_init_response_shape(servers):
    s = servers("agentsh", signal_socket=True)
    sid = s.new_session()
    status, body = http(s.api_path, "POST", WRAP % sid, {})
    assert status == 200
    assert set(body) >= {"ptrace_mode", "safe_to_bypass_shell_shim", "wrapper_binary",
                         "stub_binary", "seccomp_config", "notify_socket", "signal_socket",
                         "wrapper_env", "env_inject", "env_policy", "fs_isolation"}
    assert body["ptrace_mode"] is False and body["safe_to_bypass_shell_shim"] is False
    assert json.loads(body["seccomp_config"])["filter"] is None
    assert body["wrapper_env"]["AGENTSH_SIGNAL_SOCK_FD"] == "4"
    assert re.search(rf"/notify-{re.escape(sid)}\.sock$", body["notify_socket"])
    assert re.search(rf"/signal-{re.escape(sid)}\.sock$", body["signal_socket"])


def test_ptrace_response_shape(servers):
    s = servers("agentsh", ptrace_mode=True)
    sid = s.new_session()
    status, body = http(s.api_path, "POST", WRAP % sid, {})
    assert status == 200 and body["ptrace_mode"] is True
    assert body["safe_to_bypass_shell_shim"] is True and body["wrapper_binary"] == ""
    assert os.path.basename(body["notify_socket"]) == f"ptrace-{sid}.sock"
    assert "signal_socket" not in body


def test_tcp_api_on_loopback(servers):
    s = servers("hardened", extra_apis=["tcp:127.0.0.1:0"])
    tcp = [a for a in s.srv.bound_apis if a.startswith("tcp:")][0]
    port = int(tcp.rsplit(":", 1)[1])
    assert port > 0
    from wrapref.client import http_request

    status, body = http_request(tcp, "GET", "/healthz")
    assert status == 200 and body["ok"]
    sid = s.new_session()
    status, body = http_request(tcp, "POST", WRAP % sid, {"caller_uid": 4242})
    assert status == 200
    ev = s.events(sid, "wrap_init")[0]
    assert (ev["transport"], ev["uid_source"], ev["caller_uid"]) == ("tcp", "body", 4242)


@pytest.mark.parametrize("spec", ["tcp:0.0.0.0:0", "tcp:10.0.0.1:80", "tcp:example.com:80",
                                  "tcp:[::]:0", "udp:1", "unix:", "tcp:127.0.0.1", "x"])
def test_api_spec_refused(spec):
    with pytest.raises(UsageError):
        make_api_server(spec, None)


def test_api_spec_parsing():
    assert parse_api("unix:/a/b") == ("unix", "/a/b")
    assert parse_api("tcp:127.0.0.1:80") == ("tcp", ("127.0.0.1", 80))
    assert parse_api("tcp:localhost:1") == ("tcp", ("127.0.0.1", 1))
    assert parse_api("tcp:[::1]:5") == ("tcp", ("::1", 5))
    assert parse_api("tcp:10.1.2.3:5", server_side=False) == ("tcp", ("10.1.2.3", 5))


def test_stale_api_socket_is_replaced_and_live_one_refused(base_dir):
    path = os.path.join(base_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # a socket file nobody listens on
    api_mod.UnixAPIServer.remove_stale(path)
    assert not os.path.exists(path)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with live:
        live.bind(path)
        live.listen(1)
        with pytest.raises(OSError, match="another server"):
            api_mod.UnixAPIServer.remove_stale(path)
    os.unlink(path)
    open(path, "w").close()
    with pytest.raises(OSError, match="not a socket"):
        api_mod.UnixAPIServer.remove_stale(path)
    os.unlink(path)


def test_curl_as_a_client(server):
    require(shutil.which("curl") is not None, "curl not installed")
    sid = server.new_session()
    out = subprocess.run(
        ["curl", "-sS", "--unix-socket", server.api_path, "-X", "POST",
         "-H", "Content-Type: application/json", "-d", '{"agent_command":"sh"}',
         "http://localhost" + WRAP % sid],
        capture_output=True, text=True, timeout=20, check=True)
    body = json.loads(out.stdout)
    assert body["notify_socket"].startswith(server.temp_base)
    out = subprocess.run(["curl", "-sS", "--unix-socket", server.api_path, "-X", "POST",
                          "http://localhost/api/v1/sessions"],
                         capture_output=True, text=True, timeout=20, check=True)
    assert SESSION_ID_RE.match(json.loads(out.stdout)["id"])


def test_many_bad_requests_leave_nothing(server):
    sid = server.new_session()
    for i in range(50):
        http(server.api_path, "POST", WRAP % sid, b"{bad" + str(i).encode())
    assert_still_serving(server)
    assert server.events(sid) == []
