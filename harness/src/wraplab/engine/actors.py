"""Actors: the scenario roles, played by real users of the lab, and the verbs scenarios use
(``wraps``, ``starts_wrap``, ``attacks_socket``, ``starts_flood``, ``runs_tool`` ...).

Ordering between actors is by barriers, never by sleeps: the owner's client started with
:meth:`Actor.starts_wrap` announces the server's wrap-init answer and holds before its first
dial until the engine releases it (:class:`HeldWrap`); a flood says when it runs
(:class:`RunningFlood`). Every step lands in the transcript.
"""

from __future__ import annotations

import contextlib
import itertools
import posixpath
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from wraplab.engine.evidence import Flood, Intrusion, Wrap, json_of

if TYPE_CHECKING:
    from wraplab.engine.context import Context

__all__ = ["Actor", "Barrier", "HeldWrap", "RunningFlood", "SwappedSocket", "HarnessError",
           "TOOLS"]

TOOLS = "wraplab.actors"
_serial = itertools.count(1)


class HarnessError(RuntimeError):
    """The harness could not do a step: the verdict is ``error``."""


class Actor:
    """A scenario role played by a real user of the lab (users.conf)."""

    def __init__(self, ctx: Context, role: str, user_role: str, caps: Sequence[str] = ()):
        self.ctx = ctx
        self.role = role
        self.user_role = user_role
        self.user = ctx.run.users[user_role]
        self.caps = tuple(caps)

    def with_caps(self, *caps: str) -> Actor:
        """The same user keeping ``caps`` in every process it runs from here (e.g.
        ``dac_override``: container root that dropped to the uid but kept the capability;
        it gets through directory modes and ACLs, so the server's own checks stand)."""
        actor = Actor(self.ctx, self.role, self.user_role, (*self.caps, *caps))
        self.ctx.note(f"the {self.role} ({self.name}, uid {self.uid}) keeps CAP_"
                      + ", CAP_".join(c.upper() for c in actor.caps))
        return actor

    @property
    def label(self) -> str:
        """The role as the transcript shows it (``intruder+dac_override``)."""
        return "+".join((self.role, *self.caps))

    def lab_options(self, peer: bool = False) -> dict:
        """Keyword arguments for the lab's exec/spawn of this actor's processes."""
        if self.caps and peer:
            raise HarnessError("an actor with capabilities runs in the main container only")
        return {"caps": self.caps} if self.caps else {}

    @property
    def uid(self) -> int:
        return self.user.uid

    @property
    def name(self) -> str:
        return self.user.name

    def __repr__(self) -> str:
        return f"<{self.role} {self.name} uid {self.uid}>"

    def where(self, peer: bool = False):
        """The lab run, or its peer container (``SERVER = {"peer": True}``, DockerLab)."""
        if not peer:
            return self.ctx.run
        where = getattr(self.ctx.run, "peer", None)
        if where is None:
            raise HarnessError(f"the {self.ctx.cell.lab} lab started no peer container "
                               "(SERVER = {'peer': True})")
        return where

    # -- tools ---------------------------------------------------------------------------
    def runs_tool(self, tool: str, *args: str, timeout: float = 60.0,
                  peer: bool = False) -> dict:
        """Run the in-lab tool ``wraplab.actors.<tool>`` as this actor; its JSON object
        (a tool that printed none is a :class:`HarnessError`)."""
        res = self.where(peer).exec(self.user_role, tool_argv(tool, *args), timeout=timeout,
                                    **self.lab_options(peer))
        data = json_of(res)
        if data is None:
            raise HarnessError(f"{tool} printed no JSON (exit {res.exit_code}): "
                               f"{(res.stderr or '').strip()[-400:]}")
        return data

    def spawns_tool(self, tool: str, *args: str, peer: bool = False):
        """Start ``wraplab.actors.<tool>`` in the background; its handle (killed at the end
        of the cell if still running)."""
        return self.ctx.track(self.where(peer).spawn(self.user_role, tool_argv(tool, *args),
                                                     **self.lab_options(peer)))

    # -- the owner's client --------------------------------------------------------------
    def client_argv(self, *, legacy: bool = False, dial: str | None = None,
                    caller_uid: int | None = None) -> list[str]:
        ctx = self.ctx
        argv = ctx.target.client(ctx.api, legacy=legacy, timeout=ctx.client_budget, dial=dial)
        if caller_uid is not None:
            argv += ["--caller-uid", str(caller_uid)]
        return argv

    def wrap_done(self, res, started: float, argv: Sequence[str]) -> Wrap:
        """Record a finished client run in the transcript; its :class:`Wrap`."""
        data = json_of(res) or {}
        w = Wrap(self, started, res.exit_code, data, stderr=res.stderr or "")
        self.ctx.wraps.append(w)
        argv = list(argv)
        api = argv[argv.index("--api") + 1] if "--api" in argv[:-1] else self.ctx.api
        how = " ".join(a for a in argv[2:] if not a.startswith(("unix:", "tcp:"))
                       and a != "--api")
        if w.ok:
            result = f"ok: {'+'.join(w.paths) or 'handoff'} handed over, token {w.token}"
        elif not data:
            result = f"no JSON from the client (exit {res.exit_code}): " \
                     f"{(res.stderr or '').strip()[-200:]}"
        else:
            result = w.failure()
        if data.get("held_ms") is not None:
            result += f" (held {data['held_ms']:.0f} ms before its dial)"
        self.ctx.step(self, f"wraps via {api} ({how})", result, errno=w.errno,
                      t=started, ms=w.latency_ms if w.latency_ms is not None
                      else res.duration * 1000,
                      detail={"exit_code": res.exit_code, "client": data},
                      end=res.started + res.duration)
        if w.session:
            self.ctx.watch_session(w.session)
        return w

    def wraps(self, *, legacy: bool = False, dial: str | None = None,
              caller_uid: int | None = None, peer: bool = False) -> Wrap:
        """Run the target's client to the end: session, wrap-init, every handoff."""
        argv = self.client_argv(legacy=legacy, dial=dial, caller_uid=caller_uid)
        started = time.time()
        res = self.where(peer).exec(self.user_role, argv, timeout=self.ctx.client_budget + 60,
                                    **self.lab_options(peer))
        return self.wrap_done(res, started, argv)

    def starts_wrap(self, *, legacy: bool = False, dial: str | None = None,
                    caller_uid: int | None = None, peer: bool = False,
                    launcher: Sequence[str] = ()) -> HeldWrap:
        """Start the client in the background, held between wrap-init and its first dial
        until :meth:`HeldWrap.release` (``launcher``: an argv prefix, e.g. ``unshare -Ur``;
        ``peer``: in the lab's peer container)."""
        return HeldWrap(self, self.client_argv(legacy=legacy, dial=dial, caller_uid=caller_uid),
                        peer=peer, launcher=launcher)

    # -- attacks ----------------------------------------------------------------------
    def attacks_socket(self, kind: str, path: str | None, *, steps: str = "handoff,connect",
                       peer: bool = False, discover: bool = False, wait: float = 2.0,
                       extra: Sequence[str] = ()) -> Intrusion:
        """Try the ``kind`` socket at ``path`` (the owner's, as the server announced it):
        a full handoff with the attacker's own token, then a bare connect. ``discover``:
        find the socket first the way a local user can (/proc/net/unix, listing; no name
        pattern), and check that it is ``path``. ``path`` None: the attack cannot happen
        (the verdict will be ``error``)."""
        if path is None:
            intr = Intrusion(self, {"uid": self.uid, "path": None, "steps": []})
            self.ctx.step(self, f"has no {kind} socket to attack", "the attack did not happen")
            return intr
        where = ["--base", self.ctx.run.temp_base, "--wait", f"{wait:g}"] if discover \
            else ["--path", path]
        data = self.runs_tool("intrude", "--kind", kind, *where, "--do", steps, *extra,
                              timeout=wait + 30, peer=peer)
        intr = Intrusion(self, data)
        for s in intr.steps:
            if s["action"] == "find":
                via = " and ".join(s.get("via") or []) or "-"
                listing = f"; listing the temp base: {s['listing_errno']}" \
                    if s.get("listing_errno") else ""
                self.ctx.step(self, f"looks for a socket under {self.ctx.run.temp_base}",
                              f"{s['path']} (via {via}{listing})" if s.get("path")
                              else "nothing found", errno=s.get("errno"), t=s["t"],
                              ms=s.get("ms"), detail=s)
            elif s["action"] == "handoff":
                what = "its own pid" if kind == "ptrace" else f"its own token {intr.token}"
                self.ctx.step(self, f"hands off {what} to {s['path']}", s.get("result", ""),
                              errno=s.get("errno"), t=s["t"], ms=s.get("ms"), detail=s)
            else:
                self.ctx.step(self, f"connects to {s['path']}", s.get("result", ""),
                              errno=s.get("errno"), t=s["t"], ms=s.get("ms"), detail=s)
        if discover and intr.path != path:
            self.ctx.note(f"the {self.role} found {intr.path}, not the owner's socket {path}: "
                          "its attempts were not the attack")
            intr = Intrusion(self, {**data, "path": None,
                                    "steps": [s for s in intr.steps if s["action"] == "find"]})
        return intr

    def swaps_socket(self, path: str, *, hold: float = 15.0) -> SwappedSocket:
        """Replace the socket at ``path`` with a listener of this actor's and wait for
        whoever dials it (the actor must be able to write the socket's directory, e.g.
        CAP_DAC_OVERRIDE); returns once the actor's socket listens there, or it failed."""
        return SwappedSocket(self, path, hold=hold)

    def starts_flood(self, path: str, *, seconds: float, procs: int = 1,
                     waiters: int = 0) -> RunningFlood:
        """connect+close on ``path`` as fast as possible for ``seconds`` (or until stopped);
        :meth:`RunningFlood.ready` waits until it runs at full speed."""
        return RunningFlood(self, path, seconds=seconds, procs=procs, waiters=waiters)


