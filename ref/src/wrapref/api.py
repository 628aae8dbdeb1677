"""The HTTP/JSON API of the reference wrap server (SPEC.md §1, docs/design.md §1).

A small HTTP/1.x server of its own over the server's event loop (:mod:`wrapref.loop`),
on a Unix-stream socket (default ``/run/wrapref/api.sock``, mode 0666) and, optionally,
on loopback TCP; no thread per connection.  One request per connection: the loop reads
it (:func:`serve_connection`), :class:`APIHandler` parses, routes and answers it, the
loop sends the answer and closes.  Routes::

    POST /api/v1/sessions                   -> 201 {"id": ...}
    POST /api/v1/sessions/{id}/wrap-init    -> 200 {...}
    GET  /api/v1/sessions/{id}/events       -> 200 {"session": id, "events": [...]}
    GET  /healthz                           -> 200 {"ok": true, ...}

Threat model: every local user can reach the Unix API, and anything that can
reach loopback can reach the TCP API.  So every read is bounded: the request line
and each header line (64 KiB: 414/431), the header count (431), the whole head
(1 MiB), the body (Content-Length only, strict rules 411/400/501, a size limit 413),
and time (a per-read timeout, a body deadline 408, a whole-request deadline, H22);
the request line and headers are parsed as ``http.server`` and ``email`` parse them
(same answers, same limits) without their cost.  JSON is parsed strictly (UTF-8 only,
no NaN/Infinity, no duplicate keys, objects only, no NUL in strings); every error is
``{"error": msg}`` and leaves nothing behind.  The caller's identity on the Unix API
comes from SO_PEERCRED of the connection.  TCP binds are refused unless the address
is loopback.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import selectors
import socket
import stat
import sys
import threading
import time

from . import __version__, wire
from .observe import RejectionLimiter
from .server import Peer, RequestError

__all__ = [
    "APIHandler",
    "UnixAPIServer",
    "TCPAPIServer",
    "make_api_server",
    "parse_api",
    "parse_json_object",
    "parse_headers",
    "UsageError",
]


class UsageError(ValueError):
    """A bad ``--api`` value."""


def parse_api(spec: str, server_side: bool = True):
    """``unix:PATH`` -> ("unix", PATH); ``tcp:HOST:PORT`` -> ("tcp", (host, port)).

    On the server side a TCP host must be loopback.
    """
    kind, sep, rest = spec.partition(":")
    if not sep or not rest:
        raise UsageError(f"invalid --api {spec!r}: want unix:PATH or tcp:HOST:PORT")
    if kind == "unix":
        return "unix", rest
    if kind != "tcp":
        raise UsageError(f"invalid --api {spec!r}: want unix:PATH or tcp:HOST:PORT")
    host, sep, port = rest.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"invalid --api {spec!r}: want tcp:HOST:PORT")
    if server_side:
        if host == "localhost":
            host = "127.0.0.1"
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise UsageError(f"refusing non-loopback TCP API address {host!r}")
    return "tcp", (host, int(port))


# ------------------------------------------------------------------ strict JSON


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name):
    raise ValueError(f"{name} is not valid JSON")


def _check_nul(value) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("NUL character in string")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def parse_json_object(body: bytes) -> dict:
    """Strictly parse *body* as a JSON object; raise RequestError(400) otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "invalid json: body is not UTF-8") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        _check_nul(obj)
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, f"invalid json: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise RequestError(400, "invalid json: expected an object")
    return obj


# ---------------------------------------------------------------------- handler

