"""The Docker exec path's output (``DockerActor._pump``): the launcher prints the actor's
pid before anything runs, so a stream that ends without even that line lost the output,
and the result says so instead of an empty stdout. (CI saw such streams twice on
2026-12-01: docker-py read past the bytes its HTTP reader had buffered; the stream is now
read by ``wraplab.labs.dockerexec``, tests/labs/test_exec_output.py.)"""

from __future__ import annotations

import threading

from wraplab.labs.docker import DockerActor


def pumped(frames) -> DockerActor:
    actor = DockerActor.__new__(DockerActor)
    actor._pid, actor._out, actor._err, actor._error = None, bytearray(), bytearray(), None
    actor._pid_ready, actor._done = threading.Event(), threading.Event()
    actor._inspect_exit = lambda: 0  # exec_inspect: it ran and exited 0
    actor._pump(iter(frames))
    return actor


def test_a_stream_without_even_the_pid_line_is_named_lost():
    code, out, err = pumped([])._collect()
    assert (code, out) == (0, "")
    assert "carried nothing, not even the launcher's pid line" in err


def test_a_normal_stream_gives_the_pid_and_the_output_and_no_note():
    actor = pumped([(b"83\n", None), (b'{"ok": true}\n', None), (None, b"a warning\n")])
    code, out, err = actor._collect()
    assert (actor._pid, code, out, err) == (83, 0, '{"ok": true}\n', "a warning\n")


def test_the_agents_socket_yields_its_stdout_frames_and_skips_the_rest():
    # The resident agent's hijacked exec socket carries the same frames (dockerexec.frames):
    # stdout kept, stderr and empty frames skipped, a frame cut short ends the stream.
    import socket
    import struct

    from wraplab.labs import agent

    a, b = socket.socketpair()

    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    a.sendall(frame(1, b'{"id": 1}\n{"id"') + frame(2, b"noise\n") + frame(1, b"")
              + frame(1, b': 2}\n') + frame(1, b"cut")[:-1])
    a.close()
    try:
        assert list(agent.lines_of(agent.docker_stdout(b))) == [b'{"id": 1}', b'{"id": 2}']
    finally:
        b.close()
