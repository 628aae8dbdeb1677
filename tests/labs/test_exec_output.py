"""A short ``docker exec``'s output reaches the harness even when the harness reads the
answer late (``wraplab.labs.dockerexec``).

The late reader is made, not waited for: the first read of the exec's HTTP answer is held
until Docker says the exec has exited, so its head and every output frame arrive in one
read. docker-py's own ``exec_start`` loses them there (the control: it reads past its
HTTP reader's buffer; CI saw exactly that, an actor that exited 0 with no output); the
lab's exec path must not.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from conftest import DOCKER_PARAMS, start_with_path, watch
from wraplab.labs import dockerexec
from wraplab.targets import wrapref_spec

SAY = ["sh", "-c", "echo out-line; echo err-line >&2"]


def exited(api, exec_id) -> bool:
    """Started and ended (before its start an exec is not running either)."""
    info = api.exec_inspect(exec_id)
    return not info.get("Running") and info.get("ExitCode") is not None


@pytest.fixture
def read_late(monkeypatch):
    """``read_late(condition)``: this thread's next socket read waits until
    ``condition()`` holds (an exec has exited; asked of Docker with the real reader)."""
    real = socket.SocketIO.readinto
    armed: dict = {}

    def readinto(self, buf):
        condition = armed.pop(threading.get_ident(), None)
        if condition is not None:
            deadline = time.monotonic() + 30
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.01)  # polls the condition itself: the exec has exited
            assert condition(), "the exec never ended"
        return real(self, buf)

    monkeypatch.setattr(socket.SocketIO, "readinto", readinto)

    def arm(condition):
        armed[threading.get_ident()] = condition
    return arm


@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_a_short_execs_output_survives_a_late_reader(request, lab, read_late, monkeypatch):
    run = watch(request, start_with_path(lab, wrapref_spec("agentsh"), "exec"), whole=True)
    try:
        api, inspect_api = run._stream.api, run._docker.api

        control = api.exec_create(run.container_id, SAY)["Id"]
        read_late(lambda: exited(inspect_api, control))
        lost = list(api.exec_start(control, stream=True, demux=True))
        assert lost == [], ("docker-py read the late answer whole: the late reader did not "
                            f"happen, or docker-py no longer loses it: {lost}")

        kept = api.exec_create(run.container_id, SAY)["Id"]
        read_late(lambda: exited(inspect_api, kept))
        frames = list(dockerexec.start(api, kept))
        out = b"".join(o or b"" for o, _ in frames)
        err = b"".join(e or b"" for _, e in frames)
        assert (out, err) == (b"out-line\n", b"err-line\n"), frames
        assert dockerexec.exit_code(inspect_api, kept) == 0

        # and so does an actor on the lab's exec path (WRAPLAB_AGENT=0), read the same way
        started = []
        real_start = dockerexec.start

        def start(api, exec_id):
            started.append(exec_id)
            read_late(lambda: exited(inspect_api, exec_id))
            return real_start(api, exec_id)

        monkeypatch.setattr(dockerexec, "start", start)
        said = run.exec("owner", SAY, timeout=30)
        assert len(started) == 1, "the exec path does not read through dockerexec"
        assert (said.exit_code, said.stdout, said.stderr) == (0, "out-line\n", "err-line\n"), \
            said.describe()
    finally:
        run.close()


@pytest.mark.parametrize("lab", DOCKER_PARAMS)
def test_run_gives_exit_code_stdout_and_stderr(request, lab):
    run = watch(request, start_with_path(lab, wrapref_spec("agentsh"), "exec"), whole=True)
    try:
        code, out, err = dockerexec.run(run._docker.api, run.container_id,
                                        ["sh", "-c", "echo hi; echo oops >&2; exit 3"],
                                        user="nobody")
        assert (code, out, err) == (3, b"hi\n", b"oops\n")
        big = dockerexec.run(run._docker.api, run.container_id,
                             ["python3", "-c", "import sys; sys.stdout.write('x' * 300000)"])
        assert big[0] == 0 and big[1] == b"x" * 300000
    finally:
        run.close()
