"""The reference wrap server: sessions, wrap-init, and one accept loop per socket.

:class:`WrapServer` is the whole server minus HTTP (see :mod:`wrapref.api`):
it creates sessions, performs wrap-init (resolve the caller, lay out the wrap
directory, start the accept loops) and records events.  It can be driven
directly from Python (tests do) or through the API listeners it starts.

A wrap-init produces a :class:`Wrap`: a :class:`~wrapref.wrapdir.WrapDir`
plus one :class:`AcceptLoop` per socket, a task of the server's one event loop
(:mod:`wrapref.loop`; no thread per wrap or request).  Each loop has one absolute
deadline (``accept_window``) that rejections never extend, reads SO_PEERCRED
on every accept, and serves at most one handoff: the first admitted peer's
(B19).  A hardened loop drops an admitted peer that stalls (sends nothing
before the handshake deadline, or hangs up without a byte) and keeps accepting
until the window ends (H7), so a stray connection cannot cost the owner the wrap.

Threat model (docs/protocol.md): the server is privileged; the API is reachable by
every local user (0666 socket); any local user may connect to any wrap socket
it can reach, send any bytes and fds, stall, or flood.  Which of those attacks
succeed depends on the profile -- that is the point of the reference: the
``agentsh`` profile reproduces upstream's gaps, ``hardened`` closes them.  No
real ptrace attach and no seccomp filter are performed; the would-be attach is
recorded in the event and the received fd is read for the client's token.
"""

from __future__ import annotations

import errno
import os
import re
import socket
import stat
import tempfile
import threading
import time

from . import wire
from .loop import EventLoop, Stopped
from .observe import EventLog, JSONLogger, RejectionLimiter
from .profiles import (
    CLEANUP_NOTIFY_OWNS,
    CLOEXEC_AGENTSH,
    CLOEXEC_RECVMSG,
    SIGNAL_RECV_FIRST_FD,
    UID_IDENTITY_IGNORED,
    Profile,
    get_profile,
)
from .wrapdir import WrapDir, WrapDirError, drive

__all__ = [
    "WrapServer",
    "Server",
    "Session",
    "Wrap",
    "AcceptLoop",
    "Peer",
    "RequestError",
    "UntrustedPath",
    "SESSION_ID_RE",
    "UID_MAX",
    "OVERFLOW_UID",
]

SESSION_ID_RE = re.compile(r"\A[A-Za-z0-9._-]{1,200}\Z")
UID_MAX = 4294967294  # (uid_t)-1 is "no change", never a uid
OVERFLOW_UID = 65534  # what unmapped ids look like from another user namespace
_GO_INT = (-(2**63), 2**63 - 1)  # encoding/json into a Go int


_ANY = object()  # _evict_session: any session may go


class UntrustedPath(OSError):
    """H18: a directory the server would rely on can be changed by another user."""


