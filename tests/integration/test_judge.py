"""The verdict logic (``Context.judge``) on recorded evidence, without a lab: every verdict
can come out, and for the stated reason; an attack that did not happen is never a
verdict but an ``error``; events that contradict the actors are an ``error``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from wraplab import engine, targets
from wraplab.users import User

OWNER = User("alice", 1001, 1001, "owner")
ATTACKER = User("mallory", 1003, 1003, "attacker")


class FakeRun:
    def __init__(self, events):
        self.users = {"owner": OWNER, "attacker": ATTACKER}
        self.api = "unix:/run/wrapref/api.sock"
        self.tcp_api = None
        self.temp_base = "/tmp"
        self._events = events

    def api_request(self, method, path, body=None, **kw):
        return 200, {"events": self._events}


def ctx_for(events, socket="notify", profile="agentsh"):
    scenario = engine.get_scenario("wrong-uid")
    cell = scenario.cells(profiles=[profile], sockets=[socket])[0]
    return engine.Context(scenario, cell, FakeRun(events), targets.reference(profile))


def wrap(ctx, ok=True, step="done", errno=None, token="T"):
    data = {"ok": ok, "step": step, "errno": errno, "token": token, "session": "s-1",
            "paths": {"notify": "/tmp/w/notify-s-1.sock"}, "t_dial": 1.5, "t_end": 1.6}
    return engine.Wrap(ctx.owner, started=0.0, exit_code=0 if ok else 1, data=data)


def intrusion(ctx, *steps, path="/tmp/w/notify-s-1.sock"):
    return engine.Intrusion(ctx.intruder, {"uid": 1003, "token": "EVIL", "path": path,
                                           "steps": list(steps)})


def attempt(action, errno=None, accepted=None):
    return {"action": action, "t": 0.5, "ms": 1.0, "errno": errno, "accepted": accepted,
            "path": "/tmp/w/notify-s-1.sock"}


def ev(type_, ts, **kw):
    return {"type": type_, "ts": ts, "session": "s-1", **kw}


INIT = ev("wrap_init", 0.1)


def test_kernel_refusal_is_defended_by_the_kernel():
    events = [INIT, ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T"),
              ev("dir_removed", 2.1, dir="/tmp/w")]
    ctx = ctx_for(events)
    j = ctx.judge(wrap(ctx), [intrusion(ctx, attempt("handoff", "EACCES"),
                                        attempt("connect", "EACCES"))])
    assert (j.verdict, j.guard) == (engine.DEFENDED, "kernel")


def test_peer_check_rejection_is_defended_by_the_peer_check():
    events = [INIT, ev("peer_rejected", 0.5, kind="notify", peer_uid=1003, count=1),
              ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T", rejections=1),
              ev("dir_removed", 2.1)]
    ctx = ctx_for(events)
    j = ctx.judge(wrap(ctx), [intrusion(ctx, attempt("handoff"))])
    assert (j.verdict, j.guard) == (engine.DEFENDED, "peer-check")


def test_intruder_token_arriving_is_vulnerable():
    events = [INIT, ev("handoff_ok", 0.5, kind="notify", peer_uid=1003, token="EVIL"),
              ev("dir_removed", 0.6)]
    ctx = ctx_for(events)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, attempt("handoff", accepted=True))])
    assert j.verdict is engine.VULNERABLE and "1003" in j.reason


def test_attacker_ending_the_loop_is_a_denial_of_service():
    events = [INIT, ev("peer_rejected", 0.5, kind="notify", peer_uid=1003, count=1),
              ev("handoff_failed", 0.5, kind="notify", peer_uid=1003, reason="wrong_peer"),
              ev("dir_removed", 0.6)]
    ctx = ctx_for(events)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, attempt("handoff"))])
    assert j.verdict is engine.VULNERABLE and "denial of service" in j.reason


def test_owner_failing_alone_is_broken():
    ctx = ctx_for([INIT])
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="EACCES"),
                  [intrusion(ctx, attempt("handoff", "EACCES"))])
    assert j.verdict is engine.BROKEN


@pytest.mark.parametrize("owner_ok", [True, False])
def test_directory_removed_under_a_waiting_loop_is_broken_either_way(owner_ok):
    events = [INIT, ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T"),
              ev("dir_removed", 2.001)]
    if owner_ok:
        events.append(ev("handoff_ok", 2.01, kind="signal", peer_uid=1001, token="T"))
    ctx = ctx_for(events, socket="signal")
    w = wrap(ctx, ok=owner_ok, step="done" if owner_ok else "connect-signal",
             errno=None if owner_ok else "ENOENT")
    assert ctx.judge(w).verdict is engine.BROKEN


def test_owner_ok_without_the_servers_record_is_an_error():
    ctx = ctx_for([INIT])
    assert ctx.judge(wrap(ctx)).verdict is engine.ERROR


def test_an_intruder_who_was_not_first_is_an_error():
    ctx = ctx_for([INIT, ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T")])
    late = attempt("handoff", "EACCES")
    late["t"] = 9.0
    assert ctx.judge(wrap(ctx), [intrusion(ctx, late)]).verdict is engine.ERROR


def test_combine_takes_the_worst():
    d, v, b = (engine.Judgement(x, x.value) for x in (engine.DEFENDED, engine.VULNERABLE,
                                                      engine.BROKEN))
    assert engine.combine([d, v, d]).verdict is engine.VULNERABLE
    assert engine.combine([v, b]).verdict is engine.BROKEN
    assert engine.combine([]).verdict is engine.ERROR


def test_outcome_ok_needs_the_expected_verdict():
    cell = engine.get_scenario("wrong-uid").cells(profiles=["permissive"])[0]
    out = engine.Outcome(cell=cell, verdict=engine.DEFENDED, reason="")
    assert not out.ok
    assert engine.Outcome(cell=cell, verdict=engine.VULNERABLE, reason="").ok
    err = SimpleNamespace(expected=engine.ERROR, expected_guard=None,
                          expectation=engine.Expected(engine.ERROR))
    assert not engine.Outcome(cell=err, verdict=engine.ERROR, reason="").ok


def test_outcome_ok_needs_the_expected_guard():
    """wrong-uid promises that the kernel stops the intruder on hardened: the same verdict
    from another guard (e.g. the peer check, because the directory let her in) fails."""
    cell = engine.get_scenario("wrong-uid").cells(profiles=["hardened"])[0]
    assert cell.expected_guard == "kernel"
    assert engine.Outcome(cell=cell, verdict=engine.DEFENDED, reason="", guard="kernel").ok
    out = engine.Outcome(cell=cell, verdict=engine.DEFENDED, reason="", guard="peer-check")
    assert not out.ok and out.guard_mismatch


# -- no attack, no verdict ------------------------------------------------------------

OWNER_OK = [INIT, ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T"),
            ev("dir_removed", 2.1)]


def test_no_attacker_acting_is_an_error():
    ctx = ctx_for(OWNER_OK)
    j = ctx.judge(wrap(ctx), [])
    assert j.verdict is engine.ERROR and "did not happen" in j.reason


def test_socket_not_found_is_an_error():
    ctx = ctx_for(OWNER_OK)
    j = ctx.judge(wrap(ctx), [intrusion(ctx, path=None)])
    assert j.verdict is engine.ERROR and "found no socket" in j.reason


def test_no_attempt_is_an_error():
    ctx = ctx_for(OWNER_OK)
    j = ctx.judge(wrap(ctx), [intrusion(ctx)])
    assert j.verdict is engine.ERROR and "made no attempt" in j.reason


@pytest.mark.parametrize("gone", ["ENOENT", "ECONNREFUSED"])
def test_attempts_that_met_no_live_socket_are_an_error(gone):
    """The late attacker of the review: its tool ran after the owner's loop had ended and
    found nothing; that is not the kernel defending."""
    ctx = ctx_for(OWNER_OK)
    j = ctx.judge(wrap(ctx), [intrusion(ctx, attempt("handoff", gone),
                                        attempt("connect", gone))])
    assert j.verdict is engine.ERROR and "no live socket" in j.reason


def test_a_flood_that_did_not_run_while_the_owner_dialled_is_an_error():
    ctx = ctx_for(OWNER_OK)
    late = engine.Flood(ctx.intruder, {"uid": 1003, "attempts": 500, "t0": 1.7, "t1": 3.0,
                                       "outcomes": {"EACCES": 500}})
    j = ctx.judge(wrap(ctx), [late], first=False)
    assert j.verdict is engine.ERROR and "did not run while the owner dialled" in j.reason
    during = engine.Flood(ctx.intruder, {"uid": 1003, "attempts": 500, "t0": 1.0, "t1": 3.0,
                                         "outcomes": {"EACCES": 500}})
    j = ctx.judge(wrap(ctx), [during], first=False)
    assert (j.verdict, j.guard) == (engine.DEFENDED, "kernel")


def test_the_owner_alone_needs_no_attack():
    ctx = ctx_for(OWNER_OK)
    assert ctx.judge(wrap(ctx)).verdict is engine.DEFENDED


# -- judged from what the actors saw; events corroborate ------------------------------


class NoEventsTarget:
    """A target that keeps no events (a server wraplab did not write)."""

    has_events = False
    dial = "once"

    def api(self, run, transport):
        return "unix:/run/api.sock"


def blind_ctx(socket="notify"):
    scenario = engine.get_scenario("wrong-uid")
    cell = scenario.cells(profiles=["permissive"], sockets=[socket])[0]
    return engine.Context(scenario, cell, FakeRun([]), NoEventsTarget())


def test_status_one_seen_by_the_attacker_is_vulnerable_without_events():
    ctx = blind_ctx()
    taken = dict(attempt("handoff"), status=1, accepted=True)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, taken)])
    assert j.verdict is engine.VULNERABLE, j.reason


def test_a_drained_token_on_the_silent_signal_socket_is_vulnerable():
    ctx = blind_ctx("signal")
    drained = dict(attempt("handoff"), status=None, accepted=None, consumed=True)
    j = ctx.judge(wrap(ctx), [intrusion(ctx, drained)])
    assert j.verdict is engine.VULNERABLE, j.reason
    kept = dict(attempt("handoff"), status=None, accepted=None, consumed=False)
    assert ctx.judge(wrap(ctx), [intrusion(ctx, kept)]).verdict is engine.DEFENDED


def test_events_contradicting_the_actors_are_an_error():
    """The server says it took the intruder's handoff; the intruder saw EACCES."""
    events = [INIT, ev("handoff_ok", 0.5, kind="notify", peer_uid=1003, token="EVIL")]
    ctx = ctx_for(events)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, attempt("handoff", "EACCES"), attempt("connect", "EACCES"))])
    assert j.verdict is engine.ERROR and "refused outright" in j.reason


