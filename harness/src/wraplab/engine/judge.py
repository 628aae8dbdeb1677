"""The common verdict of an owner's handoff under attack.

Decided from what the actors saw — the attacker's connect errno, the status/ACK byte it
got, whether the server drained the token from the pipe it passed, the owner's client
result — with the server's events (where the target keeps them) as corroboration: events
that contradict the actors make the verdict ``error``. No attack, no verdict: when the
attack did not reach a live boundary (no socket found, no attempt, only missing sockets,
or attempts after the owner's dial) the verdict is ``error``, never ``defended``.
"""

from __future__ import annotations

import time

from wraplab.engine.evidence import LOOP_ENDS, Flood, Intrusion, Wrap, rejections_of, removed_under
from wraplab.engine.verdicts import Judgement

__all__ = ["judge", "attack_did_not_happen"]


def attack_did_not_happen(wrap: Wrap, attacks: list, *, first: bool = True) -> str | None:
    """Why the attacks are no evidence for a verdict on ``wrap``, or None."""
    if wrap.step == "hold":
        return f"the owner's client was never released ({wrap.data.get('error')})"
    if not attacks:
        return "no attacker acted"
    missed = [a.did_not_happen() for a in attacks]
    if all(missed):
        return "; ".join(missed)
    for a in attacks:
        dial = wrap.t_dial
        if dial is None:
            continue  # the owner never dialled: no attempt can have come after it
        if isinstance(a, Intrusion) and first and a.live_attempts and a.finished > dial:
            return (f"the {a.actor.role} finished at +{a.finished - wrap.started:.2f}s, after "
                    f"the owner dialled (+{dial - wrap.started:.2f}s): not first")
        if isinstance(a, Flood) and not first and a.attempts and not (
                float(a.data.get("t0") or 0) <= dial <= a.finished):
            return (f"the {a.actor.role}'s flood did not run while the owner dialled "
                    f"(flood +{float(a.data.get('t0') or 0) - wrap.started:.2f}s.."
                    f"+{a.finished - wrap.started:.2f}s, dial "
                    f"+{dial - wrap.started:.2f}s)")
    return None


def judge(ctx, wrap: Wrap, attacks: list | None, *, first: bool = True) -> Judgement:
    """- error: the attack did not happen (see :func:`attack_did_not_happen`), or the
      server's events contradict what the actors saw;
    - vulnerable: a handoff from anyone but the owner was taken (the attacker saw status 1,
      an ACK, or its token drained; the events corroborate), or the owner failed after the
      attacker reached the server and ended or filled the loop (denial of service);
    - broken: the owner failed and no attacker caused it;
    - defended: the attack reached a live boundary that stopped it (guard: ``kernel``,
      ``peer-check``, ``handshake``), and the owner's token arrived.
    ``attacks=None``: the owner alone; ``first``: the attacks had to end before the owner
    dialled (the held client guarantees it; a flood instead must overlap the dial).
    """
    owner_uid = wrap.actor.uid
    events = ctx.events(wrap.session)
    late = ctx.dialled_too_late(wrap)
    if late:
        return ctx.error(f"no verdict: {late}")
    if attacks is not None:
        why = attack_did_not_happen(wrap, attacks, first=first)
        if why:
            return ctx.error(f"the attack did not happen: {why}")
        attacks = [a for a in attacks if not a.did_not_happen()]
    attacks = attacks or []
    attacker_uids = {a.uid for a in attacks}
    intruder_tokens = {a.token for a in attacks if isinstance(a, Intrusion) and a.token}
    foreign = [e for e in events if e.get("type") == "handoff_ok"
               and (e.get("peer_uid") != owner_uid or e.get("token") in intruder_tokens)]
    rejected = [e for e in events if e.get("type") == "peer_rejected"
                and e.get("peer_uid") in attacker_uids]
    ctx.metrics["server_rejections"] = rejections_of(events, attacker_uids)
    taken = [a for a in attacks if a.accepted]
    if foreign and not taken and attacks and all(a.refused_outright for a in attacks):
        return ctx.error("the server's events record a foreign handoff "
                         f"({_ev(foreign[0])}) but every attempt was refused outright "
                         f"({_refusals(attacks)})")
    if taken or foreign:
        e = foreign[0] if foreign else {}
        a = taken[0] if taken else None
        who = f"{a.actor.role} (uid {a.uid})" if a else f"peer uid {e.get('peer_uid')}"
        seen = [f"it saw {a.refusals()}"] if a else []
        seen += [f"the server's events: {_ev(e)}"] if e else []
        return ctx.vulnerable(
            f"the {who}'s handoff was taken on the {e.get('kind', ctx.socket)} socket "
            f"({'; '.join(seen)}); " + ("the owner's wrap then " + wrap.failure()
                                        if not wrap.ok else "the owner's wrap still reported ok"))
    # Did the server pull the wrap directory out from under a loop still waiting for the
    # owner? (AGENTSH.md G8.) Then the owner's next dial races the removal whatever an
    # attacker does: broken, whichever way this run's race went.
    g8 = removed_under(events, ctx.owner_kinds())
    reached = bool(rejected) or any(a.reached_server for a in attacks)
    if not wrap.ok:
        if g8:
            return ctx.broken(g8 + f"; the owner's wrap then {wrap.failure()}")
        return _owner_failed(ctx, wrap, attacks, events, reached, attacker_uids)
    if events:
        events = _loops_recorded(ctx, wrap, events)
        for kind in ctx.owner_kinds():
            got = [e for e in events if e.get("type") == "handoff_ok" and e.get("kind") == kind
                   and e.get("peer_uid") == owner_uid]
            if not got:
                return ctx.error(f"the owner's client reported ok but the server recorded "
                                 f"no handoff_ok on {kind} from uid {owner_uid}")
            if kind != "ptrace" and got[0].get("token") != wrap.token:
                return ctx.vulnerable(f"the {kind} fd that arrived holds token "
                                      f"{got[0].get('token')!r}, not the owner's "
                                      f"{wrap.token!r}")
    if g8:
        return ctx.broken(g8 + "; the owner's dial won the race this time")
    if not attacks:
        return ctx.defended(f"the owner's token arrived ({', '.join(ctx.owner_kinds())})")
    if all(a.kernel_refused for a in attacks):
        refused = "; ".join(a.refusals() if isinstance(a, Intrusion) else a.summary()
                            for a in attacks)
        return ctx.defended(f"the kernel refused the attacker before the server saw it "
                            f"({refused}); the owner's token arrived", guard="kernel")
    statuses = [s for a in attacks if isinstance(a, Intrusion) for s in a.attempts
                if s.get("status") == 0]
    if statuses and not rejected:
        return ctx.defended(f"the server answered the attacker's handoff with status 0 / "
                            f"NACK ({_refusals(attacks)}); the owner's token arrived",
                            guard="handshake")
    return ctx.defended(
        f"the attacker reached the server and was turned away ("
        f"{ctx.metrics['server_rejections']} rejections counted by the server); the "
        "owner's token arrived", guard="peer-check")