class RequestError(Exception):
    """An API error: HTTP *status* and the message for ``{"error": msg}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Peer:
    """Who is on the other end of an API request."""

    __slots__ = ("transport", "uid", "pid", "gid")

    def __init__(self, transport: str, uid=None, pid=None, gid=None):
        self.transport = transport  # "unix" | "tcp" | "local" (in-process call)
        self.uid = uid
        self.pid = pid
        self.gid = gid

    def __repr__(self) -> str:
        return f"Peer({self.transport}, uid={self.uid!r}, pid={self.pid!r})"


class Session:
    """A session: an id, its event list and (H23) the uid that created it.

    *owner* is the creator's SO_PEERCRED uid, or None when the creator has no
    kernel identity (TCP, an in-process call): such a session is anyone's.
    *quota_key* is what the creation counted against (H15).
    """

    def __init__(self, session_id: str, owner=None, quota_key=None, max_event_bytes=None):
        self.id = session_id
        self.created = time.time()
        self.owner = owner
        self.quota_key = quota_key
        self.events = EventLog(session_id, max_bytes=max_event_bytes)


# ------------------------------------------------------------------ accept loop


class AcceptLoop:
    """Accept on one wrap socket until one handoff is attempted or the window ends.

    A task of the server's :class:`~wrapref.loop.EventLoop`: every wait is a ``yield``
    (``ready = yield (sock, deadline)``), so no loop holds a thread while it waits.
    """

    #: Handshake failures that mean the peer never attempted a handoff (H7).
    stall_reasons = frozenset({"timeout", "eof"})
    #: Waits answered at once (without a turn of the event loop) in a row, at most.
    burst = 16

    def __init__(self, wrap: Wrap, kind: str, listener: socket.socket, deadline: float):
        self.name = f"wrap-{kind}-{wrap.name}"
        self.wrap = wrap
        self.server = wrap.server
        self.profile = wrap.server.profile
        self.kind = kind
        self.listener = listener
        self.deadline = deadline
        self.rejections = {}  # peer uid -> count
        self.limiter = RejectionLimiter(self.profile.rate_limit_logs)
        self.drop_limiter = RejectionLimiter(self.profile.rate_limit_logs)
        self.outcome = None
        self.dropped = 0  # stalled peers dropped (H7, drop_stalled_peers)
        self._drop = False
        self._ended = False  # loop_ended already called (H17: at the ptrace ACK)
        self._done = threading.Event()
        self._burst = 0
        self._started = False

    # -- plumbing ------------------------------------------------------------------

    @property
    def total_rejections(self) -> int:
        return sum(self.rejections.values())

    def event(self, type_: str, **fields) -> None:
        self.wrap.event(type_, kind=self.kind, **fields)

    def start(self) -> None:
        """Hand this loop to the server's event loop."""
        self._started = True
        self.server.loop.spawn(self.run(), on_exit=self._done.set)

    def join(self, timeout=None) -> None:
        if self._started:
            self._done.wait(timeout)

    def wait(self, sock, deadline, nonblocking: bool = False):
        """Wait until *sock* is readable (``yield from``): True, False on deadline; the
        event loop throws :class:`Stopped` here on shutdown.

        What is readable already is answered at once (one poll), at most
        :attr:`burst` times in a row: then the loop goes round, so a flooded loop
        cannot keep the others from their turn.  *nonblocking*: the caller's next call
        on *sock* cannot block, so within the burst it goes ahead without the poll (its
        EAGAIN says what the poll would have; the caller then waits without this flag).
        """
        if sock is not None and self._burst < self.burst:
            self._burst += 1
            if nonblocking:
                return True
            if wire.wait_readable([sock if isinstance(sock, int) else sock.fileno()], 0):
                return True
        self._burst = 0
        return (yield (sock, deadline))

    def run(self):
        try:
            yield from self.serve()
        except Stopped:  # the server is shutting down (thrown into every waiting loop)
            self.outcome = "shutdown"
            self.event("handoff_failed", peer_uid=None, peer_pid=None, reason="shutdown",
                       rejections=self.total_rejections)
        except Exception as exc:  # never let a loop die silently
            self.outcome = "error"
            self.server.log.error("wrap: accept loop failed", session=self.wrap.session.id,
                                  kind=self.kind, error=repr(exc))
            self.event("handoff_failed", peer_uid=None, peer_pid=None, reason="internal",
                       detail=repr(exc), rejections=self.total_rejections)
        finally:
            self.end_wrap()

    def end_wrap(self) -> None:
        """Tell the wrap this loop is over (once)."""
        if not self._ended:
            self._ended = True
            self.wrap.loop_ended(self)

    def serve(self):
        self.listener.setblocking(False)
        while True:
            if time.monotonic() >= self.deadline:
                self.outcome = "window_expired"
                self.event("window_expired", rejections=self.total_rejections,
                           dropped=self.dropped)
                self.server.log.info("wrap: accept window expired", session=self.wrap.session.id,
                                     kind=self.kind, rejections=self.total_rejections)
                return
            if not (yield from self.wait(self.listener, self.deadline)):
                continue
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.server.log.error("wrap: accept failed", kind=self.kind,
                                          error=wire.errno_name(exc.errno))
                    yield from self.wait(None, time.monotonic() + 0.05)  # back off
                    continue
                raise
            with conn:
                conn.setblocking(True)
                try:
                    cred = wire.peercred(conn)
                except OSError:
                    cred = wire.PeerCred(0, 0, 0)  # B15: creds all zero when unavailable
                verdict = self.admit(cred)
                if verdict is None:
                    yield from self.handshake(conn, cred)
                    if self._drop:  # a stalled peer, dropped: keep accepting (H7)
                        self._drop = False
                        continue
                    return
                self.reject(cred, verdict)
                if self.profile.stop_on_wrong_peer or verdict == "invalid_expected":
                    self.outcome = "ended_by_rejection"
                    self.event("handoff_failed", peer_uid=cred.uid, peer_pid=cred.pid,
                               reason="wrong_peer", rejections=self.total_rejections)
                    return

    # -- peer check (H6) -------------------------------------------------------------

    def admit(self, cred: wire.PeerCred):
        """None to serve this peer, else why not."""
        if not self.profile.peer_check:
            return None
        expected = self.wrap.expected_uid
        if expected is None:
            return None  # legacy: anyone
        if expected < 0:
            return "invalid_expected"  # B16: defence in depth, B4 blocks it
        if cred.uid != expected & 0xFFFFFFFF:  # Go compares uint32 (G6)
            return "wrong_uid"
        return None

    def reject(self, cred: wire.PeerCred, verdict: str) -> None:
        count = self.rejections.get(cred.uid, 0) + 1
        self.rejections[cred.uid] = count
        expected = self.wrap.expected_uid
        self.event("peer_rejected", peer_uid=cred.uid, peer_pid=cred.pid,
                   expected_uid=expected, count=count)
        if self.limiter.should_log(cred.uid, count):
            if self.kind == "ptrace":
                msg = "ptrace wrap: rejecting connection from unexpected UID"
            else:
                msg = f"wrap: rejecting {self.kind} connection from unexpected UID"
            if verdict == "invalid_expected":
                msg = f"wrap: {self.kind} accept loop: invalid caller UID"
            self.server.log.warn(msg, session=self.wrap.session.id, kind=self.kind,
                                 peer_uid=cred.uid, peer_pid=cred.pid, expected_uid=expected,
                                 count=count)

    # -- handshakes ------------------------------------------------------------------

    def handshake(self, conn: socket.socket, cred: wire.PeerCred):
        yield from getattr(self, "handshake_" + self.kind)(conn, cred)

    # An outcome is recorded in this order: the event (a reader who has the peer's answer
    # finds it), the answer the peer waits for, then the log line (the C anchor's order).

    def fail(self, conn, cred, reason: str, status=None, **fields) -> None:
        """Record a failed handoff; send *status* (notify/ptrace) best-effort.

        A stall (:attr:`stall_reasons`) under ``drop_stalled_peers`` is not the loop's
        end: it becomes a ``peer_dropped`` event and the loop accepts again.
        """
        if self.profile.drop_stalled_peers and reason in self.stall_reasons:
            self.drop(conn, cred, reason, status)
            return
        self.outcome = reason
        self.event("handoff_failed", peer_uid=cred.uid, peer_pid=cred.pid, reason=reason,
                   rejections=self.total_rejections, **fields)
        if status is not None:
            self.send_status(conn, status)
        self.server.log.warn(f"wrap: {self.kind} handoff failed", session=self.wrap.session.id,
                             kind=self.kind, reason=reason, peer_uid=cred.uid,
                             peer_pid=cred.pid, **fields)

    def drop(self, conn, cred, reason: str, status=None) -> None:
        self.dropped += 1
        self._drop = True
        self.event("peer_dropped", peer_uid=cred.uid, peer_pid=cred.pid, reason=reason,
                   count=self.dropped)
        if status is not None:
            self.send_status(conn, status)
        if self.drop_limiter.should_log(cred.uid, self.dropped):
            self.server.log.warn(f"wrap: dropped a stalled {self.kind} peer",
                                 session=self.wrap.session.id, kind=self.kind, reason=reason,
                                 peer_uid=cred.uid, peer_pid=cred.pid, count=self.dropped)

    def send_status(self, conn, status: int) -> bool:
        try:
            conn.sendall(bytes([status]))
            return True
        except OSError:
            return False

    def handshake_deadline(self):
        if self.profile.handshake_deadline_all:
            return time.monotonic() + self.server.handshake_timeout
        return None  # H7: agentsh sets no read deadline on notify/signal

    def receive_fd(self, conn, cred, exact: bool, status):
        """Receive one fd per the rules; return ``(data, fd, cloexec)`` or None."""
        deadline = self.handshake_deadline()
        cloexec = self.profile.cloexec == CLOEXEC_RECVMSG
        bufsize, maxfds = (wire.MAX_PAYLOAD, wire.MAX_FDS) if exact else (1, 1)
        try_now = True  # the peer sends as it connects: one recvmsg(MSG_DONTWAIT) first
        while True:
            if not (yield from self.wait(conn, deadline, try_now)):
                self.fail(conn, cred, "timeout", status)
                return None
            try:
                data, fds, flags = wire.recv_fds(conn, bufsize, maxfds, cloexec, dontwait=True)
                break
            except BlockingIOError:
                try_now = False  # nothing yet: wait for it
            except OSError as exc:
                self.fail(conn, cred, "recv_error", status, errno=wire.errno_name(exc.errno))
                return None
        if not data and not fds:
            self.fail(conn, cred, "eof", status)
            return None
        if exact:
            if flags & socket.MSG_CTRUNC:
                wire.close_fds(fds)
                self.fail(conn, cred, "ctrunc", status, fds=len(fds))
                return None
            if len(fds) != 1:
                wire.close_fds(fds)
                self.fail(conn, cred, "no_fds" if not fds else "too_many_fds", status,
                          fds=len(fds))
                return None
        elif not fds:
            self.fail(conn, cred, "no_fds", status, fds=0)
            return None
        fd, extra = fds[0], fds[1:]
        wire.close_fds(extra)
        return data, fd, wire.fd_cloexec(fd)

    def read_token(self, fd: int):
        """Read the token from the received *fd* until EOF, at most ``wire.TOKEN_LIMIT``
        bytes within the handshake timeout (as :func:`wrapref.wire.read_token`); None when
        nothing readable came."""
        nonblocking = self.profile.nonblocking_token_read
        try:
            if nonblocking:  # H16
                os.set_blocking(fd, False)
        except OSError:
            return None
        deadline = time.monotonic() + self.server.handshake_timeout
        raw = b""
        try_now = nonblocking  # a read that cannot block goes first: the token is there
        while len(raw) < wire.TOKEN_LIMIT and time.monotonic() < deadline:
            if not (yield from self.wait(fd, deadline, try_now)):
                break
            try:
                chunk = os.read(fd, wire.TOKEN_LIMIT - len(raw))
            except BlockingIOError:
                try_now = False  # nothing yet: wait for it
                continue
            except OSError:
                return None
            try_now = nonblocking
            if not chunk:
                break
            raw += chunk
        return raw.decode("utf-8", "replace") if raw else None

    def handshake_notify(self, conn, cred):
        got = yield from self.receive_fd(conn, cred, exact=True, status=wire.STATUS_FAIL)
        if got is None:
            return
        data, fd, cloexec = got
        try:
            if self.profile.cloexec == CLOEXEC_AGENTSH:
                os.set_inheritable(fd, False)  # B21: the kept notify fd, after the fact
            meta_pid = wire.parse_metadata(data)
            wrapper_pid = meta_pid if meta_pid else cred.pid  # B23
            if self.profile.validate_wrapper_pid:  # H10
                if meta_pid is None:
                    self.fail(conn, cred, "no_metadata", wire.STATUS_FAIL)
                    return
                why = self.server.check_wrapper_pid(wrapper_pid, cred)
                if why:
                    self.fail(conn, cred, "bad_wrapper_pid", wire.STATUS_FAIL,
                              wrapper_pid=wrapper_pid, detail=why)
                    return
            token = yield from self.read_token(fd)
            if token is None:
                self.fail(conn, cred, "token_unreadable", wire.STATUS_FAIL)
                return
        finally:
            wire.close_fds([fd])
        self.succeed(conn, cred, wire.STATUS_OK, token=token, wrapper_pid=wrapper_pid,
                     metadata=meta_pid is not None, cloexec=cloexec)

    def handshake_signal(self, conn, cred):
        exact = self.profile.signal_receive != SIGNAL_RECV_FIRST_FD
        got = yield from self.receive_fd(conn, cred, exact=exact, status=None)
        if got is None:
            return
        _data, fd, cloexec = got
        try:
            token = yield from self.read_token(fd)
        finally:
            wire.close_fds([fd])
        if token is None:
            self.fail(conn, cred, "token_unreadable")
            return
        self.succeed(conn, cred, token=token, cloexec=cloexec)

    def handshake_ptrace(self, conn, cred):
        # B28: a 10 s deadline (the handshake timeout) in every profile.
        deadline = time.monotonic() + self.server.handshake_timeout
        raw = b""
        while len(raw) < 4:
            if not (yield from self.wait(conn, deadline)):
                self.fail(conn, cred, "timeout", wire.NACK)
                return
            try:
                chunk = conn.recv(4 - len(raw))
            except OSError as exc:
                self.fail(conn, cred, "recv_error", wire.NACK, errno=wire.errno_name(exc.errno))
                return
            if not chunk:
                if raw:
                    self.fail(conn, cred, "short_read", wire.NACK, bytes=len(raw))
                else:
                    self.fail(conn, cred, "eof", wire.NACK)
                return
            raw += chunk
        pid = wire.decode_pid(raw)
        if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
            self.fail(conn, cred, "bad_pid", wire.NACK, pid=pid)
            return
        if self.profile.ptrace_pid_bound:  # H9
            why = self.server.check_ptrace_pid(pid, cred)
            if why:
                self.fail(conn, cred, "pid_not_peer", wire.NACK, pid=pid, detail=why)
                return
        keepalive_key = None
        if self.profile.keepalive_outside_wrap:  # H17
            keepalive_key = self.server.reserve_keepalive(cred.uid)
            if keepalive_key is None:
                self.fail(conn, cred, "keepalive_quota", wire.NACK, pid=pid)
                return
        try:
            if not self.succeed(conn, cred, wire.ACK, token=None, pid=pid, attach="simulated"):
                return
            if keepalive_key is not None:
                self.end_wrap()  # the wrap is done: slot, directory and listener go now
            yield from self.keepalive(conn)
        finally:
            if keepalive_key is not None:
                self.server.release_keepalive(keepalive_key)

    def keepalive(self, conn):
        """B29: hold the ptrace connection until the peer closes (or the server stops)."""
        while True:
            yield from self.wait(conn, None)
            try:
                if not conn.recv(4096):
                    return
            except OSError:
                return

    def succeed(self, conn, cred, status=None, **fields) -> bool:
        """Record a handoff that worked; send *status* (notify/ptrace).  False when that
        answer could not be sent."""
        self.outcome = "ok"
        self.event("handoff_ok", peer_uid=cred.uid, peer_pid=cred.pid,
                   rejections=self.total_rejections, **fields)
        sent = status is None or self.send_status(conn, status)
        self.server.log.info(f"wrap: {self.kind} handoff ok", session=self.wrap.session.id,
                             kind=self.kind, peer_uid=cred.uid, peer_pid=cred.pid)
        return sent