def test_an_unknown_guard_in_expect_fails_loading(tmp_path):
    src = engine.SCENARIO_DIR / "wrong-uid.py"
    bad = tmp_path / "wrong-uid.py"
    bad.write_text(src.read_text().replace('DEFENDED.by("kernel")', 'DEFENDED.by("luck")'))
    with pytest.raises(engine.ScenarioError, match="guard 'luck'"):
        engine.load_scenario(bad)


@pytest.mark.parametrize("seen_as,verdict", [(65534, engine.VULNERABLE),
                                             (1001, engine.BROKEN)])
def test_loop_ended_by_a_rejected_peer_under_another_uid(seen_as, verdict):
    """accept-once: a loop ended at a wrong-uid peer is the attacker's doing even when the
    server saw it under another uid (unmapped in its user namespace: the overflow uid);
    the owner's own rejection is not."""
    events = [INIT, ev("peer_rejected", 0.5, kind="notify", peer_uid=seen_as, count=1),
              ev("handoff_failed", 0.5, kind="notify", peer_uid=seen_as, reason="wrong_peer",
                 rejections=1), ev("dir_removed", 0.6)]
    ctx = ctx_for(events, profile="accept-once")
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, attempt("connect"))])
    assert j.verdict is verdict, j.reason


def test_send_error_after_connect_counts_as_reaching_the_server():
    """The accept-once race seen in the matrix: the server accepts the attacker, rejects it
    (ending the loop and removing the directory) while the attacker is still sending
    (EPIPE), so its next connect finds nothing (ENOENT). It reached the server."""
    events = [INIT, ev("peer_rejected", 0.5, kind="notify", peer_uid=65534, count=1),
              ev("handoff_failed", 0.5, kind="notify", peer_uid=65534, reason="wrong_peer",
                 rejections=1), ev("dir_removed", 0.6)]
    ctx = ctx_for(events, profile="accept-once")
    sent = dict(attempt("handoff", "EPIPE"), connected=True)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"),
                  [intrusion(ctx, sent, attempt("connect", "ENOENT"))])
    assert j.verdict is engine.VULNERABLE, j.reason
    refused = intrusion(ctx, attempt("handoff", "EACCES"), attempt("connect", "EACCES"))
    assert not refused.reached_server and refused.kernel_refused


