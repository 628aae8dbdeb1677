"""A tool that holds something ends when the harness has seen enough: a SIGTERM.

The staller (``wraplab.actors.intrude --do connect``, ``deputy receive --do stall``) holds
a connection the server keeps open; once the harness has seen what it needed (the
owner's wrap ended, the window over) it sends SIGTERM, and the tool reports at once that
the connection was still open then (``released``) instead of holding for its whole bound.
Before, the vulnerable cells held for the bound (8.5-9.5 s a cell). The slowloris holder
(``hostile slowloris``, api-slowloris) set a flag on SIGTERM but slept on in its select
until the next header line was due (2 s a cell)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

WATCH = 30.0  # the tool's own bound: the test must end long before it


def wait_for(path: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)  # polling the file the tool creates: its existence is the condition


def poked(argv: list[str], ready: str, poke) -> tuple[dict, str, float]:
    """Start the tool, wait until it creates ``ready``, ``poke()`` it (a SIGTERM, a stop
    file, a server's close); its JSON report, stderr, and seconds from the poke to its end."""
    proc = subprocess.Popen([sys.executable, "-m", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(ready, proc)
        t0 = time.monotonic()
        poke(proc)
        out, err = proc.communicate(timeout=WATCH / 2)
    finally:
        proc.kill()
    return json.loads(out), err, time.monotonic() - t0


def term(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)


def intrude(path: str, connected: str) -> list[str]:
    return ["wraplab.actors.intrude", "--kind", "notify", "--path", path, "--do", "connect",
            "--watch", f"{WATCH:g}", "--connected-file", connected]


def test_sigterm_ends_the_watch_and_says_the_connection_was_still_open(tmp_path):
    path, connected = str(tmp_path / "silent.sock"), str(tmp_path / "connected")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)  # accepts (the backlog) and never says a word
        report, err, took = poked(intrude(path, connected), connected, term)
    step = report["steps"][0]
    assert step["server"] == "open" and step.get("released") is True, (step, err)
    assert took < WATCH / 2, took


def test_without_a_sigterm_a_close_by_the_server_is_seen_as_eof(tmp_path):
    path, connected = str(tmp_path / "closing.sock"), str(tmp_path / "connected")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        # the server drops the silent peer (a handshake deadline)
        report, err, _ = poked(intrude(path, connected), connected,
                               lambda _proc: server.accept()[0].close())
    step = report["steps"][0]
    assert step["server"] == "eof" and "released" not in step, (step, err)


def test_sigterm_ends_the_slowloris_hold_at_once(tmp_path):
    api, ready = str(tmp_path / "api.sock"), str(tmp_path / "holding")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(api)
        server.listen(16)  # never accepts: every connection sits held in the backlog
        report, err, took = poked(
            ["wraplab.actors.hostile", "slowloris", "--api", f"unix:{api}", "--conns", "4",
             "--interval", f"{WATCH:g}", "--seconds", f"{2 * WATCH:g}", "--ready", ready],
            ready, term)
    assert report["held_at_ready"] == 4 and report["header_lines_sent"] == 0, (report, err)
    assert took < WATCH / 2, took


def test_sigterm_ends_the_fake_api_that_nobody_called(tmp_path):
    """untrusted-api-dir: alice's client refused the fake API; mallory stops serving when
    the harness says so, not at her bound (8 s a hardened cell)."""
    report, err, took = poked(
        ["wraplab.actors.hostile", "fake-api", "--dir", str(tmp_path), "--seconds",
         f"{WATCH:g}"], str(tmp_path / "notify-fake.sock"), term)
    assert report["requests"] == 0 and report["token"] is None, (report, err)
    assert took < WATCH / 2, took


def test_the_stop_file_ends_a_squat_still_waiting_for_the_directory(tmp_path):
    """signal-squat: once alice has dialled, a squat could catch nothing of hers; the
    squatter, still meeting EEXIST, stops at the harness's file, not at its deadline."""
    wrapdir = tmp_path / "wrap-x"
    wrapdir.mkdir()  # the server's directory, still there
    stop, ready = tmp_path / "stop", str(tmp_path / "ready")
    report, err, took = poked(
        ["wraplab.actors.squat", "--path", str(wrapdir / "signal.sock"), "--deadline",
         f"{WATCH:g}", "--ready", ready, "--stop", str(stop)], ready, lambda _p: stop.touch())
    assert report["squat_t"] is None and report["errno"] == "EEXIST", (report, err)
    assert report["tries"] > 0 and took < WATCH / 2, (report, took)
