"""The harness's reading of the agent's answers (``wraplab.labs.agent.lines_of``): whole
lines out of chunks, however a line is cut, a long one included (a file read comes back as
one line of many megabytes)."""

from __future__ import annotations

import io

import pytest
from wraplab.labs.agent import lines_of

CASES = {
    "short-lines": (b"a\nbb\n\nccc\n", [b"a", b"bb", b"", b"ccc"]),
    "no-final-newline": (b"a\nunfinished", [b"a"]),
    "empty": (b"", []),
    "only-newlines": (b"\n\n", [b"", b""]),
    "long-line": (b"x" * 300_000 + b"\ny\n", [b"x" * 300_000, b"y"]),
}


@pytest.mark.parametrize("chunk", [1, 7, 65536])
@pytest.mark.parametrize("case", list(CASES))
def test_lines_come_out_whole_however_the_chunks_fall(case, chunk):
    data, lines = CASES[case]
    src = io.BytesIO(data)
    assert list(lines_of(lambda _n: src.read(chunk))) == lines


def test_a_snapshot_digest_ignores_key_order_and_sees_any_change():
    """The reuse check's fast path (``same_as``): equal snapshots have equal digests
    whatever the order the walk met them in; a changed mode or a new process does not."""
    from wraplab.actors.agent import digest

    snap = {"files": {"/etc": [16877, 0, 0], "/etc/hosts": [33188, 0, 0, 174, 17]},
            "procs": {"1": [["0", "0", "0", "0"], ["sleep", "infinity"]]},
            "ipc": {"shm": [], "msg": [], "sem": []}, "unix": []}
    walked_otherwise = {"unix": [], "ipc": {"sem": [], "msg": [], "shm": []},
                        "procs": dict(snap["procs"]),
                        "files": {"/etc/hosts": [33188, 0, 0, 174, 17],
                                  "/etc": [16877, 0, 0]}}
    assert digest(walked_otherwise) == digest(snap)
    chmodded = {**snap, "files": {**snap["files"], "/etc/hosts": [33279, 0, 0, 174, 17]}}
    left_running = {**snap, "procs": {**snap["procs"], "9": [["1001"] * 4, ["sh"]]}}
    assert len({digest(snap), digest(chmodded), digest(left_running)}) == 3