# ----------------------------------------------------------------------- wraps


class Wrap:
    """One wrap-init: its directory, its loops, and its cleanup policy (H11)."""

    wrapdir_class = WrapDir

    def __init__(self, server: WrapServer, session: Session, uid, expected_uid, uid_source: str,
                 transport: str):
        self.server = server
        self.session = session
        self.uid = uid  # what the directory layout gives access to
        self.expected_uid = expected_uid  # what the accept loops admit (None: anyone)
        self.uid_source = uid_source
        self.transport = transport
        self.dir = self.wrapdir_class(server.temp_base, session.id, server.profile, uid,
                                      server.backlog)
        self.loops = []
        self._lock = threading.Lock()
        self._live = 0
        self.name = None
        self.quota_key = None  # H15: what this wrap counts against (None: global cap only)

    def event(self, type_: str, **fields) -> None:
        self.session.events.add(type_, wrap=self.name, **fields)

    def setup(self, kinds) -> None:
        """Create the directory and sockets; on failure nothing is left."""
        d = self.dir
        try:
            d.create_dir()
            self.name = os.path.basename(d.path)
            for kind in kinds:
                try:
                    d.add_socket(kind)
                except WrapDirError:
                    raise
                except OSError as exc:
                    agentsh_signal = self.server.profile.signal_receive == SIGNAL_RECV_FIRST_FD
                    if kind == "signal" and agentsh_signal:
                        # B11: a failing signal listen only disables the signal filter.
                        self.server.log.warn("wrap: signal socket unavailable", error=str(exc),
                                             session=self.session.id)
                        continue
                    raise WrapDirError(f"wrap: listen {kind}: {exc}") from None
            d.finish()
        except BaseException:
            d.remove()
            raise

    def start(self) -> None:
        deadline = time.monotonic() + self.server.accept_window
        with self._lock:
            for kind, listener in list(self.dir.listeners.items()):
                self.loops.append(AcceptLoop(self, kind, listener, deadline))
            self._live = len(self.loops)
        for loop in self.loops:
            loop.start()

    def loop_ended(self, loop: AcceptLoop) -> None:
        self.dir.close_listener(loop.kind)  # B19
        with self._lock:
            self._live -= 1
            last = self._live == 0
        if not self.server.profile.robust_cleanup:
            self.end(loop, last)
            return
        self.server.run_steps(self.end_steps(loop, last))

    def removes_dir(self, loop: AcceptLoop, last: bool) -> bool:
        """Whether this loop's end removes the directory (H11)."""
        return last or (
            self.server.profile.cleanup == CLEANUP_NOTIFY_OWNS and loop.kind != "signal"
        )

    def end(self, loop: AcceptLoop, last: bool) -> None:
        """Remove the directory when this loop's end calls for it (H11); free the slot."""
        if self.removes_dir(loop, last):
            self.remove_dir()
        if last:
            self.server.wrap_finished(self)

    def end_steps(self, loop: AcceptLoop, last: bool):
        """H14's :meth:`end`: cleanup yields to the event loop while a big tree goes, and
        the slot is released whatever cleanup finds."""
        try:
            if self.removes_dir(loop, last):
                yield from self.remove_dir_steps()
        except Exception as exc:
            self.server.log.error("wrap: cleanup failed", session=self.session.id,
                                  dir=self.dir.path, error=repr(exc)[:200])
            self.event("cleanup_incomplete", dir=self.dir.path, error=str(exc)[:200])
        finally:
            if last:
                self.server.wrap_finished(self)

    def remove_dir(self) -> None:
        drive(self.remove_dir_steps())

    def remove_dir_steps(self):
        if (yield from self.dir.remove_files_steps()):
            self.event("dir_removed", dir=self.dir.path)
            self.server.log.info("wrap: directory removed", session=self.session.id,
                                 dir=self.dir.path)

    def join(self, timeout=None) -> None:
        for loop in self.loops:
            loop.join(timeout)


