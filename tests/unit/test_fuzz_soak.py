"""Fuzzing (hypothesis) of the API and the wrap-socket handshake, and a soak test.

Bounded, seeded and reproducible: ``derandomize=True`` makes every run try the same
examples; ``WRAPLAB_FUZZ_EXAMPLES`` (default 80) sets how many per test, e.g.
``WRAPLAB_FUZZ_EXAMPLES=5000 tox -e unit -- -k fuzz`` for a longer run.  The soak runs
``WRAPLAB_SOAK_CYCLES`` (default 40) owner wraps plus hostile noise after a warm-up and
fails on any growth of the server's fds, threads or wrap directories, or of RSS beyond
a small allocator slack.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wrapref import wire
from wrapref.client import WrapClient

from .helpers import INTRUDER_UID, OWNER_UID, connect_unix, fd_count, need_root, run_as, wait_for

EXAMPLES = int(os.environ.get("WRAPLAB_FUZZ_EXAMPLES", "80"))
SOAK_CYCLES = int(os.environ.get("WRAPLAB_SOAK_CYCLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture
def fuzz_server(servers):
    return servers("hardened", accept_window=1.0, handshake_timeout=0.3)


def send_raw(path: str, data: bytes, timeout: float = 15.0):
    """Send *data*, half-close, read the answer: ``(status or None, raw bytes)``."""
    sock = connect_unix(path, timeout)
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    finally:
        sock.close()
    parts = buf.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, buf


# ----------------------------------------------------------------------- API fuzz

_token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=30)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids,
                                                              max_size=5),
    max_leaves=20,
)
_body = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: __import__("json").dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "agent_command": st.text(max_size=50) | st.integers(),
        "agent_args": st.lists(st.text(max_size=20), max_size=5) | st.text(max_size=5),
        "caller_uid": st.integers(-5, 2**33) | st.text(max_size=5) | st.booleans(),
        "mode": st.sampled_from(["agent", "shim", "", "x"]) | st.integers(),
        "id": st.text(max_size=30) | st.integers(),
    }).map(lambda v: __import__("json").dumps(v).encode()),
)


@st.composite
def api_requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS"]) | _token)
    sid = draw(st.sampled_from(["{sid}", "s-nope", "..", "%00", ""]) | _token)
    path = draw(st.sampled_from([
        "/healthz", "/api/v1/sessions", f"/api/v1/sessions/{sid}/wrap-init",
        f"/api/v1/sessions/{sid}/events", "/", "*", "//api/v1/sessions",
    ]) | _token.map(lambda t: "/" + t))
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x", ""]))
    body = draw(_body)
    headers = draw(st.lists(st.tuples(_token, _token), max_size=4))
    length = draw(st.sampled_from(["exact", "none", "short", "long", "junk", "two"]))
    lines = [f"{method} {path} {version}".rstrip()]
    lines += [f"{k}: {v}" for k, v in headers]
    if length == "exact":
        lines.append(f"Content-Length: {len(body)}")
    elif length == "short":
        lines.append(f"Content-Length: {max(0, len(body) - 3)}")
    elif length == "long":
        lines.append(f"Content-Length: {len(body) + 5}")
    elif length == "junk":
        lines.append("Content-Length: -1x")
    elif length == "two":
        lines += [f"Content-Length: {len(body)}", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def test_fuzz_api(fuzz_server):
    s = fuzz_server
    sid = s.new_session()

    @FUZZ
    @given(api_requests())
    def one(raw):
        raw = raw.replace(b"{sid}", sid.encode())
        status, reply = send_raw(s.api_path, raw)
        # An answer or a close: never a hang (send_raw's timeout), never a crash.
        assert status is None or 100 <= status <= 599, reply[:200]
        assert status != 500, reply[:300]

    one()
    assert s.logs("internal error") == []
    # Still serving, and every wrap the fuzz made ends and is cleaned up.
    from .helpers import http
    assert http(s.api_path, "GET", "/healthz")[0] == 200
    wait_for(lambda: s.srv.live_wraps() == 0, 15, what="fuzzed wraps over")
    assert s.wrap_dirs() == []


# ---------------------------------------------------------------- handshake fuzz


@st.composite
def handoffs(draw):
    payload = draw(st.one_of(
        st.binary(max_size=24),
        st.integers(0, 2**32 - 1).map(lambda p: bytes([wire.MAGIC]) + p.to_bytes(4, "little")),
        st.just(b"wrapper"),  # replaced by a real child's metadata
    ))
    fds = draw(st.lists(st.sampled_from(["token", "socket", "lowat", "devnull", "self"]),
                        max_size=3))
    close_early = draw(st.sampled_from(["no", "before-send", "after-send"]))
    return payload, fds, close_early


def _fd_of(kind, keep, sock):
    if kind == "token":
        r, w = os.pipe()
        os.write(w, b"fuzz-token")
        os.close(w)
        return r
    if kind in ("socket", "lowat"):
        a, b = socket.socketpair()
        if kind == "lowat":
            a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1 << 16)
            b.send(b"x")
        keep.append(b)
        return a.detach()
    if kind == "devnull":
        return os.open("/dev/null", os.O_RDONLY)
    return os.dup(sock.fileno())  # "self": the connection's own socket


def test_fuzz_handshake(fuzz_server):
    need_root()
    s = fuzz_server
    sids = []

    @FUZZ
    @given(handoffs())
    def one(case):
        payload, kinds, close_early = case
        sid = s.new_session()
        resp = s.srv.wrap_init(sid, {})  # root, in-process: same-uid layout, root admitted
        path = resp["notify_socket"]
        keep = []
        fds = []
        wrapper = None
        sock = connect_unix(path, 5)
        try:
            if payload == b"wrapper":
                r, w = os.pipe()
                wrapper = os.fork()
                if wrapper == 0:
                    os.close(w)
                    os.read(r, 1)
                    os._exit(0)
                os.close(r)
                keep.append(w)
                payload = wire.encode_metadata(wrapper)
            fds = [_fd_of(k, keep, sock) for k in kinds]
            if close_early != "before-send":
                try:
                    wire.send_fds(sock, payload or b"\0", fds)
                except OSError:
                    pass
            if close_early == "no":
                sock.settimeout(5)
                try:
                    sock.recv(1)  # a status byte or EOF, within the handshake deadline
                except socket.timeout:
                    raise AssertionError("the server neither answered nor closed") from None
                except OSError:
                    pass
        finally:
            sock.close()
            wire.close_fds(fds)
            for k in keep:
                if isinstance(k, int):
                    os.close(k)
                else:
                    k.close()
            if wrapper:
                os.waitpid(wrapper, 0)
        sids.append(sid)

    one()
    wait_for(lambda: s.srv.live_wraps() == 0, 15, what="fuzzed wraps over")
    assert s.wrap_dirs() == []
    # Every loop ended with exactly one final event; a token came only from our fds.
    for sid in sids:
        final = [e for e in s.srv.events(sid)["events"]
                 if e["type"] in ("handoff_ok", "handoff_failed", "window_expired")]
        assert len(final) == 1, final
        if final[0]["type"] == "handoff_ok":
            assert final[0]["token"] in ("fuzz-token", "x"), final


# ------------------------------------------------------------------------- soak


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def owner_wrap(api: str) -> bool:
    return WrapClient(api="unix:" + api, timeout=10).run()["ok"]


def attacker_noise(api: str, rounds: int) -> int:
    from .helpers import http
    n = 0
    for i in range(rounds):
        st_, sess = http(api, "POST", "/api/v1/sessions", {})
        if st_ == 201:
            http(api, "POST", f"/api/v1/sessions/{sess['id']}/wrap-init",
                 {"agent_args": ["a" * 200]})
        http(api, "GET", "/nope/" + "x" * (i % 300))
        http(api, "POST", "/api/v1/sessions/s-nope/wrap-init", b"{bad")
        n += 1
    return n


def test_soak_no_growth(servers):
    need_root()
    s = servers("hardened", accept_window=0.5, handshake_timeout=0.3)

    def cycle(n):
        for i in range(n):
            assert run_as(OWNER_UID, owner_wrap, s.api_path), f"owner wrap {i} failed"
        run_as(INTRUDER_UID, attacker_noise, s.api_path, max(1, n // 5))
        for _ in range(3):  # a root reader, as the harness
            for sid in list(s.srv.sessions)[-3:]:
                s.srv.events(sid)

    def settled():
        wait_for(lambda: s.srv.live_wraps() == 0, 10, what="wraps over")
        wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("wrap-")],
                 5, what="accept loops over")
        return fd_count(), threading.active_count(), len(s.wrap_dirs()), rss_kib()

    cycle(15)  # warm-up: caches, allocator arenas, first sessions
    fds0, threads0, dirs0, rss0 = settled()
    started = time.monotonic()
    cycle(SOAK_CYCLES)
    fds1, threads1, dirs1, rss1 = settled()
    took = time.monotonic() - started
    assert (fds1, threads1, dirs1) == (fds0, threads0, dirs0), (
        f"growth after {SOAK_CYCLES} cycles in {took:.1f}s: fds {fds0}->{fds1}, "
        f"threads {threads0}->{threads1}, dirs {dirs0}->{dirs1}")
    # RSS: sessions are kept (bounded per uid) so some growth is expected up to the
    # per-uid session cap; beyond the allocator's slack it is a leak.
    assert rss1 - rss0 < 4096, f"RSS grew {rss1 - rss0} KiB in {SOAK_CYCLES} cycles"
