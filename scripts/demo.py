#!/usr/bin/env python3
"""Demo: one owner/intruder exchange against the reference wrap server, on this host.

As root: starts ``wrapref serve`` on a private temp base, runs ``wrapref wrap`` as
the owner (uid 1001 by default, from containers/users.conf) and, while the owner's
sockets wait, lets the intruder (uid 1003) try two things: claim the owner's uid at
wrap-init, and hand its own fd to the owner's notify socket.  Prints a short account
and exits non-zero if the owner failed or the intruder succeeded.

    python3 scripts/demo.py [--profile hardened|agentsh|pre-235|permissive|accept-once]

Processes that run as other uids use /usr/bin/python3 with PYTHONPATH pointing at a
world-readable copy of the wrapref package (this interpreter may live under a 0700
home); without /usr/bin/python3 they run the same CLI code in a forked child.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = "/usr/bin/python3"

try:
    import wrapref
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(REPO / "ref" / "src"))
    import wrapref

from wrapref.client import http_request  # noqa: E402


def users() -> dict:
    roles = {"owner": 1001, "attacker": 1003}
    try:
        for line in (REPO / "containers" / "users.conf").read_text().splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 4 and parts[0] == "user" and parts[2].isdigit():
                roles[parts[3]] = int(parts[2])
    except OSError:
        pass
    return roles


def copy_package(dest: str) -> str:
    lib = os.path.join(dest, "pylib")
    shutil.copytree(os.path.dirname(wrapref.__file__), os.path.join(lib, "wrapref"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    for root, _dirs, files in os.walk(lib):
        os.chmod(root, 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    return lib


def wrap_as(uid: int, args: list, pylib: str, background: bool = False):
    """Run ``wrapref wrap ARGS`` as *uid*; return (exit code, JSON) or a Popen-like handle."""
    env = dict(os.environ, PYTHONPATH=pylib, PYTHONDONTWRITEBYTECODE="1")
    if os.access(SYSTEM_PYTHON, os.X_OK):
        proc = subprocess.Popen([SYSTEM_PYTHON, "-m", "wrapref", "wrap", *args], env=env,
                                user=uid, group=uid, extra_groups=[], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    else:
        proc = _ForkedCLI(uid, args)
    if background:
        return proc
    return finish(proc)


class _ForkedCLI:
    """The CLI in a forked child (no exec), stdout to a pipe."""

    def __init__(self, uid: int, args: list):
        r, w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            code = 70
            try:
                os.dup2(w, 1)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                from wrapref.cli import main

                code = main(["wrap", *args])
            finally:
                os._exit(code)
        os.close(w)
        self._r = r

    def communicate(self, timeout=None):
        chunks = []
        while True:
            chunk = os.read(self._r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(self._r)
        _pid, status = os.waitpid(self.pid, 0)
        self.returncode = os.waitstatus_to_exitcode(status)
        return b"".join(chunks).decode(), ""


def finish(proc, timeout: float = 60):
    out, err = proc.communicate(timeout=timeout)
    try:
        return proc.returncode, json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return proc.returncode, {"ok": False, "error": (err or out or "no output").strip()}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"demo: timed out waiting for {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="hardened",
                        choices=["hardened", "agentsh", "pre-235", "permissive", "accept-once"])
    args = parser.parse_args()
    if os.geteuid() != 0:
        roles = users()
        print(f"demo: must run as root (it acts as uids {roles['owner']} and "
              f"{roles['attacker']})", file=sys.stderr)
        return 2
    roles = users()
    owner, intruder = roles["owner"], roles["attacker"]
    base = tempfile.mkdtemp(prefix="wrapref-demo-", dir="/tmp")
    os.chmod(base, 0o755)
    temp = os.path.join(base, "tmp")
    os.mkdir(temp)
    os.chmod(temp, 0o755)
    api_path = os.path.join(base, "api.sock")
    api = "unix:" + api_path
    log = os.path.join(base, "server.log")
    pylib = copy_package(base)
    env = dict(os.environ, PYTHONPATH=pylib, PYTHONDONTWRITEBYTECODE="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "wrapref", "serve", "--profile", args.profile, "--api", api,
         "--temp-base", temp, "--log-file", log], env=env, stdin=subprocess.DEVNULL)
    failures = []
    try:
        wait_for(lambda: server.poll() is not None or os.path.exists(api_path), 20,
                 "the server's API socket")
        if server.poll() is not None:
            print(f"demo: the server exited ({server.returncode})", file=sys.stderr)
            return 1
        print(f"wrapref serve --profile {args.profile} (pid {server.pid}), API {api}")
        status, sess = http_request(api, "POST", "/api/v1/sessions", {"id": "demo-owner"})
        sid = sess["id"]

        # 1. The owner starts wrapping (and lingers a moment before connecting).
        owner_proc = wrap_as(owner, ["--api", api, "--session", sid, "--connect-delay", "1"],
                             pylib, background=True)

        def init_event():
            _st, ev = http_request(api, "GET", f"/api/v1/sessions/{sid}/events")
            inits = [e for e in (ev or {}).get("events", []) if e["type"] == "wrap_init"]
            return inits[0] if inits else None

        init = wait_for(init_event, 20, "the owner's wrap-init")
        modes = ", ".join(f"{p} {m}" for p, m in sorted(init["modes"].items()))
        print(f"owner uid {owner}: wrap-init ok, fs_isolation={init['fs_isolation']}, {modes}")

        # 2. The intruder claims the owner's uid at wrap-init.
        rc, spoof = wrap_as(intruder, ["--api", api, "--caller-uid", str(owner), "--timeout",
                                       "2", "--dial", "once"], pylib)
        print(f"intruder uid {intruder} claims caller_uid {owner}: {describe(spoof)}")

        # 3. The intruder hands its own fd to the owner's notify socket.
        notify = init["sockets"].get("notify") or init["sockets"].get("ptrace")
        kind = "notify" if "notify" in init["sockets"] else "ptrace"
        rc, direct = wrap_as(intruder, [f"--{kind}-socket", notify, "--timeout", "2",
                                        "--dial", "once", "--wrapper-pid", "self"], pylib)
        print(f"intruder uid {intruder} connects to the owner's {kind} socket: {describe(direct)}")

        rc, own = finish(owner_proc)
        print(f"owner uid {owner}: {describe(own)}")

        _st, ev = http_request(api, "GET", f"/api/v1/sessions/{sid}/events")
        events = ev.get("events", [])
        arrived = [e.get("token") for e in events if e["type"] == "handoff_ok"]
        rejected = [e for e in events if e["type"] == "peer_rejected"]
        print(f"server events for {sid}: {len(arrived)} handoff_ok, "
              f"{len(rejected)} peer_rejected; tokens that arrived: {arrived}")
        if not own.get("ok") or own.get("token") not in arrived:
            failures.append("the owner's handoff failed")
        intruder_tokens = {spoof.get("token"), direct.get("token")} - {None}
        if spoof.get("ok") or direct.get("ok") or intruder_tokens & set(arrived):
            failures.append("the intruder succeeded")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        left = os.listdir(temp) if os.path.isdir(temp) else []
        if left:
            failures.append(f"left behind in the temp base: {left}")
        shutil.rmtree(base, ignore_errors=True)
    if failures:
        print("RESULT: FAIL ({}) -- profile {}".format("; ".join(failures), args.profile))
        return 1
    print("RESULT: OK -- the owner got its handoff, the intruder was refused "
          f"(profile {args.profile}); server stopped, nothing left behind")
    return 0


def describe(r: dict) -> str:
    if r.get("ok"):
        return "handoff OK (status {}, token {})".format(r.get("status"), r.get("token"))
    bits = ["refused at {}".format(r.get("step"))]
    if r.get("http_status") and r.get("step") in ("session", "wrap-init"):
        bits.append("HTTP {}".format(r["http_status"]))
    if r.get("errno"):
        bits.append(r["errno"])
    if r.get("error"):
        bits.append(r["error"])
    return ", ".join(bits)


if __name__ == "__main__":
    sys.exit(main())
