#!/usr/bin/env python3
"""Benchmark the reference wrap server and the harness's flooder against native anchors.

Builds the C anchors in ``bench/native`` with gcc (into a private temp directory), then,
in one run, for each profile measured (default hardened and agentsh):

* the C server (``wrapsrv.c``: the same syscalls for one wrap, one epoll loop) and
  ``wrapref serve`` side by side, each driven by the same C owner (``wrapcycle.c``) for
  ``--seconds``: full owner cycles (session + wrap-init over the API, dial, fd handoff,
  status) per second, and the same cycles' wrap-init phase alone and handoff phase alone
  (cycles divided by the seconds spent in that phase), each as a ratio wrapref / C;
  and the cycles per second of the server's own CPU (user + system, all threads), the
  figure that other work on the machine disturbs least;
* the flooder: ``wraplab.actors.flood`` and the C flooder (``flood.c``, same structure)
  at the reconnect-flood scenario's settings (processes, waiters) against the same target
  (a listener with the hardened backlog, drained by a C acceptor), as attempts per second
  and the ratio.

With ``--instructions`` (needs valgrind): each server's user-space instructions per full
owner cycle, counted by callgrind, next to the C server's. Unlike every rate above, other
work on the machine does not move this count, so it tells a change to the server from
a noisy hour (a short and a long run each, the difference divided by the cycles between
them: start-up cancels out). The kernel's work is not in it.

Prints figures; asserts nothing.  Loopback Unix sockets only, under a private temp dir.

    python3 scripts/bench_ref.py [--seconds 2] [--profiles hardened,agentsh]
        [--wrapref-src DIR] [--rounds 3] [--skip-flood] [--instructions]

``--wrapref-src`` runs another checkout's reference server (e.g. the "before" of a change).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NATIVE = REPO / "bench" / "native"
SCENARIO = REPO / "harness" / "src" / "wraplab" / "scenarios" / "reconnect-flood.py"
ANCHORS = {"wrapsrv": ["wrapsrv.c"], "wrapcycle": ["wrapcycle.c"], "flood": ["flood.c", "-pthread"]}


def build(out: str) -> dict:
    """gcc -O2 each anchor into *out*; {name: path}."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SystemExit("bench: gcc is needed to build the native anchors (apt-get install gcc)")
    built = {}
    for name, (src, *flags) in ANCHORS.items():
        exe = os.path.join(out, name)
        subprocess.run([gcc, "-O2", "-Wall", "-Wno-restrict", "-o", exe, str(NATIVE / src),
                        *flags], check=True)
        built[name] = exe
    return built


def wait_socket(path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Until *path* accepts a connection (the server is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {proc.args[0]} exited ({proc.returncode})")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return
        except OSError:
            time.sleep(0.02)  # polling a socket that does not exist yet: nothing to wait on
        finally:
            s.close()
    raise SystemExit(f"bench: {path} never came up")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process *pid* so far, every thread's (also those that ended)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Run:
    """One server under a fresh private directory, driven by the C owner."""

    def __init__(self, base: str, exe: dict, wrapref_src: str):
        self.base = base
        self.exe = exe
        self.src = wrapref_src

    def server_argv(self, which: str, profile: str, api: str, temp: str, log: str) -> list:
        if which == "c":
            return [self.exe["wrapsrv"], "--api", api, "--temp-base", temp, "--profile",
                    profile, "--log-file", log]
        return [sys.executable, "-m", "wrapref", "serve", "--profile", profile, "--api",
                "unix:" + api, "--temp-base", temp, "--log-file", log]

    def cycles(self, which: str, profile: str, seconds: float) -> dict:
        d = tempfile.mkdtemp(prefix=f"{which}-{profile}-", dir=self.base)
        temp = os.path.join(d, "tmp")
        os.mkdir(temp, 0o755)
        api = os.path.join(d, "api.sock")
        env = dict(os.environ, PYTHONPATH=self.src)
        proc = subprocess.Popen(self.server_argv(which, profile, api, temp,
                                                 os.path.join(d, "server.log")),
                                env=env, stdin=subprocess.DEVNULL)
        try:
            wait_socket(api, proc)
            cpu0 = cpu_seconds(proc.pid)
            out = subprocess.run([self.exe["wrapcycle"], "--api", api, "--seconds",
                                  f"{seconds:g}"], check=True, capture_output=True, text=True)
            cpu = cpu_seconds(proc.pid) - cpu0
        finally:
            stop(proc)
        res = json.loads(out.stdout)
        res["cpu"] = cpu
        res["left"] = len(os.listdir(temp))
        return res


    def instructions(self, which: str, profile: str, seconds: float) -> tuple[int, int]:
        """(cycles, user-space instructions of the whole server process) for one run of
        ``seconds`` under valgrind's callgrind."""
        d = tempfile.mkdtemp(prefix=f"cg-{which}-{profile}-", dir=self.base)
        temp = os.path.join(d, "tmp")
        os.mkdir(temp, 0o755)
        api = os.path.join(d, "api.sock")
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.out",
                *self.server_argv(which, profile, api, temp, os.path.join(d, "server.log"))]
        with open(os.path.join(d, "valgrind.txt"), "w+") as err:
            proc = subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=self.src),
                                    stdin=subprocess.DEVNULL, stderr=err)
            try:
                wait_socket(api, proc, timeout=300.0)  # an interpreter starts slowly there
                out = subprocess.run([self.exe["wrapcycle"], "--api", api, "--seconds",
                                      f"{seconds:g}"], check=True, capture_output=True,
                                     text=True)
            finally:
                stop(proc)
            err.seek(0)
            text = err.read()
        collected = [line for line in text.splitlines() if "Collected :" in line]
        if not collected:
            raise SystemExit(f"bench: callgrind printed no count for {which}: {text[-400:]}")
        return json.loads(out.stdout)["cycles"], int(collected[-1].split(":")[-1])

    def instructions_per_cycle(self, which: str, profile: str) -> float:
        short = self.instructions(which, profile, 1.0)
        long = self.instructions(which, profile, 6.0)
        if long[0] <= short[0]:
            raise SystemExit(f"bench: {which} made no more cycles in 6 s than in 1 s")
        return (long[1] - short[1]) / (long[0] - short[0])


