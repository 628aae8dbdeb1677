#!/usr/bin/env python3
"""Benchmark the reference wrap server: handoffs/s and wrap-init/s on this machine.

Starts ``wrapref serve`` as a subprocess on a private temp base (Unix API socket), then,
for each profile measured, for a bounded time each:

* handoffs/s, sequential: one client doing session-less wrap-init + notify handoff
  (pipe + token, forked stand-in wrapper child) again and again;
* handoffs/s, 2 concurrent clients (two forked client processes);
* wrap-init/s: wrap-init calls alone (against a server whose accept window is short,
  so the unserved loops expire instead of piling up).

Prints the figures; asserts nothing.  Root is not required (the client is the
server's own uid: fs_isolation "same-uid" or "none").

    python3 scripts/bench_ref.py [--seconds 2] [--profiles hardened,agentsh]
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
try:
    import wrapref  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO / "ref" / "src"))

from wrapref.client import WrapClient, http_request  # noqa: E402


class Server:
    def __init__(self, base: str, profile: str, window: float):
        self.dir = tempfile.mkdtemp(prefix="srv-", dir=base)
        self.temp = os.path.join(self.dir, "tmp")
        os.mkdir(self.temp)
        self.api = "unix:" + os.path.join(self.dir, "api.sock")
        self.log = os.path.join(self.dir, "server.log")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wrapref", "serve", "--profile", profile, "--api", self.api,
             "--temp-base", self.temp, "--accept-window", str(window), "--log-file", self.log],
            env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if http_request(self.api, "GET", "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit("bench: the server exited")
            time.sleep(0.02)
        status, body = http_request(self.api, "POST", "/api/v1/sessions")
        self.session = body["id"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def handoff_loop(api: str, session: str, seconds: float) -> tuple:
    ok = failed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = WrapClient(api=api, session=session, timeout=10).run()
        if r["ok"]:
            ok += 1
        else:
            failed += 1
    return ok, failed


def concurrent(api: str, session: str, seconds: float, workers: int) -> tuple:
    pipes = []
    started = time.monotonic()
    for _ in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                os.write(w, json.dumps(handoff_loop(api, session, seconds)).encode())
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        pipes.append((pid, r))
    ok = failed = 0
    for pid, r in pipes:
        data = b""
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(r)
        os.waitpid(pid, 0)
        if data:
            a, b = json.loads(data)
            ok += a
            failed += b
    return ok, failed, time.monotonic() - started


def wrap_init_loop(api: str, session: str, seconds: float) -> tuple:
    ok = failed = 0
    path = f"/api/v1/sessions/{session}/wrap-init"
    started = time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        status, _ = http_request(api, "POST", path, {"agent_command": "bench"})
        if status == 200:
            ok += 1
        else:
            failed += 1
    return ok, failed, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--profiles", default="hardened,agentsh")
    args = parser.parse_args()
    secs = max(0.2, min(args.seconds, 10.0))
    base = tempfile.mkdtemp(prefix="wrapref-bench-", dir="/tmp")
    os.chmod(base, 0o755)
    pyver = sys.version.split()[0]
    print(f"wrapref bench: Python {pyver}, {os.cpu_count() or 0} CPUs, uid {os.getuid()}, "
          f"{secs:.1f}s per figure")
    try:
        for profile in args.profiles.split(","):
            srv = Server(base, profile, window=30)
            try:
                t0 = time.monotonic()
                ok, failed = handoff_loop(srv.api, srv.session, secs)
                dt = time.monotonic() - t0
                print(f"{profile:<9} handoffs/s sequential:    {ok / dt:7.1f}  "
                      f"({ok} ok, {failed} failed)")
                ok, failed, dt = concurrent(srv.api, srv.session, secs, 2)
                print(f"{profile:<9} handoffs/s 2 concurrent:  {ok / dt:7.1f}  "
                      f"({ok} ok, {failed} failed)")
            finally:
                srv.stop()
            srv = Server(base, profile, window=0.3)
            try:
                ok, failed, dt = wrap_init_loop(srv.api, srv.session, secs)
                print(f"{profile:<9} wrap-init/s sequential:   {ok / dt:7.1f}  "
                      f"({ok} ok, {failed} failed)")
            finally:
                srv.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