def test_an_owner_never_released_is_an_error():
    """The harness was too slow to release the held client (a loaded machine): not a
    verdict on the server."""
    ctx = ctx_for([INIT])
    w = wrap(ctx, ok=False, step="hold", errno="ETIMEDOUT")
    w.data["t_dial"] = None
    j = ctx.judge(w, [intrusion(ctx, attempt("handoff", "EACCES"))])
    assert j.verdict is engine.ERROR and "never released" in j.reason


def test_an_owner_released_after_the_window_is_an_error():
    """A loaded harness released the held client after the server's accept window: the
    owner's failure then says nothing about the server (wrong-uid's window is 8 s)."""
    ctx = ctx_for([INIT, ev("window_expired", 8.1, kind="notify"), ev("dir_removed", 8.2)])
    w = wrap(ctx, ok=False, step="connect-notify", errno="ENOENT")
    w.data.update(t_announce=0.2, t_dial=9.0)
    j = ctx.judge(w, [intrusion(ctx, attempt("handoff", "EACCES"))])
    assert j.verdict is engine.ERROR and "accept window" in j.reason
    w.data.update(t_dial=1.5)
    assert ctx.judge(w, [intrusion(ctx, attempt("handoff", "EACCES"))]).verdict is \
        engine.BROKEN


