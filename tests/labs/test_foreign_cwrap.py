"""The foreign C server (tests/foreign/cwrap) against the reference client, on this host.

cwrap was written from docs/protocol.md, not from wrapref: other socket names, no events,
no /healthz. This module builds it, starts it as root in a private directory, and runs
``wrapref wrap`` as an owner uid and ``wrapref wrap --<kind>-socket PATH`` as an intruder
uid (numeric uids from LocalLab's reserved range, no /etc/passwd change). It proves the
server speaks the protocol (the owner's token arrives for every socket kind, also when the
server has no CAP_CHOWN and must use ACLs) and that its defences hold (the intruder's
connect is refused by the kernel), and that a weak switch really opens it (the intruder's
token is taken and the owner's wrap fails), so these tests can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.requires_root

REPO = Path(__file__).resolve().parents[2]
CWRAP_SRC = REPO / "tests" / "foreign" / "cwrap"
WRAPREF_SRC = REPO / "ref" / "src" / "wrapref"
OWNER = 201001  # LocalLab's offset (200000) + the declared owner uid
INTRUDER = 201003  # + the declared attacker uid
SETPRIV = shutil.which("setpriv")
NO_CHOWN = ("--bounding-set", "-chown", "--inh-caps", "-chown")
KINDS = {"notify": [], "signal": ["--signal"], "ptrace": ["--ptrace"]}


def missing(what: str) -> None:
    """Skip for a missing tool, with the reason; fail instead in CI (as the lab gates do)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(what)


