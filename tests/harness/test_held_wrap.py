"""The owner's held client (``HeldWrap``): a client that ended before it announced (its
wrap-init refused) is an answer, not a harness error, even when the barrier sees the
process gone before the lab has reported its end (a loaded machine, a ``docker exec``
stream still closing)."""

from __future__ import annotations

import threading

import pytest
from wraplab.engine.actors import HarnessError, HeldWrap


class SlowToReportHandle:
    """Ended in the kernel, but poll() says "running" until the lab's report arrives."""

    pid = 83

    def __init__(self, reported_after: float | None):
        self.reported = threading.Event()
        if reported_after is not None:
            threading.Timer(reported_after, self.reported.set).start()

    def poll(self):
        return "ended" if self.reported.is_set() else None

    def wait(self, timeout, *, kill=True):
        if not self.reported.wait(timeout):
            raise TimeoutError("still running")
        return "ended"


class GoneBarrier:
    def wait(self, name, timeout, while_running=None):
        return {"ok": False, "why": "gone", "waited_ms": 42.6}


class Ctx:
    client_budget = 4.0

    def __init__(self):
        self.steps = []

    def step(self, actor, action, result, **kw):
        self.steps.append((action, result))


def held(handle) -> HeldWrap:
    wrap = HeldWrap.__new__(HeldWrap)
    wrap.actor, wrap.ctx, wrap.barrier, wrap.handle = "nobody", Ctx(), GoneBarrier(), handle
    wrap._announced, wrap._looked, wrap._wrap = None, False, None
    return wrap


def test_a_client_gone_before_its_end_is_reported_is_no_answer_not_an_error():
    wrap = held(SlowToReportHandle(reported_after=0.3))
    assert wrap.announced is None
    assert wrap.ctx.steps == [("has its wrap-init answer and holds before its dial",
                               "no answer (the client ended first)")]


class NeverReported(SlowToReportHandle):
    def wait(self, timeout, *, kill=True):
        raise TimeoutError("still running")  # as after wait(timeout) with nothing reported


def test_a_client_that_never_ends_is_an_error():
    with pytest.raises(HarnessError, match="neither announced nor ended"):
        _ = held(NeverReported(reported_after=None)).announced