def tool_argv(tool: str, *args: str) -> list[str]:
    return ["python3", "-m", f"{TOOLS}.{tool}", *args]


class Barrier:
    """A private directory owned by one actor (made as root) where that actor and the
    harness leave files for each other: the harness waits for a file to appear, or makes
    one appear to let the actor go on."""

    def __init__(self, ctx: Context, actor: Actor, peer: bool = False):
        self.ctx = ctx
        self.run = actor.where(peer)
        base = ctx.run.barrier_base
        if (id(self.run), base) not in ctx.barrier_parents:
            self.run.tool("barrier", ["parent", "--path", base])
            ctx.barrier_parents.add((id(self.run), base))
        self.dir = posixpath.join(base, f"{actor.role}-{next(_serial)}")
        out = actor.runs_tool("barrier", "make", "--path", self.dir, peer=peer)
        if not out.get("ok"):
            raise HarnessError(f"cannot make the barrier directory {self.dir}: {out}")

    def file(self, name: str) -> str:
        return posixpath.join(self.dir, name)

    def wait(self, name: str, timeout: float, while_running=None) -> dict:
        """Until the file ``name`` exists (at most ``timeout`` s; ``while_running``: a
        handle whose end means it never will): the barrier tool's answer (``ok``,
        ``content`` when it holds JSON, ``waited_ms``, ``why``)."""
        pid = getattr(while_running, "pid", None)
        return self.run.tool("barrier", ["wait", "--path", self.file(name),
                                         "--timeout", f"{timeout:g}",
                                         *(["--while-pid", str(pid)] if pid else [])],
                             timeout=timeout + 30)

    def release(self, name: str) -> None:
        self.run.tool("barrier", ["release", "--path", self.file(name)])