def _loops_recorded(ctx, wrap: Wrap, events: list) -> list:
    """The session's events once the server has recorded the end of each of the owner's
    loops. A handoff without a status byte (signal) is recorded after the client is gone,
    and later still when the loop first has a flood's connections to turn away: wait for
    it (bounded by the accept window) before reading its absence as evidence."""
    def ended(ev: list) -> bool:
        return all(any(e.get("type") in LOOP_ENDS and e.get("kind") == kind for e in ev)
                   for kind in ctx.owner_kinds())

    if ended(events):
        return events
    window = float(ctx.scenario.server.get("accept_window") or ctx.default_window)
    got = ctx.waits_until("the server recorded the end of the owner's loops",
                          lambda: (lambda ev: ev if ended(ev) else None)(
                              ctx.events(wrap.session)),
                          time.time() + min(window, 10.0) + 2.0, pause=0.1)
    return got or ctx.events(wrap.session)


def _owner_failed(ctx, wrap: Wrap, attacks: list, events: list, reached: bool,
                  attacker_uids: set) -> Judgement:
    """Did the attacker cause the owner's failure? Only if it ended or consumed the loop of
    the socket the owner failed on (an accept-once rejection, a first-wins connection), or
    filled its backlog (EAGAIN on connect while flooding)."""
    failed_kind = wrap.failed_kind
    owner_uid = wrap.actor.uid
    # A loop ended by a rejected peer that is not the owner counts too: the server may see
    # the attacker under another uid (unmapped: the overflow uid).
    ended = [e for e in events if e.get("type") in ("handoff_ok", "handoff_failed")
             and e.get("kind") == failed_kind
             and (e.get("peer_uid") in attacker_uids
                  or (e.get("reason") == "wrong_peer" and e.get("peer_uid") != owner_uid))]
    if not events:  # a target without events: what the actors saw must do
        # The attacker ended the loop when it reached the server and the owner then found
        # no socket -- unless a later attempt of the attacker still met the live socket
        # (then the loop outlived the rejection, and something else ended it: G8's cleanup).
        ended = [a for a in attacks if isinstance(a, Intrusion) and a.reached_server
                 and wrap.errno in ("ENOENT", "ECONNREFUSED") and not a.live_after_reaching]
        # A flood that got through and then met no socket before the owner even dialled
        # ended the loop itself (nothing else removes it then: the window had not passed).
        ended += [a for a in attacks if isinstance(a, Flood) and a.reached_server
                  and wrap.errno in ("ENOENT", "ECONNREFUSED") and a.gone_at is not None
                  and wrap.t_dial is not None and a.gone_at <= wrap.t_dial]
    flooded = wrap.errno == "EAGAIN" and any(isinstance(a, Flood) and a.reached_server
                                             for a in attacks)
    if reached and not (ended or flooded):
        live = [a for a in attacks if isinstance(a, Intrusion) and a.live_after_reaching]
        return ctx.broken(
            f"the owner's wrap {wrap.failure()}; the attacker reached the server but did not "
            f"end or fill the {failed_kind} loop, so it did not cause it"
            + (" (its later attempt still met the live socket)" if live and not events
               else ""))
    if reached:
        who = ", ".join(sorted({a.actor.role for a in attacks})) or "the attacker"
        rejected = sum(1 for e in events if e.get("type") == "peer_rejected")
        return ctx.vulnerable(
            f"denial of service: the owner's wrap {wrap.failure()} after the {who} reached "
            f"the server ({rejected} peer_rejected events, "
            f"{ctx.metrics['server_rejections']} rejections counted)",
            guard="peer-check" if rejected else None)
    return ctx.broken(f"the owner's wrap {wrap.failure()}; no attacker got past the kernel, "
                      "so the attacker did not cause it" if attacks
                      else f"the owner's wrap {wrap.failure()}")


def _refusals(attacks: list) -> str:
    return "; ".join(a.refusals() for a in attacks if isinstance(a, Intrusion))


def _ev(e: dict) -> str:
    return (f"handoff_ok kind={e.get('kind')} peer_uid={e.get('peer_uid')} "
            f"token={e.get('token')!r}")
