"""``evidence.settled``: when a session's events show that nothing more can happen to it,
so the report reuses the judge's read instead of asking the server again."""

from __future__ import annotations

from wraplab.engine.evidence import settled

INIT = {"type": "wrap_init", "wrap": "wrap-a",
        "sockets": {"notify": "/tmp/wrap-a/notify.sock", "signal": "/tmp/wrap-a/signal.sock"}}


def ev(type_, kind=None, wrap="wrap-a"):
    return {"type": type_, "wrap": wrap, **({"kind": kind} if kind else {})}


def test_every_loop_ended_and_the_directory_gone_is_settled():
    events = [INIT, ev("handoff_ok", "notify"), ev("window_expired", "signal"),
              ev("dir_removed")]
    assert settled(events)
    assert settled([INIT, ev("handoff_failed", "notify"), ev("handoff_ok", "signal"),
                    ev("cleanup_incomplete")])


def test_a_loop_still_open_or_the_directory_still_there_is_not():
    assert not settled([INIT, ev("handoff_ok", "notify"), ev("dir_removed")])  # G8: signal waits
    assert not settled([INIT, ev("handoff_ok", "notify"), ev("window_expired", "signal")])
    assert not settled([INIT, ev("peer_rejected", "notify")])


def test_no_wrap_init_is_never_settled_and_every_wrap_counts():
    assert not settled([])
    assert not settled([{"type": "handoff_failed", "kind": "notify"}])
    other = {"type": "wrap_init", "wrap": "wrap-b", "sockets": {"notify": "/tmp/b.sock"}}
    done = [INIT, ev("handoff_ok", "notify"), ev("handoff_ok", "signal"), ev("dir_removed")]
    assert not settled([*done, other])
    assert settled([*done, other, ev("window_expired", "notify", "wrap-b"),
                    ev("dir_removed", wrap="wrap-b")])
