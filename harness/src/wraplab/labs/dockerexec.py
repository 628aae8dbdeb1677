"""A ``docker exec``'s output, every byte of it.

docker-py's ``exec_start(stream=True)`` (and ``exec_run``) reads the output frames from
the raw socket under the HTTP response, past http.client's buffered reader. That reader
has already taken whatever arrived together with the response's head: when the harness
reads the answer late (a loaded machine, a starved thread) and the exec is short, its
whole output sits in that buffer and the stream reads as empty. CI saw it twice on
2026-12-01 (an actor that exited 0 with no output, not even the launcher's pid line).

:func:`start` posts the same request docker-py does and reads every frame through that
buffered reader, so what it holds comes first. Docker's multiplexed stream (no TTY):
frames of an 8-byte head (stream 0/1 stdout, 2 stderr; 3 bytes of padding; a big-endian
32-bit size) and that many bytes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["start", "frames", "exit_code", "run", "STDERR"]

_HEAD = struct.Struct(">BxxxL")
STDERR = 2


def start(api: Any, exec_id: str) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Start exec *exec_id* (attached, no TTY) now; an iterator of ``(stdout, stderr)``
    chunks (one of the two None) until the stream ends."""
    response = api._post_json(api._url("/exec/{0}/start", exec_id),
                              headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                              data={"Tty": False, "Detach": False}, stream=True)
    api._raise_for_status(response)
    return _frames(response)


def frames(read: Callable[[int], bytes]) -> Iterator[tuple[int, bytes]]:
    """``(stream, payload)`` of each non-empty frame, from ``read(n)`` (n bytes, fewer only
    at the end), until the stream ends."""
    while True:
        head = read(_HEAD.size)
        if len(head) < _HEAD.size:
            return
        stream, size = _HEAD.unpack(head)
        data = read(size)
        if data:
            yield stream, data
        if len(data) < size:
            return


def _frames(response: Any) -> Iterator[tuple[bytes | None, bytes | None]]:
    reader = response.raw._fp.fp  # http.client's buffered reader over the socket
    try:
        for stream, data in frames(reader.read):
            yield (None, data) if stream == STDERR else (data, None)
    finally:
        response.close()


def exit_code(api: Any, exec_id: str, wait: float = 5.0) -> int | None:
    """The exec's exit code once Docker says it is no longer running (its stream may
    end a moment before); None when it cannot be had within *wait* seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = api.exec_inspect(exec_id)
        except Exception:  # container removed, client closed: no status to be had
            return None
        if not info.get("Running"):
            return info.get("ExitCode")
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)  # the stream has ended; Docker's bookkeeping follows within ms


def run(api: Any, container: str, argv: Sequence[str], *, user: str = "root",
        **create: Any) -> tuple[int | None, bytes, bytes]:
    """``docker exec`` *argv* in *container* to its end: exit code, stdout, stderr."""
    exec_id = api.exec_create(container, list(argv), user=user, **create)["Id"]
    out, err = bytearray(), bytearray()
    for o, e in start(api, exec_id):
        out += o or b""
        err += e or b""
    return exit_code(api, exec_id), bytes(out), bytes(err)
