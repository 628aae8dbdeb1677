"""Observability: JSON-lines logging and the bounded per-session event list.

The harness asserts on events (SPEC.md §4, docs/design.md §1), never on log
text.  Logs are one JSON object per line with ``ts``, ``level`` and ``msg``
plus flat fields.

Threat model: a hostile local user can make the server log and record events
at will (by connecting to sockets, by creating sessions).  Event lists are
bounded, ``peer_rejected`` events per (wrap, kind) are capped, and the hardened
profile rate-limits rejection log lines (:class:`RejectionLimiter`).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time

__all__ = ["JSONLogger", "EventLog", "RejectionLimiter", "open_log"]

#: ``json.dumps(obj, default=str)`` without building an encoder per call (one per line
#: and per event otherwise: ``dumps`` only reuses its own when given no options).
_to_json = json.JSONEncoder(default=str).encode


class JSONLogger:
    """Write one JSON object per line to a text stream, thread-safely."""

    #: H21: when set, each field is cut to this many characters (its JSON form for
    #: lists and objects) and marked ``"<field>_truncated": true``.
    max_field = None

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self._lock = threading.Lock()

    def log(self, level: str, msg: str, **fields) -> None:
        record = {"ts": time.time(), "level": level, "msg": msg}
        record.update(fields)
        line = _to_json(record)
        if self.max_field is not None and len(line) > self.max_field:
            # Only then can a field be too long: no field's text (a string's characters,
            # another value's JSON) is longer than the line that holds it.
            line = _to_json(self.bound(record))
        line += "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken log stream must not take the server down

    def bound(self, record: dict) -> dict:
        limit = self.max_field
        out = {}
        for key, value in record.items():
            if isinstance(value, str):
                text = value
            elif value is None or isinstance(value, (bool, int, float)):
                out[key] = value
                continue
            else:
                text = _to_json(value)
            if len(text) > limit:
                out[key] = text[:limit]
                out[key + "_truncated"] = True
            else:
                out[key] = value
        return out

    def info(self, msg: str, **fields) -> None:
        self.log("info", msg, **fields)

    def warn(self, msg: str, **fields) -> None:
        self.log("warn", msg, **fields)

    def error(self, msg: str, **fields) -> None:
        self.log("error", msg, **fields)


class EventLog:
    """The events of one session, bounded.

    At most :attr:`max_events` events are kept (later ones are counted in
    ``dropped``), and at most :attr:`max_rejections_kept` ``peer_rejected``
    (and as many ``peer_dropped``) events per (wrap, kind); later ones only
    update the running count that the loop reports in its final event.
    """

    max_events = 10000
    max_rejections_kept = 200

    def __init__(self, session: str, max_bytes=None):
        self.session = session
        self._events = []
        self._lock = threading.Lock()
        self._rejections_kept = {}
        self.dropped = 0
        #: H20: most bytes (as JSON) kept for this session; None: no byte limit.
        self.max_bytes = max_bytes
        self.bytes = 0

    def add(self, type_: str, wrap=None, **fields) -> dict:
        event = {"type": type_, "ts": time.time(), "session": self.session}
        if wrap is not None:
            event["wrap"] = wrap
        event.update(fields)
        with self._lock:
            if type_ in ("peer_rejected", "peer_dropped"):
                key = (type_, wrap, fields.get("kind"))
                kept = self._rejections_kept.get(key, 0)
                if kept >= self.max_rejections_kept:
                    return event
                self._rejections_kept[key] = kept + 1
            if len(self._events) >= self.max_events:
                self.dropped += 1
                return event
            if self.max_bytes is not None:
                size = len(_to_json(event))
                if self.bytes + size > self.max_bytes:
                    self.dropped += 1
                    return event
                self.bytes += size
            self._events.append(event)
        return event

    def snapshot(self) -> list:
        with self._lock:
            return [dict(e) for e in self._events]

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class RejectionLimiter:
    """Decide which rejections get a log line (H13).

    Unlimited: every rejection.  Limited: the first :attr:`burst` per peer uid,
    then at most one per :attr:`interval` seconds per peer uid, each carrying
    the running count.
    """

    burst = 3
    interval = 1.0

    def __init__(self, limited: bool):
        self.limited = limited
        self._last = {}

    def should_log(self, peer_uid: int, count: int, now=None) -> bool:
        if not self.limited:
            return True
        if count <= self.burst:
            return True
        now = time.monotonic() if now is None else now
        last = self._last.get(peer_uid)
        if last is None or now - last >= self.interval:
            self._last[peer_uid] = now
            return True
        return False


def open_log(path: str, nofollow: bool, explicit_mode: bool, mode: int = 0o640):
    """Open the ``--log-file`` for appending (a line-buffered text stream).

    *nofollow* (H26): ``O_NOFOLLOW``, a regular file with one link only, opened
    ``O_NONBLOCK`` so a FIFO planted there cannot hang the start.  *explicit_mode*
    (H24): a file this call creates gets *mode* whatever the umask.  Else the
    historical ``open(path, "a")``.  Raises OSError with a clear message.
    """
    if not nofollow and not explicit_mode:
        return open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
    if nofollow:
        flags |= os.O_NOFOLLOW | os.O_NONBLOCK
    created = False
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
        created = True
    except FileExistsError:
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: the last component is a symlink
                raise OSError(exc.errno, f"refusing log file {path}: it is a symlink") from None
            raise
    try:
        st = os.fstat(fd)
        if nofollow and (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
            raise OSError(f"refusing log file {path}: not a regular file with one link")
        if created and explicit_mode:
            os.fchmod(fd, mode)
        if nofollow:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "a", buffering=1, encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
