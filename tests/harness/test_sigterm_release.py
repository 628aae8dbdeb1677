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


def test_sigterm_ends_the_watch_and_says_the_connection_was_still_open(tmp_path):
    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)  # accepts (the backlog) and never says a word
        connected = str(tmp_path / "connected")
        proc = subprocess.Popen(
            [sys.executable, "-m", "wraplab.actors.intrude", "--kind", "notify", "--path",
             path, "--do", "connect", "--watch", f"{WATCH:g}", "--connected-file", connected],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(connected, proc)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=WATCH / 2)
        finally:
            proc.kill()
        took = time.monotonic() - t0
    assert proc.returncode == 0, err
    step = json.loads(out)["steps"][0]
    assert step["server"] == "open" and step.get("released") is True, step
    assert took < WATCH / 2, took


def test_without_a_sigterm_a_close_by_the_server_is_seen_as_eof(tmp_path):
    path = str(tmp_path / "closing.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        connected = str(tmp_path / "connected")
        proc = subprocess.Popen(
            [sys.executable, "-m", "wraplab.actors.intrude", "--kind", "notify", "--path",
             path, "--do", "connect", "--watch", f"{WATCH:g}", "--connected-file", connected],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(connected, proc)
            conn, _ = server.accept()
            conn.close()  # the server drops the silent peer (a handshake deadline)
            out, err = proc.communicate(timeout=WATCH / 2)
        finally:
            proc.kill()
    step = json.loads(out)["steps"][0]
    assert step["server"] == "eof" and "released" not in step, (step, err)


def test_sigterm_ends_the_slowloris_hold_at_once(tmp_path):
    api = str(tmp_path / "api.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(api)
        server.listen(16)  # never accepts: every connection sits held in the backlog
        ready = str(tmp_path / "holding")
        proc = subprocess.Popen(
            [sys.executable, "-m", "wraplab.actors.hostile", "slowloris", "--api",
             f"unix:{api}", "--conns", "4", "--interval", f"{WATCH:g}", "--seconds",
             f"{2 * WATCH:g}", "--ready", ready],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(ready, proc)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=WATCH / 2)
        finally:
            proc.kill()
        took = time.monotonic() - t0
    report = json.loads(out)
    assert report["held_at_ready"] == 4 and report["header_lines_sent"] == 0, (report, err)
    assert took < WATCH / 2, took


def test_sigterm_ends_the_fake_api_that_nobody_called(tmp_path):
    """untrusted-api-dir: alice's client refused the fake API; mallory stops serving when
    the harness says so, not at her bound (8 s a hardened cell)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wraplab.actors.hostile", "fake-api", "--dir", str(tmp_path),
         "--seconds", f"{WATCH:g}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(str(tmp_path / "notify-fake.sock"), proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WATCH / 2)
    finally:
        proc.kill()
    took = time.monotonic() - t0
    report = json.loads(out)
    assert report["requests"] == 0 and report["token"] is None, (report, err)
    assert took < WATCH / 2, took


def test_the_stop_file_ends_a_squat_still_waiting_for_the_directory(tmp_path):
    """signal-squat: once alice has dialled, a squat could catch nothing of hers; the
    squatter, still meeting EEXIST, stops at the harness's file, not at its deadline."""
    wrapdir = tmp_path / "wrap-x"
    wrapdir.mkdir()  # the server's directory, still there
    stop = tmp_path / "stop"
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wraplab.actors.squat", "--path", str(wrapdir / "signal.sock"),
         "--deadline", f"{WATCH:g}", "--ready", str(ready), "--stop", str(stop)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(str(ready), proc)
        t0 = time.monotonic()
        stop.touch()
        out, err = proc.communicate(timeout=WATCH / 2)
    finally:
        proc.kill()
    took = time.monotonic() - t0
    report = json.loads(out)
    assert report["squat_t"] is None and report["errno"] == "EEXIST", (report, err)
    assert report["tries"] > 0 and took < WATCH / 2, (report, took)
