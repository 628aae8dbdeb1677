"""Command line: ``wrapref serve`` and ``wrapref wrap`` (docs/design.md §1-§2).

``serve`` runs :class:`wrapref.server.WrapServer` until SIGTERM/SIGINT, then
removes every directory and socket it made and exits 0.  ``wrap`` runs
:class:`wrapref.client.WrapClient` and prints exactly one JSON object: exit 0
on success, 1 when refused or failed, 2 on usage errors.

Threat model: options come from whoever runs the command; the server refuses
non-loopback TCP API addresses (usage error, exit 2).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from . import __version__
from .profiles import PROFILE_NAMES

__all__ = ["main", "build_parser", "serve", "wrap"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _backlog(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _wrapper_pid(text: str):
    if text in ("child", "self"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want child, self or a number: {text!r}") from None


def _server_uid(text: str):
    if text in ("auto", "any"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"want auto, any or a uid: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _uid(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wrapref", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version="wrapref " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="{serve,wrap}")
    sub.required = True

    s = sub.add_parser("serve", help="run the reference wrap server")
    s.add_argument("--profile", choices=PROFILE_NAMES, default="hardened")
    s.add_argument("--api", action="append", metavar="unix:PATH|tcp:127.0.0.1:PORT",
                   help="API listener (repeatable; default unix:/run/wrapref/api.sock)")
    s.add_argument("--temp-base", metavar="DIR", help="where wrap-* directories go")
    s.add_argument("--accept-window", type=_positive_float, default=30.0, metavar="S")
    s.add_argument("--handshake-timeout", type=_positive_float, default=10.0, metavar="S")
    s.add_argument("--signal-socket", action="store_true", help="also create the signal socket")
    s.add_argument("--ptrace-mode", action="store_true", help="one ptrace socket instead")
    s.add_argument("--backlog", type=_backlog, metavar="N",
                   help="listen backlog of the wrap sockets (default: per profile)")
    s.add_argument("--log-file", metavar="PATH", help="JSON-lines log (default stderr)")

    w = sub.add_parser("wrap", help="run the owner's wrap client; prints one JSON object")
    w.add_argument("--api", default="unix:/run/wrapref/api.sock",
                   metavar="unix:PATH|tcp:HOST:PORT")
    w.add_argument("--session", metavar="ID", help="use this session instead of creating one")
    who = w.add_mutually_exclusive_group()
    who.add_argument("--legacy", action="store_true", help="send no caller_uid")
    who.add_argument("--caller-uid", type=_uid, metavar="N", help="claim this caller_uid")
    w.add_argument("--mode", choices=("agent", "shim"))
    w.add_argument("--connect-delay", type=_nonneg_float, default=0.0, metavar="S",
                   help="sleep this long between wrap-init and the first dial (by hand only; "
                        "a harness orders with --announce/--hold-before-dial)")
    w.add_argument("--announce", metavar="FILE",
                   help="after wrap-init, write the server's answer (session, socket paths) "
                        "to FILE as one JSON object")
    w.add_argument("--hold-before-dial", metavar="FILE",
                   help="after wrap-init, wait until FILE exists before the first dial "
                        "(bounded by --hold-timeout; the --timeout budget starts then)")
    w.add_argument("--hold-timeout", type=_positive_float, metavar="S",
                   help="how long --hold-before-dial waits at most (default: --timeout)")
    w.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S")
    w.add_argument("--dial", choices=("retry", "once"), default="retry")
    w.add_argument("--wrapper-pid", type=_wrapper_pid, default="child",
                   metavar="child|self|N")
    w.add_argument("--token", metavar="TOKEN", help="the token to hand over (default random)")
    w.add_argument("--server-uid", type=_server_uid, default="auto", metavar="auto|any|N",
                   help="who must be at the other end of the API and wrap sockets "
                        "(SO_PEERCRED; default auto: see docs/hostile-users.md H19)")
    w.add_argument("--notify-socket", metavar="PATH",
                   help="skip the API: hand over on this notify socket (an intruder's move)")
    w.add_argument("--signal-socket", metavar="PATH", help="skip the API: this signal socket")
    w.add_argument("--ptrace-socket", metavar="PATH", help="skip the API: this ptrace socket")
    return parser


def serve(args, parser) -> int:
    from .api import UsageError, parse_api
    from .server import WrapServer

    apis = args.api or [WrapServer.default_api]
    for spec in apis:
        try:
            parse_api(spec, server_side=True)
        except UsageError as exc:
            parser.error(str(exc))
    log_stream = None
    if args.log_file:
        from .observe import open_log
        from .profiles import get_profile

        prof = get_profile(args.profile)
        try:  # H24/H26: explicit mode, no symlink
            log_stream = open_log(args.log_file, prof.log_nofollow, prof.explicit_modes)
        except OSError as exc:
            sys.stderr.write(f"wrapref serve: cannot open --log-file: {exc}\n")
            return 1
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = WrapServer(
        profile=args.profile, apis=apis, temp_base=args.temp_base,
        accept_window=args.accept_window, handshake_timeout=args.handshake_timeout,
        signal_socket=args.signal_socket, ptrace_mode=args.ptrace_mode, backlog=args.backlog,
        log=log_stream,
    )
    try:
        try:
            server.start()
        except OSError as exc:
            server.log.error("cannot start", error=str(exc))
            return 1
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        server.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if log_stream is not None:
            log_stream.close()


def wrap(args, parser) -> int:
    from .client import WrapClient

    kind, sep, rest = args.api.partition(":")
    if kind not in ("unix", "tcp") or not sep or not rest:
        parser.error(f"invalid --api {args.api!r}: want unix:PATH or tcp:HOST:PORT")
    sockets = {}
    for kind_, path in (("notify", args.notify_socket), ("signal", args.signal_socket),
                        ("ptrace", args.ptrace_socket)):
        if path:
            sockets[kind_] = path
    if "ptrace" in sockets and len(sockets) > 1:
        parser.error("--ptrace-socket excludes --notify-socket/--signal-socket")
    if "signal" in sockets and "notify" not in sockets:
        parser.error("--signal-socket needs --notify-socket")
    caller = "getuid"
    if args.legacy:
        caller = None
    elif args.caller_uid is not None:
        caller = args.caller_uid
    client = WrapClient(
        api=args.api, session=args.session, caller_uid=caller, mode=args.mode,
        connect_delay=args.connect_delay, timeout=args.timeout, dial=args.dial,
        wrapper_pid=args.wrapper_pid, token=args.token, sockets=sockets or None,
        announce=args.announce, hold_before_dial=args.hold_before_dial,
        hold_timeout=args.hold_timeout,
        server_uid=args.server_uid,
    )
    result = client.run()
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["ok"] else 1


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args, parser)
    return wrap(args, parser)