class LaggingRun(FakeRun):
    """The server records the signal handoff only on the third read of the events (it was
    busy turning a flood away when the owner's client, which gets no status byte, left)."""

    def __init__(self, first, later):
        super().__init__(first)
        self.later, self.reads = later, 0

    def api_request(self, method, path, body=None, **kw):
        self.reads += 1
        return 200, {"events": self._events if self.reads < 3 else self.later}


def test_a_signal_handoff_recorded_late_is_waited_for_not_an_error():
    first = [INIT, ev("handoff_ok", 2.0, kind="notify", peer_uid=1001, token="T")]
    later = first + [ev("handoff_ok", 2.5, kind="signal", peer_uid=1001, token="T"),
                     ev("dir_removed", 2.6)]
    scenario = engine.get_scenario("wrong-uid")
    cell = scenario.cells(profiles=["hardened"], sockets=["signal"])[0]
    run = LaggingRun(first, later)
    ctx = engine.Context(scenario, cell, run, targets.reference("hardened"))
    j = ctx.judge(wrap(ctx), [intrusion(ctx, attempt("handoff", "EACCES"))])
    assert j.verdict is engine.DEFENDED and run.reads >= 3, j.reason


@pytest.mark.parametrize("then,want", [("eof", engine.BROKEN),
                                       ("ECONNRESET", engine.VULNERABLE),
                                       ("ENOENT", engine.VULNERABLE)])