# ---------------------------------------------------------------------- server


class WrapServer:
    """The reference wrap server.

    ``WrapServer(profile="hardened", apis=["unix:/run/wrapref/api.sock"], ...)``;
    ``start()`` binds the API listeners, ``stop()`` removes everything.  Also a
    context manager.  ``create_session``/``wrap_init``/``events`` are the API
    operations, callable directly.
    """

    #: Seconds each accept loop stays open (one absolute deadline).
    accept_window = 30.0
    #: Seconds for a handshake after accept (H7; agentsh: ptrace only).
    handshake_timeout = 10.0
    #: Most sessions kept at once; at the limit the oldest session with no pending
    #: wrap is forgotten, and if there is none the answer is 503.
    max_sessions = 4096
    #: Most wraps pending at once (each holds a directory, fds and event-loop tasks): then 503.
    max_wraps = 1024
    #: Largest accepted request body.
    max_body = 64 * 1024
    #: H15: most sessions one uid keeps (at the limit its own oldest idle one goes).
    max_sessions_per_uid = 256
    #: H15: most wraps one uid has pending at once: then 503 for that uid only.
    max_wraps_per_uid = 128
    #: H17: most ptrace keepalives held per uid, and in all.
    keepalives_per_uid = 8
    max_keepalives = 256
    #: H21: longest log field (characters).
    max_log_field = 512
    #: H20: byte limits on request fields and on one session's events.
    max_command_bytes = 1024
    max_args = 64
    max_args_bytes = 4096
    max_event_bytes = 128 * 1024
    #: Default API listener.
    default_api = "unix:/run/wrapref/api.sock"
    #: What wrap-init answers for the wrapper (the reference runs none).
    wrapper_binary = "wrapref-unixwrap"
    wrap_class = Wrap

    def __init__(self, profile="hardened", apis=None, temp_base=None, accept_window=None,
                 handshake_timeout=None, signal_socket=False, ptrace_mode=False, backlog=None,
                 log=None):
        self.profile: Profile = get_profile(profile)
        self.apis = list(apis) if apis is not None else [self.default_api]
        self.temp_base = temp_base or tempfile.gettempdir()
        if accept_window is not None:
            self.accept_window = float(accept_window)
        if handshake_timeout is not None:
            self.handshake_timeout = float(handshake_timeout)
        self.signal_socket = bool(signal_socket)
        self.ptrace_mode = bool(ptrace_mode)
        self.backlog = int(backlog) if backlog is not None else self.profile.backlog
        if log is None or not hasattr(log, "log"):
            log = JSONLogger(log)
        self.log = log
        self.uid = os.geteuid()
        self.sessions = {}
        self.wraps = set()
        self._sessions_by_key = {}  # H15: quota key -> sessions held
        self._wraps_by_key = {}  # H15: quota key -> wraps pending
        self._keepalives = {}  # H17
        self._lock = threading.Lock()
        #: Every accept loop and handshake runs here (one thread, started by the first wrap).
        self.loop = EventLoop()
        self._stopped = False
        self.stopping = False
        self.listeners = []  # API servers (served as tasks of self.loop)
        self.bound_apis = []

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> WrapServer:
        from .api import make_api_server  # late: api imports this module

        if self.profile.bounded_logs and hasattr(self.log, "max_field"):
            self.log.max_field = self.max_log_field  # H21
        if self.profile.explicit_modes:
            self.check_umask()
        if self.profile.trusted_paths:
            self.check_trusted_dir(self.temp_base, "temp base")
        try:
            for spec in self.apis:
                srv = make_api_server(spec, self)
                self.listeners.append(srv)
                self.bound_apis.append(srv.spec)
            for srv in self.listeners:
                self.loop.spawn(srv.serve(self.loop))
        except BaseException:
            self.stop()
            raise
        self.log.info("serving", pid=os.getpid(), uid=self.uid, profile=self.profile.name,
                      apis=list(self.bound_apis), temp_base=self.temp_base)
        return self

    def check_umask(self) -> None:
        """H24: every mode is set explicitly; say so when the umask would have mattered."""
        mask = os.umask(0o022)
        os.umask(mask)
        if mask & 0o022 != 0o022 or mask & 0o055:
            self.log.warn("unusual umask: the server sets every mode explicitly",
                          umask=f"{mask:04o}")

    def trusted_uids(self) -> set:
        """Who may own a directory the server relies on (H18): root and the server.

        In a user namespace that does not map host root, root's files show up as
        the overflow uid; they are accepted there (and only there).
        """
        uids = {0, self.uid}
        try:
            with open("/proc/self/uid_map") as f:
                initial = f.read().split() == ["0", "0", "4294967295"]
        except OSError:
            initial = True
        if not initial:
            uids.add(OVERFLOW_UID)
        return uids

    def check_trusted_dir(self, path: str, what: str) -> None:
        """H18: refuse a directory that another user could swap or fill.

        *path* and every parent (through any symlink, each checked too) must be
        owned by root or the server and writable by nobody else -- unless sticky
        (as /tmp), where others cannot rename or remove what is not theirs.
        """
        trusted = self.trusted_uids()
        seen = set()
        pending = [os.path.abspath(path)]
        while pending:
            cur = pending.pop()
            if cur in seen:
                continue
            seen.add(cur)
            parts = [p for p in cur.split("/") if p]
            for i in range(len(parts) + 1):
                prefix = "/" + "/".join(parts[:i])
                try:
                    st = os.lstat(prefix)
                except OSError as exc:
                    raise UntrustedPath(f"{what} {path}: {prefix}: {exc.strerror}") from None
                if stat.S_ISLNK(st.st_mode):
                    if st.st_uid not in trusted:
                        raise UntrustedPath(
                            f"refusing {what} {path}: {prefix} is a symlink owned by uid "
                            f"{st.st_uid} (want root or the server's uid {self.uid})")
                    pending.append(os.path.join(os.path.realpath(prefix), *parts[i:]))
                    break  # the rest is checked under the resolved path
                self.check_trusted_stat(path, what, prefix, st, trusted)

    def check_trusted_stat(self, path, what, prefix, st, trusted) -> None:
        if not stat.S_ISDIR(st.st_mode):
            raise UntrustedPath(f"refusing {what} {path}: {prefix} is not a directory")
        if st.st_uid not in trusted:
            raise UntrustedPath(
                f"refusing {what} {path}: {prefix} is owned by uid {st.st_uid} "
                f"(want root or the server's uid {self.uid})")
        writable = st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid not in (0, os.getegid()))
        if writable and not st.st_mode & stat.S_ISVTX:
            raise UntrustedPath(
                f"refusing {what} {path}: {prefix} is writable by others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}, not sticky)")

    def stop(self, timeout: float = 5.0) -> None:
        """Close every listener, end every loop, remove every directory made."""
        if self._stopped:
            return
        self._stopped = True
        self.stopping = True
        with self._lock:
            wraps = list(self.wraps)  # before the wake-up: ended loops drop their wrap
        # Every API connection, accept loop and handshake ends (Stopped is thrown in).
        self.loop.stop(timeout)
        for srv in self.listeners:
            srv.server_close()  # closes the API listener, unlinks the socket file
        for wrap in wraps:
            wrap.join(timeout)
        for wrap in wraps:
            wrap.dir.close_listeners()
            try:
                wrap.remove_dir()
            except Exception as exc:  # H14: stop goes on whatever cleanup finds
                self.log.error("wrap: cleanup failed", dir=wrap.dir.path, error=repr(exc)[:200])
        with self._lock:
            self.wraps.clear()
        self.listeners = []
        self.log.info("stopped", pid=os.getpid())

    def __enter__(self) -> WrapServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_steps(self, steps) -> None:
        """Run a cooperative generator: its first chunk now, in this thread (a wrap's
        directory is gone before the next event), the rest, if any, as a task of the
        event loop that yields between chunks; to its end at once when the loop is
        stopping (or stopped: then nothing else is served)."""
        try:
            next(steps)
        except StopIteration:
            return
        try:
            self.loop.spawn(self._step_task(steps))
        except RuntimeError:  # the loop is stopping
            drive(steps)

    @staticmethod
    def _step_task(steps):
        for _ in steps:
            try:
                yield (None, time.monotonic())  # let every other task have its turn
            except Stopped:
                drive(steps)  # shutting down: finish here (still bounded, H14)
                return

    def wrap_finished(self, wrap: Wrap) -> None:
        with self._lock:
            if wrap in self.wraps:
                self.wraps.discard(wrap)
                self._release(self._wraps_by_key, wrap.quota_key)

    @staticmethod
    def _release(counts: dict, key) -> None:
        n = counts.get(key, 0) - 1
        if n > 0:
            counts[key] = n
        else:
            counts.pop(key, None)

    def quota_key(self, peer):
        """H15: what a request counts against: the peer uid; TCP callers share one key."""
        if peer is None or peer.transport == "local":
            return None  # in-process calls: no quota
        if peer.transport == "unix" and peer.uid is not None:
            return peer.uid
        return "tcp"

    def reserve_keepalive(self, uid):
        """H17: count a ptrace keepalive against *uid*; None when over quota."""
        key = ("keepalive", uid)
        with self._lock:
            if (self._keepalives.get(key, 0) >= self.keepalives_per_uid
                    or sum(self._keepalives.values()) >= self.max_keepalives):
                return None
            self._keepalives[key] = self._keepalives.get(key, 0) + 1
        return key

    def release_keepalive(self, key) -> None:
        with self._lock:
            self._release(self._keepalives, key)

    def live_wraps(self) -> int:
        with self._lock:
            return len(self.wraps)

    # -- API operations ------------------------------------------------------------

    def healthz(self) -> dict:
        return {
            "ok": True,
            "pid": os.getpid(),
            "uid": self.uid,
            "profile": self.profile.name,
            "temp_base": self.temp_base,
            "signal_socket": self.signal_socket,
            "ptrace_mode": self.ptrace_mode,
        }

    def create_session(self, requested_id=None, peer: Peer = None) -> Session:
        if requested_id is not None and (
            not isinstance(requested_id, str) or not SESSION_ID_RE.match(requested_id)
        ):
            raise RequestError(400, "invalid session id: want [A-Za-z0-9._-]{1,200}")
        prof = self.profile
        key = self.quota_key(peer) if prof.per_uid_quotas else None
        owner = None
        if prof.session_owner and peer is not None and peer.transport == "unix":
            owner = peer.uid
        with self._lock:
            if requested_id is not None and requested_id in self.sessions:
                raise RequestError(409, "session already exists")
            full = key is not None and (
                self._sessions_by_key.get(key, 0) >= self.max_sessions_per_uid)
            if full and not self._evict_session(key):  # H15: only the caller's own
                raise RequestError(503, "too many sessions for this uid")
            if len(self.sessions) >= self.max_sessions:
                # H23: under session ownership eviction never takes another uid's session.
                only = key if prof.per_uid_quotas or prof.session_owner else _ANY
                if not self._evict_session(only):
                    raise RequestError(503, "too many sessions")
            sid = requested_id
            if sid is None:
                sid = "s-" + os.urandom(8).hex()
                while sid in self.sessions:
                    sid = "s-" + os.urandom(8).hex()
            limit = self.max_event_bytes if prof.byte_limits else None
            session = self.sessions[sid] = Session(sid, owner, key, limit)
            if key is not None:
                self._sessions_by_key[key] = self._sessions_by_key.get(key, 0) + 1
        self.log.info("session created", session=sid, owner=owner)
        return session

    def _evict_session(self, key=None) -> bool:
        """Forget the oldest session with no pending wrap (lock held).

        *key* limits the choice to the sessions counted against that quota key.
        """
        busy = {wrap.session.id for wrap in self.wraps}
        for sid, session in self.sessions.items():  # insertion order: oldest first
            if sid in busy or (key is not _ANY and session.quota_key != key):
                continue
            del self.sessions[sid]
            if session.quota_key is not None:
                self._release(self._sessions_by_key, session.quota_key)
            return True
        return False

    def get_session(self, session_id: str, peer: Peer = None) -> Session:
        with self._lock:
            session = self.sessions.get(session_id)
        if session is None or not self.may_use(session, peer):
            raise RequestError(404, "session not found")
        return session

    def may_use(self, session: Session, peer: Peer) -> bool:
        """H23: only the session's creator and root read its events or wrap-init in it."""
        if not self.profile.session_owner or session.owner in (None, 0) or peer is None:
            return True  # unowned, or root's and not yet claimed (see claim)
        if peer.transport == "local":
            return True
        return peer.uid in (session.owner, 0)

    def claim(self, session: Session, peer: Peer) -> None:
        """H23: a session root created (on a user's behalf) goes to the first uid that
        wrap-inits in it; from then on it is that uid's."""
        if not self.profile.session_owner or peer is None or peer.transport != "unix":
            return
        with self._lock:
            if session.owner == 0 and peer.uid not in (None, 0):
                session.owner = peer.uid
        if session.owner not in (None, peer.uid) and peer.uid != 0:
            raise RequestError(404, "session not found")

    def events(self, session_id: str, peer: Peer = None) -> dict:
        session = self.get_session(session_id, peer)
        out = {"session": session.id, "events": session.events.snapshot()}
        if session.events.dropped:
            out["dropped"] = session.events.dropped
        return out

    def reserve_wrap(self, wrap) -> None:
        """Count *wrap* as pending: the global cap, and (H15) the per-uid quota."""
        key = wrap.quota_key
        with self._lock:
            if len(self.wraps) >= self.max_wraps:
                raise RequestError(503, "too many pending wraps")
            if key is not None and self._wraps_by_key.get(key, 0) >= self.max_wraps_per_uid:
                raise RequestError(503, "too many pending wraps for this uid")
            self.wraps.add(wrap)
            self._wraps_by_key[key] = self._wraps_by_key.get(key, 0) + 1

    def socket_kinds(self):
        if self.ptrace_mode:
            return ["ptrace"]
        return ["notify", "signal"] if self.signal_socket else ["notify"]

    def wrap_init(self, session_id: str, body: dict, peer: Peer = None) -> dict:
        """Perform wrap-init; return the response or raise RequestError."""
        if peer is None:
            peer = Peer("local", os.geteuid(), os.getpid(), os.getegid())
        session = self.get_session(session_id, peer)
        self.claim(session, peer)
        if not isinstance(body, dict):
            raise RequestError(400, "invalid json: expected an object")
        req = self.parse_wrap_request(body)
        uid, expected, source = self.resolve_caller(body, peer)
        if self.stopping:
            raise RequestError(503, "server is shutting down")
        if self.live_wraps() >= self.max_wraps:
            raise RequestError(503, "too many pending wraps")
        wrap = self.wrap_class(self, session, uid, expected, source, peer.transport)
        if self.profile.per_uid_quotas:
            wrap.quota_key = self.quota_key(peer)
        self.reserve_wrap(wrap)
        try:
            wrap.setup(self.socket_kinds())
        except (WrapDirError, OSError) as exc:
            self.wrap_finished(wrap)
            self.log.error("wrap-init failed", session=session.id, error=str(exc))
            if isinstance(exc, WrapDirError):
                raise RequestError(500, str(exc)) from None
            raise RequestError(500, f"wrap: {exc}") from None
        except BaseException:
            self.wrap_finished(wrap)
            raise
        d = wrap.dir
        sockets = dict(d.sockets)
        modes, owners = d.modes_and_owners()
        wrap.event("wrap_init", caller_uid=expected if source != "legacy" else None,
                   uid_source=source, transport=peer.transport, fs_isolation=d.fs_isolation,
                   dir=d.path, sockets=sockets, modes=modes, owners=owners,
                   profile=self.profile.name, agent_command=req["agent_command"],
                   agent_args=req["agent_args"], mode=req["mode"], api_peer_uid=peer.uid,
                   api_peer_pid=peer.pid)
        self.log.info("wrap_init", session=session.id, caller_uid=expected, uid_source=source,
                      fs_isolation=d.fs_isolation, dir=d.path)
        wrap.start()
        return self.wrap_response(sockets, d.fs_isolation)

    def wrap_response(self, sockets: dict, fs_isolation: str) -> dict:
        """The wrap-init response, field for field as agentsh's (B3) plus fs_isolation."""
        ptrace = "ptrace" in sockets
        seccomp = '{"reference":true,"filter":null,"note":"wrapref installs no seccomp filter"}'
        env = {"AGENTSH_SECCOMP_CONFIG": seccomp}
        resp = {
            "ptrace_mode": ptrace,
            "safe_to_bypass_shell_shim": ptrace,
            "wrapper_binary": "" if ptrace else self.wrapper_binary,
            "stub_binary": "",
            "seccomp_config": seccomp,
            "notify_socket": sockets["ptrace"] if ptrace else sockets["notify"],
            "wrapper_env": env,
            "env_inject": {},
            "env_policy": None,
            "fs_isolation": fs_isolation,
        }
        if "signal" in sockets:
            resp["signal_socket"] = sockets["signal"]
            env["AGENTSH_SIGNAL_SOCK_FD"] = "4"
        return resp

    # -- request checks ------------------------------------------------------------

    def parse_wrap_request(self, body: dict) -> dict:
        out = {}
        cmd = body.get("agent_command")
        if cmd is not None and not isinstance(cmd, str):
            raise RequestError(400, "invalid json: agent_command must be a string")
        out["agent_command"] = cmd or ""
        args = body.get("agent_args")
        if args is not None:
            if not isinstance(args, list):
                raise RequestError(400, "invalid json: agent_args must be a list of strings")
            if not all(isinstance(a, str) for a in args):
                raise RequestError(400, "invalid json: agent_args must be a list of strings")
        out["agent_args"] = list(args or [])
        if self.profile.byte_limits:  # H20
            self.check_sizes(out["agent_command"], out["agent_args"])
        mode = body.get("mode")
        if mode is not None and not isinstance(mode, str):
            raise RequestError(400, "invalid json: mode must be a string")
        if mode not in (None, "", "agent", "shim"):
            raise RequestError(400, f"invalid mode {mode!r}: want agent or shim")
        out["mode"] = mode or "agent"
        return out

    def check_sizes(self, command: str, args: list) -> None:
        """H20: bounded request fields (they are kept in the session's events)."""
        if len(command.encode("utf-8", "surrogatepass")) > self.max_command_bytes:
            raise RequestError(
                413, f"agent_command too long (limit {self.max_command_bytes} bytes)")
        if len(args) > self.max_args:
            raise RequestError(413, f"agent_args has too many items (limit {self.max_args})")
        total = sum(len(a.encode("utf-8", "surrogatepass")) for a in args)
        if total > self.max_args_bytes:
            raise RequestError(413, f"agent_args too long (limit {self.max_args_bytes} bytes)")

    def resolve_caller(self, body: dict, peer: Peer):
        """H1/H2: return ``(layout uid, expected peer uid or None, uid_source)``."""
        prof = self.profile
        if prof.caller_identity == UID_IDENTITY_IGNORED:
            return 0, None, "legacy"  # pre-235: there is no caller_uid field
        raw = body.get("caller_uid")
        if raw is not None:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise RequestError(400, "invalid json: caller_uid must be an integer")
            if not prof.strict_uid and not _GO_INT[0] <= raw <= _GO_INT[1]:
                raise RequestError(400, "invalid json: caller_uid out of range")
            if raw < 0:
                raise RequestError(400, f"invalid caller uid: {raw}")
            if prof.strict_uid:
                self.check_uid_range(raw)
        if prof.peercred_identity and peer.transport in ("unix", "local"):
            if peer.uid is None:
                raise RequestError(403, "caller identity unavailable (no SO_PEERCRED)")
            if raw is not None and raw != peer.uid:
                raise RequestError(
                    403, f"caller_uid {raw} does not match the API peer uid {peer.uid}"
                )
            if prof.strict_uid:
                self.check_uid_range(peer.uid)
            return peer.uid, peer.uid, "peercred"
        if not raw:
            return (None if prof.peercred_identity else 0), None, "legacy"
        return raw, raw, "body"

    def check_uid_range(self, uid: int) -> None:
        if uid > UID_MAX:
            raise RequestError(400, f"invalid caller uid: {uid} (max {UID_MAX})")
        if uid == OVERFLOW_UID:
            raise RequestError(400, f"invalid caller uid: {uid} (the overflow uid)")

    # -- pid checks (H9, H10) --------------------------------------------------------

    def check_wrapper_pid(self, wrapper_pid: int, cred: wire.PeerCred):
        """B31: return None if valid, else why not."""
        if wrapper_pid <= 0:
            return "invalid wrapper pid"
        if cred.pid <= 0:
            return "missing notify peer pid"
        status = wire.proc_status(wrapper_pid)
        if status is None:
            return f"wrapper pid {wrapper_pid} not found"
        if status["ppid"] != cred.pid:
            return f'wrapper pid {wrapper_pid} has parent {status["ppid"]}, not the peer {cred.pid}'
        if cred.uid not in status["uids"]:
            uids = status["uids"]
            return f"peer uid {cred.uid} not among the wrapper's uids {uids!r}"
        return None

    def check_ptrace_pid(self, pid: int, cred: wire.PeerCred):
        """H9: the pid must be the peer or a descendant, running as the peer's uid."""
        if cred.pid <= 0:
            return f"pid {pid} is not the peer {cred.pid} or its descendant"
        status = wire.proc_status(pid)  # once: the walk up starts from it, the uids are in it
        if not wire.is_descendant(pid, cred.pid, status=status):
            return f"pid {pid} is not the peer {cred.pid} or its descendant"
        if status is None:
            return f"pid {pid} vanished"
        if any(u != cred.uid for u in status["uids"]):
            return f'pid {pid} runs as {status["uids"]!r}, not as the peer uid {cred.uid}'
        return None


#: The name the brief uses.
Server = WrapServer