class HeldWrap:
    """The owner's client, started and held after wrap-init (``--announce`` and
    ``--hold-before-dial``): the engine learns the sockets the server announced, lets the
    attackers act, then releases the client."""

    #: Seconds the client waits for its release at most: generous, the server's accept
    #: window (not the harness's speed on a loaded machine) is what a scenario measures.
    hold_limit = 120.0

    def __init__(self, actor: Actor, argv: list[str], *, peer: bool = False,
                 launcher: Sequence[str] = ()):
        self.actor = actor
        self.ctx = actor.ctx
        self.peer = peer
        self.barrier = Barrier(self.ctx, actor, peer)
        self.argv = [*launcher, *argv, "--announce", self.barrier.file("announced.json"),
                     "--hold-before-dial", self.barrier.file("release"),
                     "--hold-timeout", f"{self.hold_limit:g}"]
        self.started = time.time()
        self.handle = self.ctx.track(actor.where(peer).spawn(actor.user_role, self.argv,
                                                             **actor.lab_options(peer)))
        self._announced: dict | None = None
        self._looked = False
        self._wrap: Wrap | None = None

    @property
    def announced(self) -> dict | None:
        """The server's answer as the client announced it (session, paths), waiting for it;
        None when the client ended without one (wrap-init failed)."""
        if self._looked:
            return self._announced
        self._looked = True
        t0 = time.time()
        out = self.barrier.wait("announced.json", self.ctx.client_budget + 30,
                                while_running=self.handle)
        self._announced = out.get("content") if out.get("ok") else None
        if self._announced is None and out.get("why") == "gone":
            # The kernel has seen the client end; its handle hears of it a moment later
            # (once the exec's stream has closed: later still on a loaded machine).
            with contextlib.suppress(TimeoutError):
                self.handle.wait(10, kill=False)
        if self._announced is None and self.handle.poll() is None:
            raise HarnessError(f"the owner's client neither announced nor ended: {out}")
        info = self._announced or {}
        self.ctx.step(self.actor, "has its wrap-init answer and holds before its dial",
                      ", ".join(f"{k}: {v}" for k, v in (info.get("paths") or {}).items())
                      or "no answer (the client ended first)", t=t0,
                      ms=(time.time() - t0) * 1000, detail=info)
        if info.get("session"):
            self.ctx.watch_session(info["session"])
        if info.get("paths"):
            self.ctx.record_files(info["paths"])
        return self._announced

    @property
    def paths(self) -> dict:
        return dict((self.announced or {}).get("paths") or {})

    @property
    def session(self) -> str | None:
        return (self.announced or {}).get("session")

    def socket(self, kind: str) -> str | None:
        """The path of the owner's ``kind`` socket as the server announced it (notify for a
        signal cell's notify; the one ptrace socket in ptrace mode)."""
        return self.paths.get(kind)

    def release(self, timeout: float | None = None) -> Wrap:
        """Let the client dial, and wait for its end; its :class:`Wrap`."""
        if self._wrap is not None:
            return self._wrap
        self.announced  # noqa: B018 - the answer must be recorded before the dial
        if self.handle.poll() is None:
            t0 = time.time()
            self.barrier.release("release")
            self.ctx.step("harness", f"releases the {self.actor.role}'s client", t=t0,
                          ms=(time.time() - t0) * 1000)
        res = self.handle.wait(timeout or self.hold_limit + self.ctx.client_budget + 30)
        self._wrap = self.actor.wrap_done(res, self.started, self.argv)
        if self._announced and self._announced.get("t"):
            self._wrap.data.setdefault("t_announce", self._announced["t"])
        return self._wrap

    result = release