_SESSION_PATH = re.compile(r"\A/api/v1/sessions/([^/]+)/(wrap-init|events)\Z")
_DIGITS = re.compile(r"\A[0-9]+\Z")
#: A line of the header block (``email``'s test): a name and a colon, a continuation,
#: or an mbox "From " line; the first line that is none of these ends the block.
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
#: The reason phrases of the statuses the API answers (anything else: none).
_PHRASES = {
    100: "Continue", 200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    411: "Length Required", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class _Timeout(Exception):
    """The request's bytes ended at a deadline (H22) before its head did."""


_date_cache = (None, "")  # (whole second, its date): answers within a second share it


def _http_date(timestamp: float) -> str:
    """RFC 7231 IMF-fixdate: ``Thu, 01 Jan 1970 00:00:00 GMT``."""
    global _date_cache
    second = int(timestamp)
    cached = _date_cache
    if cached[0] == second:
        return cached[1]
    t = time.gmtime(second)
    text = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
    _date_cache = (second, text)
    return text


def parse_headers(lines) -> dict:
    """``{lower-case name: [values]}`` from the raw header lines (the blank line included).

    As ``http.server`` hands them to ``email``'s parser: lines split at CRLF, CR or
    LF; the block ends at the first line that is not a header line (:data:`_HEADER_LINE`);
    a line starting with a space or tab continues the previous header (kept verbatim,
    line breaks included); "From " lines and lines with an empty name are skipped; a value
    loses the spaces and tabs after the colon and the line breaks at its end.
    """
    text = b"".join(lines).decode("iso-8859-1")
    headers = {}
    name = None
    value = []
    for line in io.StringIO(text, newline="").readlines():
        if not _HEADER_LINE.match(line):
            break
        if line[0] in " \t":
            if name is not None:
                value.append(line)
            continue
        if name is not None:
            headers.setdefault(name, []).append("".join(value).rstrip("\r\n"))
            name = None
        if line.startswith("From "):
            continue
        i = line.find(":")
        if i > 0:
            name = line[:i].lower()
            value = [line[i + 1:].lstrip(" \t")]
    if name is not None:
        headers.setdefault(name, []).append("".join(value).rstrip("\r\n"))
    return headers


class APIHandler:
    """One API request, read in full by the event loop: parsed, routed, answered.

    ``APIHandler(api_server, conn, data, timed_out).handle()`` returns the answer's bytes
    (empty: close without one); nothing here blocks or touches the socket beyond
    SO_PEERCRED.  *data* is all the loop read; *timed_out* says the loop stopped reading
    at a deadline (else the data ended at EOF or where the loop had enough).  The request
    line and headers are read as ``http.server`` (Python 3.11) reads them, with its limits
    and answers: a line longer than :attr:`max_line` is 414 (request line) or 431, more
    than :attr:`max_headers` lines 431, a malformed request line or version 400, HTTP/2
    and later 505, a two-word ``GET`` is HTTP/0.9 (the answer without status line and
    headers, unless the head itself is in error); ``Expect: 100-continue`` on HTTP/1.1
    gets ``100 Continue`` before the answer.  Every method is routed (405 or 404, never
    501).  One request per connection: every answer says ``Connection: close``.
    """

    protocol_version = "HTTP/1.1"
    server_version = "wrapref/" + __version__
    sys_version = "Python/" + sys.version.split()[0]
    #: Per-recv timeout while reading the request line and headers.
    timeout = 10
    #: Total seconds allowed for reading the body.
    body_timeout = 5.0
    #: Largest body read.
    max_body = 64 * 1024
    #: After an error answer, unread input is drained (at most this much, this long)
    #: so that closing does not reset the connection before the client reads the error.
    drain_limit = 1024 * 1024
    drain_timeout = 0.5
    #: H22: seconds for the whole request (line, headers, body), however it trickles in.
    request_timeout = 10.0
    #: Longest request line or header line, and most header lines (the blank line
    #: ending them included): http.server's limits.
    max_line = 65536
    max_headers = 100

    def __init__(self, server, connection, data: bytes, timed_out: bool = False, peer=None):
        self.server = server
        self.connection = connection
        self.data = data
        self.pos = 0
        self.timed_out = timed_out
        self.command = None
        self.path = None
        self.request_version = "HTTP/0.9"
        self.headers = {}
        self.out = []
        self.error_sent = False
        self._peer = peer  # the caller, when the accept already read it (else on demand)

    @property
    def wrap_server(self):
        return self.server.wrap_server

    def handle(self) -> bytes:
        """Parse, route and answer the request: the answer's bytes."""
        try:
            if self.read_head():
                self.route()
        except _Timeout:
            pass  # the whole-request deadline passed in the head (H22): close, no answer
        return b"".join(self.out)

    # -- the request's head ----------------------------------------------------------

    def read_line(self) -> bytes:
        """The next line (LF included), at most ``max_line + 1`` bytes; at the end of the
        data, what is left (b"" at EOF), or :class:`_Timeout` after a deadline."""
        data, start = self.data, self.pos
        limit = start + self.max_line + 1
        end = data.find(b"\n", start, limit)
        if end >= 0:
            end += 1
        elif len(data) >= limit:
            end = limit
        elif self.timed_out:
            raise _Timeout()
        else:
            end = len(data)
        self.pos = end
        return data[start:end]

    def read_head(self) -> bool:
        """Request line and headers; False when there is nothing to route (answered or
        closing)."""
        line = self.read_line()
        if len(line) > self.max_line:
            self.command = self.request_version = ""
            self.send_error(414)
            return False
        if not line or not self.parse_request_line(line):
            return False
        try:
            self.headers = parse_headers(self.read_header_lines())
        except RequestError as exc:
            self.send_error(exc.status, exc.message)
            return False
        expect = self.header("Expect") or ""
        if expect.lower() == "100-continue" and self.request_version >= "HTTP/1.1":
            self.out.append(f"{self.protocol_version} 100 Continue\r\n\r\n".encode())
        return True

    def parse_request_line(self, raw: bytes) -> bool:
        """``METHOD PATH VERSION`` or ``GET PATH`` (HTTP/0.9); False after an answer, or
        for a blank line (closed without one)."""
        line = str(raw, "iso-8859-1").rstrip("\r\n")
        words = line.split()
        if not words:
            return False
        if len(words) >= 3:
            version = words[-1]
            number = self.version_number(version)
            if number is None:
                self.send_error(400, f"Bad request version ({version!r})")
                return False
            if number >= (2, 0):
                self.send_error(505, f"Invalid HTTP version ({version[5:]})")
                return False
            self.request_version = version
        if not 2 <= len(words) <= 3:
            self.send_error(400, f"Bad request syntax ({line!r})")
            return False
        command, path = words[:2]
        if len(words) == 2 and command != "GET":
            self.send_error(400, f"Bad HTTP/0.9 request type ({command!r})")
            return False
        self.command = command
        self.path = "/" + path.lstrip("/") if path.startswith("//") else path
        return True

    @staticmethod
    def version_number(version: str):
        """``HTTP/M.N`` -> (M, N) (digits only, at most 10 each), else None."""
        if not version.startswith("HTTP/"):
            return None
        parts = version[5:].split(".")
        if len(parts) != 2 or not all(p.isdigit() and len(p) <= 10 for p in parts):
            return None
        try:
            return int(parts[0]), int(parts[1])
        except ValueError:  # str.isdigit() says yes to "²"
            return None

    def read_header_lines(self) -> list:
        lines = []
        while True:
            line = self.read_line()
            if len(line) > self.max_line:
                raise RequestError(431, "Line too long")
            lines.append(line)
            if len(lines) > self.max_headers:
                raise RequestError(431, "Too many headers")
            if line in (b"\r\n", b"\n", b""):
                return lines

    def header(self, name: str):
        """The first value of header *name* (any case), or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def header_all(self, name: str) -> list:
        return self.headers.get(name.lower(), [])

    # -- the answer ------------------------------------------------------------------

    def send_error(self, status: int, message=None) -> None:
        """An error in the request's head: always with a status line (even for HTTP/0.9)."""
        if self.request_version == "HTTP/0.9":
            self.request_version = self.protocol_version
        self.send_json(status, {"error": message or _PHRASES.get(status, "error")})

    def send_json(self, status: int, obj) -> None:
        body = (json.dumps(obj) + "\n").encode("utf-8")
        if status >= 400:
            self.error_sent = True
            if self.server.should_log_error(self.peer_key()):
                self.wrap_server.log.warn("api error", status=status, method=self.command,
                                          path=self.path,
                                          error=obj.get("error") if isinstance(obj, dict)
                                          else None, peer_uid=self.peer().uid)
        if self.request_version != "HTTP/0.9":
            self.out.append((
                f"{self.protocol_version} {status} {_PHRASES.get(status, '')}\r\n"
                f"Server: {self.server_version} {self.sys_version}\r\n"
                f"Date: {_http_date(time.time())}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n").encode("latin-1"))
        if self.command != "HEAD":
            self.out.append(body)

    def peer_key(self):
        peer = self.peer()
        return peer.uid if peer.uid is not None else peer.transport

    def peer(self) -> Peer:
        if self._peer is None:
            self._peer = self.read_peer()
        return self._peer

    def read_peer(self) -> Peer:
        return self.server.read_peer(self.connection)

    # -- body ------------------------------------------------------------------------

    def read_body(self, required: bool) -> bytes:
        """The body by Content-Length, within the size limit; what the loop read of it."""
        if self.header_all("Transfer-Encoding"):
            raise RequestError(501, "Transfer-Encoding is not supported; send Content-Length")
        lengths = self.header_all("Content-Length")
        if len(lengths) > 1:
            raise RequestError(400, "duplicated Content-Length")
        if not lengths:
            if required:
                raise RequestError(411, "Content-Length required")
            return b""
        value = lengths[0].strip()
        if value.startswith("-"):
            raise RequestError(400, "negative Content-Length")
        if not _DIGITS.match(value):
            raise RequestError(400, f"invalid Content-Length {value[:40]!r}")
        digits = value.lstrip("0") or "0"
        # more digits than the limit has is more than the limit (and maybe past int()'s)
        length = self.max_body + 1 if len(digits) > len(str(self.max_body)) else int(digits)
        if length > self.max_body:
            raise RequestError(413, f"body too large (limit {self.max_body} bytes)")
        body = self.data[self.pos:self.pos + length]
        self.pos += len(body)
        if len(body) < length:
            if self.timed_out:
                raise RequestError(408, "timed out reading the request body")
            raise RequestError(400, f"incomplete body: {len(body)} of {length} bytes")
        return body

    # -- routing ---------------------------------------------------------------------

    def route(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if self.server.transport == "tcp" and self.wrap_server.profile.refuse_browsers:
                self.refuse_browser()
            if path == "/healthz":
                self.allow("GET")
                self.read_body(required=False)
                self.send_json(200, self.wrap_server.healthz())
            elif path == "/api/v1/sessions":
                self.allow("POST")
                self.post_session()
            else:
                m = _SESSION_PATH.match(path)
                if not m:
                    raise RequestError(404, "not found")
                sid, action = m.group(1), m.group(2)
                if action == "wrap-init":
                    self.allow("POST")
                    self.post_wrap_init(sid)
                else:
                    self.allow("GET")
                    self.read_body(required=False)
                    self.send_json(200, self.wrap_server.events(sid, self.peer()))
        except RequestError as exc:
            self.send_json(exc.status, {"error": exc.message})
        except Exception as exc:  # the server keeps serving
            self.wrap_server.log.error("api: internal error", error=repr(exc))
            self.send_json(500, {"error": "internal error"})

    def refuse_browser(self) -> None:
        """H25: a web page can reach loopback TCP; what a browser sends is refused.

        Browsers add ``Origin`` to cross-origin and to every POST request, and
        ``Sec-Fetch-*``; DNS rebinding shows up as a ``Host`` that is not loopback;
        a request without preflight can only carry a "simple" content type.
        """
        if self.header("Origin") is not None or self.header("Sec-Fetch-Site"):
            raise RequestError(403, "browser requests are refused (Origin/Sec-Fetch present)")
        host = (self.header("Host") or "").strip().lower()
        if host.startswith("["):
            host = host[: host.find("]") + 1]
        elif host.count(":") == 1:
            host = host.split(":", 1)[0]
        if host not in _LOOPBACK_HOSTS:
            raise RequestError(403, "Host must be a loopback name")
        if self.command == "POST" and (self.header("Content-Length") or "0").strip() != "0":
            ctype = (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                raise RequestError(415, "Content-Type must be application/json")

    def allow(self, method: str) -> None:
        if self.command != method:
            raise RequestError(405, f"method {self.command[:20]} not allowed")

    def post_session(self) -> None:
        body = self.read_body(required=False)
        requested = None
        if body.strip():
            obj = parse_json_object(body)
            requested = obj.get("id")
            if requested is not None and not isinstance(requested, str):
                raise RequestError(400, "invalid session id: must be a string")
        session = self.wrap_server.create_session(requested, self.peer())
        self.send_json(201, {"id": session.id})

    def post_wrap_init(self, session_id: str) -> None:
        body = self.read_body(required=True)
        self.wrap_server.get_session(session_id, self.peer())  # 404 before 400 (B1)
        obj = parse_json_object(body)
        resp = self.wrap_server.wrap_init(session_id, obj, self.peer())
        self.send_json(200, resp)


# ------------------------------------------------------------ the event loop's API


def _head_end(buf) -> int | None:
    """Just past the head's end, the first blank line (what ``\\r?\\n\\r?\\n`` first
    matches), or None: the first LF followed by LF or CR LF ends it (two ``find`` calls,
    where the regex, with no literal to start from, tried every byte)."""
    i = buf.find(b"\n\r\n")
    j = buf.find(b"\n\n")
    if i < 0:
        return j + 2 if j >= 0 else None
    return i + 3 if j < 0 else min(i + 3, j + 2)


_EOF = object()


def _content_length(head: bytes):
    """The body length to read before handing over: the one valid Content-Length up to
    the body limit, else None (the handler answers without reading a body)."""
    lengths = []
    for line in head.split(b"\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            lengths.append(value.strip())
    if len(lengths) != 1 or not lengths[0].isdigit():
        return None
    digits = lengths[0].lstrip(b"0") or b"0"
    if len(digits) > len(str(APIHandler.max_body)):  # larger, and maybe past int()'s limit
        return None
    length = int(digits)
    return length if length <= APIHandler.max_body else None


def _recv(conn, buf: bytearray, limit: int):
    try:
        chunk = conn.recv(min(65536, limit))
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return _EOF
    if not chunk:
        return _EOF
    buf += chunk
    return len(chunk)


#: Most bytes of request line and headers read before handing over (the handler's own
#: limits, 64 KiB a line and 100 lines, answer 414/431 within this).
MAX_HEAD = 1024 * 1024


def serve_connection(api, conn, key, peer):
    """One API connection, an event-loop task: read the request within its limits and
    deadlines (H22), run the handler, send the answer, drain after an error, close."""
    try:
        conn.setblocking(False)
        handler = APIHandler
        now = time.monotonic()
        whole = now + handler.request_timeout if api.wrap_server.profile.bounded_api else None
        buf = bytearray()
        timed_out = eof = False
        # Request line and headers: what has arrived is read at once (usually the whole
        # request: no turn of the loop), then each wait within `timeout` (and the whole
        # deadline).
        end = None
        while end is None:
            end = _head_end(buf)
            if end is not None:
                break
            first = buf.split(b"\n", 1)
            if len(first) == 2 and len(first[0].split()) != 3:
                end = len(buf)  # not "METHOD PATH VERSION": no headers will be read
                break
            if len(buf) >= MAX_HEAD:
                timed_out = True  # hand over: past this the connection is closed
                end = len(buf)
                break
            got = _recv(conn, buf, MAX_HEAD - len(buf) + 1)
            if got is _EOF:
                eof = True
                end = len(buf)
                break
            if got is not None:
                continue
            deadline = time.monotonic() + handler.timeout
            if whole is not None:
                deadline = min(deadline, whole)
            if not (yield (conn, deadline)):
                if not buf:
                    return  # nothing came in time: close without an answer
                timed_out = True
                end = len(buf)
                break
        length = None if (timed_out or eof) else _content_length(bytes(buf[:end]))
        if length:
            want = end + length
            deadline = time.monotonic() + handler.body_timeout
            if whole is not None:
                deadline = min(deadline, whole)
            while len(buf) < want:
                if not (yield (conn, deadline)):
                    timed_out = True
                    break
                if _recv(conn, buf, want - len(buf)) is _EOF:
                    break
        h = handler(api, conn, bytes(buf), timed_out, peer)
        answer = memoryview(h.handle())
        while answer:
            try:
                sent = conn.send(answer)
            except (BlockingIOError, InterruptedError):
                if not (yield (conn, time.monotonic() + handler.timeout, selectors.EVENT_WRITE)):
                    break
                continue
            except OSError:
                break
            answer = answer[sent:]
        if h.error_sent:
            yield from _drain(conn, handler)
    finally:
        if key != ():
            api.release_worker(key)
        api.shutdown_request(conn)


def _drain(conn, handler):
    """After an error answer, read what the client still sends (bounded in bytes and
    time) so that closing does not reset the connection before it read the answer."""
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = time.monotonic() + handler.drain_timeout
    left = handler.drain_limit
    while left > 0:
        if not (yield (conn, deadline)):
            return
        try:
            chunk = conn.recv(min(left, 65536))
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:
            return
        if not chunk:
            return
        left -= len(chunk)


# ---------------------------------------------------------------------- servers


class _APIServer:
    """A listening API socket (bound and listening once made) and its limits; its
    connections are served by the :meth:`serve` task."""

    address_family = socket.AF_UNIX
    request_queue_size = 128
    transport = None
    spec = None
    #: H22: most connections served at once, and per peer uid (TCP: all callers one key).
    max_workers = 64
    max_workers_per_uid = 8

    def __init__(self, address, wrap_server):
        self.wrap_server = wrap_server
        self._active = {}
        self._active_lock = threading.Lock()
        self._error_counts = {}
        self._error_limiter = RejectionLimiter(True)
        self.server_address = address
        self.socket = socket.socket(self.address_family, socket.SOCK_STREAM)
        try:
            self.server_bind()
            self.socket.listen(self.request_queue_size)
        except BaseException:
            self.server_close()
            raise

    def server_close(self) -> None:
        self.socket.close()

    def should_log_error(self, key) -> bool:
        """H21: API error lines rate-limited per peer uid (counts in the line)."""
        if not self.wrap_server.profile.bounded_logs:
            return True
        with self._active_lock:
            n = self._error_counts[key] = self._error_counts.get(key, 0) + 1
            return self._error_limiter.should_log(key, n)

    def read_peer(self, request) -> Peer:
        """The caller of *request*, read once at the accept (SO_PEERCRED on Unix)."""
        if self.transport == "unix":
            try:
                cred = wire.peercred(request)
            except OSError:
                return Peer("unix")
            return Peer("unix", cred.uid, cred.pid, cred.gid)
        return Peer("tcp")

    @staticmethod
    def connection_key(peer: Peer):
        """What a connection counts against (H22): the caller's uid; without one, "unknown"
        (a Unix peer whose credentials could not be read) or "tcp" (every TCP caller)."""
        if peer.uid is not None:
            return peer.uid
        return "unknown" if peer.transport == "unix" else "tcp"

    def admit(self, request, peer: Peer):
        """H22: a bounded number of connections served at once, at most a few per uid.

        Returns the key the connection counts against (release it with
        :meth:`release_worker`), ``()`` when nothing is counted, or None after answering
        503 and closing it.
        """
        if not self.wrap_server.profile.bounded_api:
            return ()
        key = self.connection_key(peer)
        with self._active_lock:
            total = sum(self._active.values())
            mine = self._active.get(key, 0)
            admitted = total < self.max_workers and mine < self.max_workers_per_uid
            if admitted:
                self._active[key] = mine + 1
        if not admitted:
            self.refuse_busy(request, key)
            return None
        return key

    def serve(self, loop):
        """The accept task (an event-loop generator): every connection becomes a
        :func:`serve_connection` task; no thread per connection."""
        listener = self.socket
        listener.setblocking(False)
        while True:
            yield (listener, None)
            for _ in range(64):  # a batch, then the others get their turn
                try:
                    conn, _addr = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    break
                except OSError as exc:
                    self.wrap_server.log.error("api: accept failed",
                                               error=wire.errno_name(exc.errno))
                    yield (None, time.monotonic() + 0.05)  # EMFILE and the like: back off
                    break
                peer = self.read_peer(conn)
                key = self.admit(conn, peer)
                if key is None:
                    continue
                loop.spawn(serve_connection(self, conn, key, peer))

    def release_worker(self, key) -> None:
        with self._active_lock:
            n = self._active.get(key, 0) - 1
            if n > 0:
                self._active[key] = n
            else:
                self._active.pop(key, None)

    def refuse_busy(self, request, key) -> None:
        """Answer 503 without blocking, then close (nothing is read)."""
        body = b'{"error": "too many connections"}\n'
        head = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        try:
            request.setblocking(False)
            request.send(head + body)
        except OSError:
            pass
        if self.should_log_error(key):
            self.wrap_server.log.warn("api busy: connection refused", peer=str(key))
        self.shutdown_request(request)

    def shutdown_request(self, request):
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        request.close()


class UnixAPIServer(_APIServer):
    """The Unix-socket API: mode 0666, parent created if missing, stale socket replaced."""

    transport = "unix"
    socket_mode = 0o666

    def __init__(self, path: str, wrap_server):
        self.spec = "unix:" + path
        self._inode = None
        super().__init__(path, wrap_server)

    def server_bind(self) -> None:
        path = self.server_address
        parent = os.path.dirname(path) or "."
        created = not os.path.isdir(parent)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if created and self.wrap_server.profile.explicit_modes:
            os.chmod(parent, 0o755)  # H24: whatever the umask (077 would lock users out)
        if self.wrap_server.profile.trusted_paths:
            self.wrap_server.check_trusted_dir(parent, "API socket directory")
        self.remove_stale(path)
        os.fchmod(self.socket.fileno(), self.socket_mode)
        self.socket.bind(path)
        os.chmod(path, self.socket_mode)  # bind applies the umask to the fd's mode
        st = os.lstat(path)
        self._inode = (st.st_dev, st.st_ino)

    @staticmethod
    def remove_stale(path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(f"refusing to replace {path}: not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale: nobody listens
            return
        finally:
            probe.close()
        raise OSError(f"another server is listening on {path}")

    def server_close(self) -> None:
        super().server_close()
        if self._inode is not None:
            try:
                st = os.lstat(self.server_address)
                if (st.st_dev, st.st_ino) == self._inode:
                    os.unlink(self.server_address)
            except OSError:
                pass
            self._inode = None


class TCPAPIServer(_APIServer):
    """The loopback TCP API."""

    transport = "tcp"
    address_family = socket.AF_INET

    def __init__(self, address, wrap_server):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, wrap_server)
        host, port = self.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        self.spec = f"tcp:{shown}:{port}"

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()


def make_api_server(spec: str, wrap_server):
    kind, addr = parse_api(spec, server_side=True)
    if kind == "unix":
        return UnixAPIServer(addr, wrap_server)
    return TCPAPIServer(addr, wrap_server)
