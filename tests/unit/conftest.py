"""Fixtures for the wrapref unit tests (no Docker; root for the real second-user tests).

Users are the roles of containers/users.conf (see helpers.py): the owner (1001)
and the attacker (1003) act as real processes, forked and setuid'd, without
any /etc/passwd entry.  Every server made here is stopped at teardown, and the
teardown asserts that no wrap directory, fd or thread was left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pytest
from wrapref.server import WrapServer

from .helpers import CapturingLogger, fd_count, http, run_as, wait_for


def pytest_configure(config):
    # The tests fork actors out of a process that runs the server's threads; the
    # children only setuid and make a few syscalls (no locks), so Python 3.12+'s
    # warning about fork() in a multi-threaded process is expected here.
    config.addinivalue_line(
        "filterwarnings", "ignore:This process .* is multi-threaded:DeprecationWarning")


class Running:
    """A started WrapServer plus the conveniences the tests use."""

    def __init__(self, srv: WrapServer, api_path: str, capture: CapturingLogger):
        self.srv = srv
        self.api_path = api_path
        self.capture = capture

    @property
    def temp_base(self) -> str:
        return self.srv.temp_base

    def call(self, method, path, body=None, uid=None, **kwargs):
        if uid is None:
            return http(self.api_path, method, path, body, **kwargs)
        return tuple(run_as(uid, http, self.api_path, method, path, body, **kwargs))

    def new_session(self, sid=None) -> str:
        return self.srv.create_session(sid).id

    def wrap_init(self, sid, body=None, uid=None):
        return self.call("POST", f"/api/v1/sessions/{sid}/wrap-init",
                         {} if body is None else body, uid=uid)

    def events(self, sid, type_=None, **match) -> list:
        out = []
        for e in self.srv.events(sid)["events"]:
            if type_ is not None and e["type"] != type_:
                continue
            if all(e.get(k) == v for k, v in match.items()):
                out.append(e)
        return out

    def wait_event(self, sid, type_, timeout=5.0, **match) -> dict:
        found = wait_for(lambda: self.events(sid, type_, **match), timeout,
                         what=f"{type_} event {match!r}")
        return found[0]

    def wrap_dirs(self) -> list:
        return sorted(n for n in os.listdir(self.temp_base) if n.startswith("wrap-"))

    def logs(self, msg_contains=None) -> list:
        recs = self.capture.records()
        if msg_contains is None:
            return recs
        return [r for r in recs if msg_contains in r["msg"]]


@pytest.fixture
def base_dir():
    """A private 0755 directory under /tmp, traversable by the test uids."""
    path = tempfile.mkdtemp(prefix="wrapref-unit-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def servers(base_dir):
    """Factory: ``servers(profile, **options)`` -> a started server (a :class:`Running`).

    At teardown every server is stopped and the test fails if a wrap directory,
    an fd or a thread outlived it.
    """
    fds_before = fd_count()
    threads_before = threading.active_count()
    made = []

    def make(profile="hardened", extra_apis=(), **kwargs) -> Running:
        idx = len(made)
        temp = os.path.join(base_dir, f"tmp{idx}")
        os.mkdir(temp)
        os.chmod(temp, 0o755)
        api = os.path.join(base_dir, f"api{idx}.sock")
        kwargs.setdefault("apis", ["unix:" + api, *extra_apis])
        capture = CapturingLogger()
        srv = WrapServer(profile=profile, temp_base=temp, log=capture, **kwargs)
        srv.start()
        running = Running(srv, api, capture)
        made.append(running)
        return running

    yield make
    for running in made:
        running.srv.stop()
    for running in made:
        assert os.listdir(running.temp_base) == [], "left behind in the temp base"
        assert not os.path.exists(running.api_path), "API socket left behind"
    wait_for(lambda: threading.active_count() <= threads_before, 5.0,
             what="thread count back to baseline")
    wait_for(lambda: fd_count() <= fds_before, 5.0, what="fd count back to baseline")


@pytest.fixture
def server(servers):
    """A hardened server with default options."""
    return servers("hardened")
