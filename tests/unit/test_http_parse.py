"""The API's own request-head parser against ``http.server`` + ``email``, which it replaced.

Same bytes in, same outcome out: the error answered (status and message), a close without
an answer, or the parsed method, path, version, header values and ``100 Continue``.
Both read what the event loop read, ending at EOF or at a deadline (``timed_out``).
"""

from __future__ import annotations

import io
import os
import re
import socket
from http.server import BaseHTTPRequestHandler

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wrapref import api

NAMES = ["Content-Length", "Transfer-Encoding", "Expect", "Host", "Origin", "Sec-Fetch-Site",
         "Content-Type", "Connection", "From", "X"]
EXAMPLES = int(os.environ.get("WRAPLAB_FUZZ_EXAMPLES", "80")) * 5
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


class _Replay(io.RawIOBase):
    """The read bytes, then EOF, or ``socket.timeout`` when the read stopped at a deadline."""

    def __init__(self, data: bytes, timed_out: bool):
        super().__init__()
        self.data, self.pos, self.timed_out = data, 0, timed_out

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), len(self.data) - self.pos)
        if n == 0 and self.timed_out:
            raise socket.timeout("deadline")
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class Reference(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, data: bytes, timed_out: bool):  # no socket: the bytes only
        self.rfile = io.BufferedReader(_Replay(data, timed_out))
        self.wfile = io.BytesIO()
        self.error = None

    def send_error(self, code, message=None, explain=None):
        self.error = ("error", code, message or self.responses[code][0])

    def log_message(self, format, *args):  # noqa: A002
        pass

    def outcome(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return self.error
            if not self.raw_requestline or not self.parse_request():
                return self.error or ("close",)
        except TimeoutError:
            return ("close",)
        return ("ok", self.command, self.path, self.request_version,
                {n: self.headers.get_all(n) or [] for n in NAMES}, self.wfile.getvalue())


class Lean(api.APIHandler):
    error = None

    def send_error(self, status, message=None):
        self.error = ("error", status, message or api._PHRASES[status])

    def outcome(self):
        try:
            if not self.read_head():
                return self.error or ("close",)
        except api._Timeout:
            return ("close",)
        return ("ok", self.command, self.path, self.request_version,
                {n: self.header_all(n) for n in NAMES}, b"".join(self.out))


def check(data: bytes, timed_out: bool = False):
    want = Reference(data, timed_out).outcome()
    got = Lean(None, None, data, timed_out).outcome()
    assert got == want, data[:300]
    return got


CASES = [
    b"", b"\r\n", b"\r\n\r\n", b"\x00\x01 garbage\r\n\r\n", b"GET /healthz\r\n\r\n",
    b"GET /healthz", b"POST /healthz\r\n\r\n", b"GET  /a  HTTP/1.1 \r\n\r\n",
    b"GET\x1c/a\x1cHTTP/1.1\r\n\r\n", b"G\x85T /a HTTP/1.1\r\n\r\n", b"GET /a HTTP/1.1 x\r\n\r\n",
    b"GET //a//b HTTP/1.1\r\n\r\n", b"GET /a HTTP/2\r\n\r\n", b"GET /a HTTP/2.0\r\n\r\n",
    b"GET /a HTTP/1.\xb2\r\n\r\n", b"GET /a HTTP/01.1\r\n\r\n", b"GET /a HTTP/1.10\r\n\r\n",
    b"GET /a http/1.1\r\n\r\n", b"GET /a HTTP/12345678901.1\r\n\r\n", b"GET /a HTTP/1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET /a HTTP/1.0\r\nExpect: 100-Continue\r\n\r\n",
    b"GET /a HTTP/1.1\r\nExpect:  100-continue \r\n\r\n",
    b"GET /a HTTP/1.1\r\nFrom x\r\nContent-Length: 3\r\nFrom y\r\n z\r\nX: 1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nX: a\r\n b\r\n\tc\r\nx: d\r\n\r\n",
    b"GET /a HTTP/1.1\r\n y\r\nX: a\r\n:bad\r\n z\r\nX: b\r\n",
    b"GET /a HTTP/1.1\r\nContent-Length: 2\rX: y\r\n\r\n",
    b"GET /a HTTP/1.1\r\nbogus line\r\nContent-Length: 2\r\n\r\n",
    b"GET /a HTTP/1.1\r\nContent-Length :2\r\nX: 1\r\n\r\n",
    b"GET /a HTTP/1.1\r\nContent-Length:\t 2\t\r\nX:\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n \r\n\r\n",
    b"GET /a HTTP/1.1\nX: 1\n\nbody", b"GET /a HTTP/1.1\rX: 1\r\r", b"GET /a HTTP/1.1\r\nX: 1\r",
    b"GET /a HTTP/1.1\r\nX: \xe9\xff\r\n\r\n",
    b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 98 + b"\r\n",
    b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 99 + b"\r\n",
    b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 100,
    b"GET /a HTTP/1.1\r\nX: " + b"a" * 65531 + b"\r\n\r\n",
    b"GET /a HTTP/1.1\r\nX: " + b"a" * 65532 + b"\r\n\r\n",
    b"GET /" + b"a" * 65520 + b" HTTP/1.1\r\n\r\n",
    b"GET /" + b"a" * 65530 + b" HTTP/1.1\r\n\r\n",
    b"GET /" + b"a" * 65531 + b"\n",
    b"GET /" + b"a" * 65532 + b"\n",
]


@pytest.mark.parametrize("timed_out", [False, True])
@pytest.mark.parametrize("data", CASES, ids=range(len(CASES)))
def test_head_parsed_as_http_server_does(data, timed_out):
    check(data, timed_out)


def test_a_few_outcomes_spelled_out():
    assert check(b"GET /a HTTP/1.1\r\nX: a\r\n b\r\n\r\n")[4]["X"] == ["a\r\n b"]
    assert check(b"GET /a HTTP/2.0\r\n\r\n") == ("error", 505, "Invalid HTTP version (2.0)")
    assert check(b"GET /a HTTP/1.1\r\nX: 1", timed_out=True) == ("close",)
    assert check(b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 99 + b"\r\n")[0] == "ok"
    assert check(b"GET /a HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n") == (
        "error", 431, "Too many headers")
    assert check(b"GET /" + b"a" * 65536 + b"\n")[:2] == ("error", 414)
    assert check(b"GET //x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n")[2:4] == ("/x", "HTTP/1.1")


_piece = st.sampled_from([
    "GET", "POST", "HEAD", "get", " ", "  ", "\t", "\x0b", "\x1c", "\x85", "\xa0", "/", "//",
    "/healthz", "?q", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/", "1", ".", "\xb2", "\r\n",
    "\n", "\r", "\r\n\r\n", ":", ": ", "From ", "Content-Length", "Expect", "100-continue",
    "Host", "X", "x", "0", "2", "-", "\x00", "\xff",
]) | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=6)


@FUZZ
@given(st.lists(_piece, max_size=40).map("".join), st.booleans())
def test_fuzz_head_parsed_as_http_server_does(text, timed_out):
    check(text.encode("latin-1"), timed_out)


@FUZZ
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b": ", b"\n\r"]),
                max_size=30).map(b"".join))
def test_the_heads_end_is_where_the_blank_line_regex_ends(data):
    # The event loop hands the head over at the first blank line; it once searched with
    # this regex, which tried every byte.
    m = re.search(rb"\r?\n\r?\n", data)
    assert api._head_end(data) == (m.end() if m else None)
    assert api._head_end(bytearray(data)) == (m.end() if m else None)