class RunningFlood:
    """A flood started in the background (``wraplab.actors.flood``)."""

    def __init__(self, actor: Actor, path: str, *, seconds: float, procs: int, waiters: int):
        self.actor = actor
        self.ctx = actor.ctx
        self.path = path
        self.procs = procs
        self.barrier = Barrier(self.ctx, actor)
        self.handle = actor.spawns_tool(
            "flood", "--path", path, "--seconds", f"{seconds:g}", "--procs", str(procs),
            "--waiters", str(waiters), "--ready", self.barrier.file("running"))
        self._flood: Flood | None = None

    def ready(self, timeout: float = 10.0) -> bool:
        """Wait until the flood runs (its first process made its first few hundred
        connects); False if it ended or never got going."""
        t0 = time.time()
        out = self.barrier.wait("running", timeout, while_running=self.handle)
        self.ctx.step(self.actor, f"floods {self.path} with connect+close "
                      f"({self.procs} process{'es' if self.procs > 1 else ''})",
                      "running" if out.get("ok") else "never got going", t=t0,
                      ms=(time.time() - t0) * 1000)
        return bool(out.get("ok"))

    def stop(self, timeout: float = 30.0) -> Flood:
        """End the flood now (SIGTERM: it still reports); its :class:`Flood`."""
        if self._flood is not None:
            return self._flood
        if self.handle.poll() is None:
            try:
                self.handle.signal("TERM")
            except Exception:
                pass
        res = self.handle.wait(timeout)
        data = json_of(res)
        if not data:
            raise HarnessError(f"flood printed no JSON (exit {res.exit_code}): "
                               f"{(res.stderr or '').strip()[-400:]}")
        self._flood = Flood(self.actor, data)
        self.ctx.step(self.actor, f"stops flooding {self.path}", self._flood.summary(),
                      t=data.get("t0", 0), ms=(data.get("seconds") or 0) * 1000,
                      detail=data)
        return self._flood