@pytest.fixture(scope="module")
def cwrap_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build cwrap with its own Makefile into a private build directory."""
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "gcc")) is None:
        missing("make and a C compiler are needed to build tests/foreign/cwrap")
    build = tmp_path_factory.mktemp("cwrap-build")
    proc = subprocess.run(["make", "-C", str(CWRAP_SRC), f"BUILD={build}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"make failed:\n{proc.stdout}\n{proc.stderr}"
    return build / "cwrap"


class Host:
    """A private directory every test uid can traverse: run/ (the API), tmp/ (1777, the
    server's rundir), lib/wrapref (a world-readable copy of the client), the log."""

    def __init__(self, root: Path, binary: Path) -> None:
        self.root = root
        os.chmod(root, 0o755)
        for parent in root.parents:  # every uid must reach it (pytest's tmp is 0700)
            if not parent.stat().st_mode & 0o001:
                missing(f"{parent} is not searchable by other users (set WRAPLAB_LOCAL_BASE)")
        (root / "run").mkdir(mode=0o755)
        (root / "tmp").mkdir()
        os.chmod(root / "tmp", 0o1777)
        shutil.copytree(WRAPREF_SRC, root / "lib" / "wrapref",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for dirpath, _dirs, files in os.walk(root / "lib"):
            os.chmod(dirpath, 0o755)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        self.binary = root / "cwrap"
        shutil.copy2(binary, self.binary)
        self.api = root / "run" / "api.sock"
        self.log = root / "server.log"
        self.server: subprocess.Popen | None = None

    def start(self, *flags: str, no_chown: bool = False) -> None:
        prefix = [SETPRIV, *NO_CHOWN, "--"] if no_chown else []
        self.server = subprocess.Popen(
            [*prefix, str(self.binary), "--listen", str(self.api), "--rundir",
             str(self.root / "tmp"), "--log", str(self.log), "--window", "8", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:  # ready = the API socket accepts a connection
            if self.server.poll() is not None:
                _out, err = self.server.communicate()
                pytest.fail(f"cwrap exited ({self.server.returncode}): {err.decode()}")
            with socket.socket(socket.AF_UNIX) as probe:
                try:
                    probe.connect(str(self.api))
                    return
                except OSError:
                    pass
            assert time.monotonic() < deadline, "cwrap's API socket never accepted"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            self.server.wait(10)
            self.server.stdout.close()
            self.server.stderr.close()

    def client(self, uid: int, *args: str) -> subprocess.Popen:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(self.root / "lib"),
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(self.root / "tmp")}
        return subprocess.Popen(
            [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", sys.executable,
             "-m", "wrapref", "wrap", "--timeout", "6", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(self.root / "tmp"),
            text=True)

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]


@pytest.fixture
def host(tmp_path_factory: pytest.TempPathFactory, cwrap_binary: Path):
    if SETPRIV is None:
        missing("setpriv (util-linux) is needed to run clients as other uids")
    base = Path(os.environ.get("WRAPLAB_LOCAL_BASE", "/tmp"))
    root = Path(tempfile.mkdtemp(prefix="cwrap-test-", dir=base))
    h = Host(root, cwrap_binary)
    try:
        yield h
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=30)
    assert out.strip(), f"client printed nothing (rc {proc.returncode}): {err}"
    return json.loads(out.strip().splitlines()[-1])


def wait_for(path: Path, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 10
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"owner ended before announcing: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return json.loads(path.read_text())


def owner_vs_intruder(host: Host, kind: str) -> tuple[dict, dict, dict]:
    """Owner: wrap-init, announce, hold. Intruder: a full handoff on the announced socket.
    Then the owner is released. Returns (announcement, intruder result, owner result)."""
    announce = host.root / "tmp" / f"announce-{kind}"
    release = host.root / "tmp" / f"release-{kind}"
    owner = host.client(OWNER, "--api", f"unix:{host.api}", "--dial", "retry",
                        "--announce", str(announce), "--hold-before-dial", str(release))
    try:
        seen = wait_for(announce, owner)
        # the client sends a signal socket only after a notify one: the intruder hands
        # over on the signal socket as if it were a notify socket (an fd all the same)
        flag = "--ptrace-socket" if kind == "ptrace" else "--notify-socket"
        intruder = finish(host.client(INTRUDER, flag, seen["paths"][kind], "--server-uid",
                                      "any", "--dial", "once", "--token", "intruder-token"))
    finally:
        release.touch()
    return seen, intruder, finish(owner)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("no_chown", [False, True], ids=["root", "root-no-chown"])
def test_owner_served_intruder_refused(host: Host, kind: str, no_chown: bool) -> None:
    host.start(*KINDS[kind], no_chown=no_chown)
    seen, intruder, owner = owner_vs_intruder(host, kind)
    assert seen["fs_isolation"] == ("acl" if no_chown else "chown")
    assert "/cw-" in seen["paths"][kind] and "notify-" not in seen["paths"][kind]
    assert intruder["ok"] is False and intruder["errno"] == "EACCES", intruder
    assert owner["ok"] is True, owner
    assert owner["status"] == 1  # notify's status byte, or ptrace's ACK
    if kind != "ptrace":  # the token read from the owner's fd is the proof of arrival
        tokens = [e.get("token") for e in host.log_lines() if e["msg"] == "handoff ok"]
        assert owner["token"] in tokens and "intruder-token" not in tokens
    host.stop()
    assert not list((host.root / "tmp").glob("cw-*")), "wrap directory left behind"


def test_weak_switches_let_the_intruder_in(host: Host) -> None:
    """--world-socket + --no-peer-check: the first peer wins; the owner's wrap fails."""
    host.start("--world-socket", "--no-peer-check", "--no-pid-check")
    seen, intruder, owner = owner_vs_intruder(host, "notify")
    assert seen["fs_isolation"] == "none"
    assert intruder["ok"] is True and intruder["status"] == 1, intruder
    assert owner["ok"] is False, owner
    tokens = [e.get("token") for e in host.log_lines() if e["msg"] == "handoff ok"]
    assert tokens == ["intruder-token"]


def test_body_uid_must_match_the_caller(host: Host) -> None:
    """A caller_uid naming someone else is 403 (identity comes from SO_PEERCRED)."""
    host.start()
    result = finish(host.client(INTRUDER, "--api", f"unix:{host.api}",
                                "--caller-uid", str(OWNER)))
    assert result["ok"] is False and result["http_status"] == 403, result
    assert not list((host.root / "tmp").glob("cw-*"))
