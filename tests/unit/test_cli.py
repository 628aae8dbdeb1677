"""The command line as separate processes: serve, wrap, signals, usage errors, placements.

Processes running as another uid use /usr/bin/python3 with PYTHONPATH pointing at a
world-readable copy of the wrapref package (the test interpreter may live under a
0700 home directory).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import wrapref

from .helpers import (
    INTRUDER_UID,
    OWNER_UID,
    SERVICE_UID,
    http,
    need_root,
    notify_attempt,
    require,
    run_as,
    wait_for,
)

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def pylib(base_dir):
    """A world-readable copy of the wrapref package; returns the PYTHONPATH entry."""
    lib = os.path.join(base_dir, "pylib")
    shutil.copytree(os.path.dirname(wrapref.__file__), os.path.join(lib, "wrapref"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for root, _dirs, files in os.walk(lib):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return lib


def env_with(pylib):
    env = dict(os.environ)
    env["PYTHONPATH"] = pylib
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Serve:
    """``wrapref serve`` in a subprocess, ready once the log says "serving"."""

    def __init__(self, base_dir, pylib, profile="hardened", *extra, prefix=(), owner_uid=None):
        self.dir = tempfile.mkdtemp(prefix=f"srv-{profile}-", dir=base_dir)
        self.temp = os.path.join(self.dir, "tmp")
        os.mkdir(self.temp)
        for path in (self.dir, self.temp):
            os.chmod(path, 0o755)
            if owner_uid is not None:
                os.chown(path, owner_uid, owner_uid)
        self.api = os.path.join(self.dir, "api.sock")
        self.log = os.path.join(self.dir, "server.log")
        python = SYSTEM_PYTHON if owner_uid is not None else sys.executable
        argv = [*prefix, python, "-m", "wrapref", "serve", "--profile", profile,
                "--api", "unix:" + self.api, "--temp-base", self.temp, "--log-file", self.log,
                *extra]
        self.pylib = pylib
        self.proc = subprocess.Popen(argv, env=env_with(pylib), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: self.proc.poll() is not None or self.serving(), 20,
                     what="the serving log line")
        except BaseException:
            self.stop()
            raise
        assert self.proc.poll() is None, self.proc.stderr.read().decode()

    def records(self):
        try:
            with open(self.log) as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    def serving(self):
        recs = self.records()
        return recs and recs[0]["msg"] == "serving"

    def wrap(self, *args, uid=None, timeout=30):
        python = sys.executable if uid is None else SYSTEM_PYTHON
        kwargs = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        out = subprocess.run([python, "-m", "wrapref", "wrap", "--api", "unix:" + self.api,
                              "--timeout", "10", *args], env=env_with(self.pylib),
                             capture_output=True, text=True, timeout=timeout, **kwargs)
        lines = out.stdout.splitlines()
        assert len(lines) == 1, (out.stdout, out.stderr)
        return out.returncode, json.loads(lines[0])

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.proc.stderr.close()


@pytest.fixture
def serve(base_dir, pylib):
    made = []

    def start(profile="hardened", *extra, **kwargs):
        s = Serve(base_dir, pylib, profile, *extra, **kwargs)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()
        assert os.listdir(s.temp) == [], "wrap directories left behind"
        assert not os.path.exists(s.api)


def need_system_python():
    require(os.access(SYSTEM_PYTHON, os.X_OK), f"needs {SYSTEM_PYTHON} for other uids")


def test_owner_handoff_and_intruder_refused(serve):
    need_root()
    need_system_python()
    s = serve("hardened")
    rc, owner = s.wrap(uid=OWNER_UID)
    assert rc == 0 and owner["ok"] and owner["uid"] == OWNER_UID
    assert owner["fs_isolation"] == "chown"
    rc, intruder = s.wrap("--caller-uid", str(OWNER_UID), uid=INTRUDER_UID)
    assert rc == 1 and (intruder["step"], intruder["http_status"]) == ("wrap-init", 403)
    status, events = http(s.api, "GET", "/api/v1/sessions/{}/events".format(owner["session"]))
    tokens = [e["token"] for e in events["events"] if e["type"] == "handoff_ok"]
    assert tokens == [owner["token"]]


def test_root_wrap_and_json_output(serve):
    # (agentsh with a signal socket would race G8: its notify loop removes the directory
    # right after the ACK, before this client dials the signal socket.)
    s = serve("agentsh")
    rc, r = s.wrap("--wrapper-pid", "self", "--token", "fixed-token")
    assert rc == 0 and r["token"] == "fixed-token" and set(r["paths"]) == {"notify"}
    assert r["fs_isolation"] == "none"  # root caller = legacy in agentsh
    h = serve("hardened", "--signal-socket")
    rc, r = h.wrap()
    assert rc == 0 and set(r["paths"]) == {"notify", "signal"}
    assert r["fs_isolation"] == "same-uid"


def test_sigterm_removes_everything(serve):
    s = serve("agentsh", "--accept-window", "60")
    status, sess = http(s.api, "POST", "/api/v1/sessions")
    status, resp = http(s.api, "POST", "/api/v1/sessions/{}/wrap-init".format(sess["id"]), {})
    assert status == 200 and os.listdir(s.temp) != []
    assert s.stop(signal.SIGTERM) == 0
    assert os.listdir(s.temp) == [] and not os.path.exists(s.api)
    assert s.records()[-1]["msg"] == "stopped"


def test_sigint_stops_cleanly(serve):
    s = serve("hardened", "--ptrace-mode")
    status, sess = http(s.api, "POST", "/api/v1/sessions")
    http(s.api, "POST", "/api/v1/sessions/{}/wrap-init".format(sess["id"]), {})
    assert s.stop(signal.SIGINT) == 0
    assert os.listdir(s.temp) == []


@pytest.mark.parametrize("argv", [
    ["serve", "--api", "tcp:0.0.0.0:8080"],
    ["serve", "--api", "tcp:192.168.1.1:80"],
    ["serve", "--profile", "nope"],
    ["serve", "--accept-window", "-1"],
    ["serve", "--backlog", "x"],
    ["wrap", "--dial", "sometimes"],
    ["wrap", "--api", "http://x"],
    ["wrap", "--legacy", "--caller-uid", "5"],
    ["wrap", "--wrapper-pid", "parent"],
    ["wrap", "--signal-socket", "/x"],
    [],
])
def test_usage_errors_exit_2(argv):
    out = subprocess.run([sys.executable, "-m", "wrapref", *argv], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 2, (out.stdout, out.stderr)


def test_failed_wrap_prints_json_and_exits_1(base_dir):
    out = subprocess.run([sys.executable, "-m", "wrapref", "wrap", "--api",
                          "unix:" + os.path.join(base_dir, "none.sock"), "--timeout", "1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    r = json.loads(out.stdout)
    assert (r["ok"], r["step"], r["errno"]) == (False, "session", "ENOENT")


def test_console_script():
    exe = shutil.which("wrapref")
    require(exe is not None, "the wrapref console script is not installed (pip install ref/)")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and wrapref.__version__ in out.stdout


@pytest.mark.parametrize("profile,isolation", [("hardened", "acl"), ("agentsh", "none")])
@pytest.mark.parametrize("placement", ["no-cap-chown", "service"])
def test_server_that_cannot_chown(serve, profile, isolation, placement):
    """Real placements: root without CAP_CHOWN (setpriv), and the service account."""
    need_root()
    need_system_python()
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) not installed")
    if placement == "no-cap-chown":
        s = serve(profile, prefix=["setpriv", "--inh-caps=-chown", "--bounding-set=-chown"])
    else:
        uid = SERVICE_UID
        s = serve(profile, prefix=["setpriv", f"--reuid={uid}", f"--regid={uid}",
                                   "--clear-groups"], owner_uid=uid)
    rc, owner = s.wrap(uid=OWNER_UID)
    assert owner["fs_isolation"] == isolation
    assert rc == 0 and owner["ok"], owner
    status, ev = http(s.api, "GET", "/api/v1/sessions/{}/events".format(owner["session"]))
    init = [e for e in ev["events"] if e["type"] == "wrap_init"][0]
    server_uid = 0 if placement == "no-cap-chown" else SERVICE_UID
    assert set(init["owners"].values()) == {server_uid}
    # An intruder against a fresh wrap for the owner.
    status, sess = http(s.api, "POST", "/api/v1/sessions")
    status, resp = tuple(run_as(OWNER_UID, http, s.api, "POST",
                                "/api/v1/sessions/{}/wrap-init".format(sess["id"]),
                                {"caller_uid": OWNER_UID}))
    assert status == 200
    out = run_as(INTRUDER_UID, notify_attempt, resp["notify_socket"], "tok-intruder")
    if profile == "hardened":
        assert out["errno"] == "EACCES"
    else:
        assert out["connected"] and out["status"] is None  # reached it; peer check refused
