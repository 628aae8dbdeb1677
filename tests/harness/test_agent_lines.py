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