def test_without_events_a_later_live_attempt_clears_the_attacker(then, want):
    """The owner then finds no socket: when the attacker's later connection was accepted
    (the server closed it: EOF), its rejection did not end the loop (something else did:
    G8's cleanup) -> broken; when it met no socket, or was reset while still pending (what
    a listener that closes does to its backlog: seen in a no-cap-chown accept-once cell),
    its rejection ended the loop (accept-once) -> vulnerable."""
    ctx = blind_ctx("signal")
    rejected = dict(attempt("handoff", "ECONNRESET"), connected=True, status=None)
    if then == "ENOENT":
        later = dict(attempt("connect", "ENOENT"), t=0.6)
    else:
        later = dict(attempt("connect"), t=0.6, connected=True, server=then)
    j = ctx.judge(wrap(ctx, ok=False, step="connect-signal", errno="ENOENT"),
                  [intrusion(ctx, rejected, later)])
    assert j.verdict is want, j.reason


@pytest.mark.parametrize("gone,want", [(1.0, engine.VULNERABLE), (2.0, engine.BROKEN),
                                       (None, engine.BROKEN)])
def test_without_events_a_flood_that_ended_the_loop_before_the_dial_is_a_denial(gone, want):
    """The flood got through, then met no socket before the owner dialled (t_dial 1.5): it
    ended the loop (vulnerable); gone only after the dial, or never: not shown (broken)."""
    ctx = blind_ctx()
    flood = engine.Flood(ctx.intruder, {"uid": 1003, "path": "/tmp/w/notify-s-1.sock",
                                        "attempts": 900, "outcomes": {"ok": 1, "ENOENT": 899},
                                        "t0": 1.2, "t1": 2.5, "first_gone": gone})
    j = ctx.judge(wrap(ctx, ok=False, step="connect-notify", errno="ENOENT"), [flood],
                  first=False)
    assert j.verdict is want, j.reason
def test_broken_after_a_late_release_is_an_error():
    ctx = ctx_for([INIT])
    late = wrap(ctx, ok=False, step="connect-notify", errno="ENOENT")
    late.data.update(t_announce=0.2, t_dial=0.2 + ctx.default_window + 60)
    ctx.wraps.append(late)
    j = ctx.broken("the owner's wrap failed at connect-notify (ENOENT)")
    assert j.verdict is engine.ERROR and "harness was too slow" in j.reason


def test_broken_in_time_stays_broken():
    ctx = ctx_for([INIT])
    ctx.wraps.append(wrap(ctx, ok=False, step="connect-notify", errno="EACCES"))
    assert ctx.broken("alice cannot reach her socket").verdict is engine.BROKEN


@pytest.mark.parametrize("owner_ok", [True, False])
def test_a_stall_that_ended_the_loop_is_vulnerable_even_when_the_client_saw_ok(owner_ok):
    """A signal client has no status byte: it may report ok while its connection sat in a
    backlog nobody accepted once the stalled connection had ended the loop."""
    ctx = ctx_for([INIT], socket="signal")
    ends = [ev("handoff_failed", 2.0, kind="signal", peer_uid=1001, reason="timeout")]
    w = wrap(ctx, ok=owner_ok, step="done" if owner_ok else "connect-signal",
             errno=None if owner_ok else "ENOENT")
    j = engine.judge_stall(ctx, w, who="the stalled connection", held=1.6, server="eof",
                           ends=ends, window=5.0, handshake=1.5, open_until=1.6,
                           window_end=5.0)
    assert j.verdict is engine.VULNERABLE and j.guard == "handshake-deadline"


@pytest.mark.parametrize(("open_until", "verdict"), [(6.0, "vulnerable"), (4.5, "error")])
def test_a_stall_is_held_past_the_window_only_if_seen_open_after_its_end(open_until, verdict):
    """The staller's watch may end early (the harness lets it go): "open" is evidence of
    a stall past the window only if it was seen open after the window's end."""
    ctx = ctx_for([INIT])
    w = wrap(ctx, ok=False, step="handoff-notify", errno="EAGAIN")
    j = engine.judge_stall(ctx, w, who="the stalled connection", held=open_until - 0.1,
                           server="open", ends=[], window=5.0, handshake=1.5,
                           open_until=open_until, window_end=5.0)
    assert j.verdict.value == verdict, j