def rates(res: dict) -> dict:
    """Per second: cycles, and cycles over the time spent in each phase; "cycles/CPU s":
    cycles per second of the server's own CPU (what other work on the machine disturbs
    least)."""
    n = res["cycles"]
    return {"full cycle": n / res["wall"], "wrap-init": n / max(res["wrap_init"], 1e-9),
            "handoff": n / max(res["handoff"], 1e-9), "cycles/CPU s": n / max(res["cpu"], 1e-3)}


def scenario_flood_settings() -> tuple:
    """(processes, waiters) as the reconnect-flood scenario floods (dac-override-flood too)."""
    spec = importlib.util.spec_from_file_location("reconnect_flood", SCENARIO)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FLOODERS, mod.WAITERS


def flood_rates(base: str, exe: dict, seconds: float, procs: int, waiters: int) -> dict:
    d = tempfile.mkdtemp(prefix="flood-", dir=base)
    target = os.path.join(d, "target.sock")
    drain = subprocess.Popen([exe["wrapsrv"], "--drain", target, "--backlog", "8"],
                             stdin=subprocess.DEVNULL)
    out = {}
    try:
        wait_socket(target, drain)
        args = ["--path", target, "--seconds", f"{seconds:g}", "--procs", str(procs),
                "--waiters", str(waiters)]
        for who, argv in (("c", [exe["flood"], *args]),
                          ("wraplab", [sys.executable, "-m", "wraplab.actors.flood", *args])):
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            res = subprocess.run(argv, check=True, capture_output=True, text=True)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out[who] = json.loads(res.stdout)
            cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            out[who]["per_cpu"] = out[who]["attempts"] / max(cpu, 1e-3)
    finally:
        stop(drain)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--profiles", default="hardened,agentsh")
    parser.add_argument("--wrapref-src", default=str(REPO / "ref" / "src"),
                        help="the wrapref source tree to run (default: this checkout's)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds, C and wrapref alternating; the best of each is shown "
                             "(other work on the machine only ever slows a round down)")
    parser.add_argument("--skip-flood", action="store_true")
    parser.add_argument("--instructions", action="store_true",
                        help="also count each server's instructions per cycle (valgrind; "
                             "a few minutes)")
    args = parser.parse_args()
    if args.instructions and shutil.which("valgrind") is None:
        parser.error("--instructions needs valgrind (apt-get install valgrind)")
    secs = max(0.2, min(args.seconds, 30.0))
    base = tempfile.mkdtemp(prefix="wrapref-bench-", dir="/tmp")
    os.chmod(base, 0o755)
    print(f"wrapref bench: Python {sys.version.split()[0]}, {os.cpu_count() or 0} CPUs, "
          f"uid {os.getuid()}, {secs:g}s per figure, wrapref from {args.wrapref_src}")
    try:
        exe = build(base)
        run = Run(base, exe, args.wrapref_src)
        print(f"{'profile':<9} {'figure':<12} {'wrapref/s':>10} {'C/s':>10} {'ratio':>6}")
        for profile in args.profiles.split(","):
            best = {"c": {}, "wrapref": {}}
            for _ in range(max(1, args.rounds)):
                for who in best:
                    res = run.cycles(who, profile, secs)
                    if res["failed"] or res["left"]:
                        print(f"{profile:<9} {who}: {res['failed']} failed cycles, "
                              f"{res['left']} entries left in the temp base")
                    for figure, rate in rates(res).items():
                        best[who][figure] = max(rate, best[who].get(figure, 0.0))
            rn, rr = best["c"], best["wrapref"]
            for figure in rn:
                print(f"{profile:<9} {figure:<12} {rr[figure]:10.0f} {rn[figure]:10.0f} "
                      f"{rr[figure] / rn[figure]:6.2f}")
        if args.instructions:
            for profile in args.profiles.split(","):
                py = run.instructions_per_cycle("wrapref", profile)
                c = run.instructions_per_cycle("c", profile)
                print(f"{profile:<9} instructions per owner cycle (callgrind, user space): "
                      f"wrapref {py / 1e3:,.0f} k, C {c / 1e3:,.1f} k, {py / c:.0f}x")
        if not args.skip_flood:
            procs, waiters = scenario_flood_settings()
            best = {"c": {}, "wraplab": {}}
            for _ in range(max(1, args.rounds)):
                fl = flood_rates(base, exe, secs, procs, waiters)
                for who, res in fl.items():
                    for figure in ("rate", "per_cpu"):
                        best[who][figure] = max(res[figure], best[who].get(figure, 0.0))
            c, py = best["c"], best["wraplab"]
            print(f"flooder, {procs} processes x {waiters} waiters (the reconnect-flood "
                  f"scenario's): connects/s wraplab {py['rate']:.0f}, C {c['rate']:.0f}, "
                  f"ratio {py['rate'] / c['rate']:.2f}; per CPU s wraplab {py['per_cpu']:.0f}, "
                  f"C {c['per_cpu']:.0f}, ratio {py['per_cpu'] / c['per_cpu']:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
