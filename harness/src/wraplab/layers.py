"""Steps for the scenarios that attack one defence layer on its own (issue 9 item 3).

These are verbs the engine does not have yet; the scenarios of docs/rules.md use them
through this module only, so the engine can take them over (``Actor.attacks_socket(...,
caps=)``, ``Actor.runs_tool(...)``, ``ctx.deputy_passes(...)``) without a scenario change
beyond the import:

- :func:`capable`: for the ``with`` block, every lab process of one scenario role runs with
  extra capabilities kept (``run.spawn/exec(..., caps=)``: the attacker's uid holding
  CAP_DAC_OVERRIDE gets through the directory's mode and ACL, so the server's own checks
  are what stands);
- :func:`tool`: run an in-lab tool as an actor (optionally with capabilities) and parse its
  JSON, an ``error`` verdict's reason when it printed none;
- :func:`deputy_passes`: a process of the owner connects to a wrap socket and passes the
  connected socket to the attacker, who then hands off, stalls or reports over it.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Sequence

from wraplab.engine import HarnessError


class _CapableRun:
    """A lab run whose spawn/exec for one role add ``caps`` (everything else as is)."""

    def __init__(self, run, role: str, caps: Sequence[str]):
        self._run = run
        self._role = role
        self._caps = tuple(caps)

    def __getattr__(self, name):
        return getattr(self._run, name)

    def spawn(self, actor, argv, **kw):
        if actor == self._role:
            kw.setdefault("caps", self._caps)
        return self._run.spawn(actor, argv, **kw)

    def exec(self, actor, argv, **kw):
        if actor == self._role:
            kw.setdefault("caps", self._caps)
        return self._run.exec(actor, argv, **kw)


@contextlib.contextmanager
def capable(ctx, actor, *caps: str):
    """Within the block, ``actor``'s lab processes keep ``caps`` (e.g. ``dac_override``)."""
    real = ctx.run
    ctx.run = _CapableRun(real, actor.user_role, caps)
    ctx.note(f"the {actor.role} ({actor.name}, uid {actor.uid}) keeps CAP_"
             + ", CAP_".join(c.upper() for c in caps) + " from here on")
    try:
        yield actor
    finally:
        ctx.run = real


def tool(ctx, actor, module: str, args: Sequence[str], *, timeout: float = 60.0,
         caps: Sequence[str] = ()) -> dict:
    """``python3 -m wraplab.actors.<module> ARGS`` as ``actor``; its JSON (HarnessError if
    it printed none)."""
    argv = ["python3", "-m", f"wraplab.actors.{module}", *args]
    extra = {"caps": tuple(caps)} if caps else {}  # else whatever capable() set
    res = ctx.run.exec(actor.user_role, argv, timeout=timeout, **extra)
    try:
        return res.json()
    except ValueError:
        raise HarnessError(f"{module} printed no JSON (exit {res.exit_code}): "
                           f"{(res.stderr or '').strip()[-400:]}") from None


def deputy_passes(ctx, deputy, receiver, *, do: str, kind: str, path: str | None = None,
                  hold: float = 5.0, wait: float = 15.0) -> tuple[dict, dict]:
    """The ``deputy`` (a process of the owner) connects to the ``kind`` wrap socket --
    ``path``, or one of a wrap-init of its own (its own session, ``caller_uid`` = its uid)
    -- and passes the connected socket to the ``receiver`` (the attacker), who then does
    ``do`` (handoff, stall, report) over it. Returns ``(deputy's JSON, receiver's JSON)``.

    Order by barriers: the receiver listens on a rendezvous in the temp base; the deputy
    dials it until it listens (bounded); the receiver waits for the socket (bounded)."""
    rendezvous = f"{ctx.run.temp_base}/rv-{secrets.token_hex(6)}.sock"
    tool_argv = ["python3", "-m", "wraplab.actors.deputy"]
    recv = ctx.run.spawn(receiver.user_role, [*tool_argv, "receive", "--rendezvous", rendezvous,
                                              "--do", do, "--kind", kind, "--hold", f"{hold:g}",
                                              "--wait", f"{wait:g}"])
    where = ["--path", path] if path else ["--api", ctx.api]
    t0 = time.time()
    dep = ctx.run.exec(deputy.user_role, [*tool_argv, "pass", "--rendezvous", rendezvous,
                                          "--kind", kind, *where, "--wait", f"{wait:g}"],
                       timeout=wait + 30)
    try:
        passed = dep.json()
    except ValueError:
        recv.kill()
        raise HarnessError(f"deputy printed no JSON (exit {dep.exit_code}): "
                           f"{(dep.stderr or '').strip()[-400:]}") from None
    ctx.step(deputy, f"connects to its {kind} socket {passed.get('path')} and passes the "
             f"connection to the {receiver.role}", passed.get("result") or
             passed.get("error", ""), errno=passed.get("errno"), t=passed.get("t", t0),
             ms=passed.get("ms"), detail=passed)
    if not passed.get("passed"):
        recv.kill()
        return passed, {}
    res = recv.wait(wait + hold + 30)
    try:
        got = res.json()
    except ValueError:
        raise HarnessError(f"deputy receive printed no JSON (exit {res.exit_code}): "
                           f"{(res.stderr or '').strip()[-400:]}") from None
    what = {"handoff": "hands off " + ("its own pid" if kind == "ptrace"
                                       else f"its own token {got.get('token')}"),
            "stall": f"holds it and sends nothing (up to {hold:g} s)",
            "report": "reports its uid over it"}[do]
    ctx.step(receiver, f"receives the deputy's {kind} connection and {what}",
             got.get("result", ""), errno=got.get("errno"), t=got.get("t", t0),
             ms=got.get("ms"), detail=got)
    return passed, got