class SwappedSocket:
    """An actor's own listener in place of a server's socket (``wraplab.actors.squat
    --swap``): whoever dials the path next talks to the actor."""

    def __init__(self, actor: Actor, path: str, *, hold: float):
        self.actor = actor
        self.ctx = actor.ctx
        self.path = path
        self.barrier = barrier = Barrier(self.ctx, actor)
        t0 = time.time()
        self.handle = actor.spawns_tool("squat", "--swap", "--path", path, "--hold",
                                        f"{hold:g}", "--ready", barrier.file("listening"),
                                        "--stop", barrier.file("stop"))
        out = barrier.wait("listening", 30, while_running=self.handle)
        #: The actor's socket listens at ``path`` (checked by stat: the path is the actor's).
        self.listening = bool(out.get("ok")) and self.ctx.run.stat(path).uid == actor.uid
        self.ctx.step(actor, f"replaces {path} with a socket of its own",
                      "listening there (the path is now its own)" if self.listening
                      else f"failed: {out.get('why') or 'the path is not its own'}", t=t0,
                      ms=(time.time() - t0) * 1000)
        self._data: dict | None = None

    def result(self, timeout: float = 60.0) -> dict:
        """Tell the listener to report (once whoever was to dial it has ended: a connection
        already made is still taken) and wait for it: what it saw (``peer``, ``token``,
        ``errno``)."""
        if self._data is not None:
            return self._data
        if self.handle.poll() is None:
            self.barrier.release("stop")
        res = self.handle.wait(timeout)
        data = self._data = json_of(res) or {}
        if not data:
            raise HarnessError(f"squat printed no JSON (exit {res.exit_code}): "
                               f"{(res.stderr or '').strip()[-400:]}")
        peer = data.get("peer")
        self.ctx.step(self.actor, f"waits at {self.path} for a client",
                      (f"uid {peer['uid']} (pid {peer['pid']}) connected; token received: "
                       f"{data.get('token')!r}") if peer else
                      f"nobody connected ({data.get('errno') or 'hold ended'})",
                      t=data.get("connected_t") or data.get("squat_t"), detail=data)
        return data

    def failure(self) -> str:
        """Why the swap did not happen (the tool's own words)."""
        if self.handle.poll() is None:
            self.handle.kill()
        try:
            data = self.result(10)
        except HarnessError as exc:
            return str(exc)
        return f"errno {data.get('errno')}, replaced {data.get('replaced')}"
