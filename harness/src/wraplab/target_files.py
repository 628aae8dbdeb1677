"""Target files: a TOML file (read with tomllib) that describes a server for wraplab to
attack; the format is documented with a commented example in docs/targets.md.

:func:`load` reads and checks a file and returns a :class:`~wraplab.targets.Target`; every
problem is reported at once, each with its line and key, in a :class:`TargetFileError`
(``wraplab targets check FILE`` prints them). Nothing is built or started by loading.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomllib

from wraplab.targets import (
    OPTIONS,
    PLACEHOLDERS,
    PLACEMENTS,
    PROFILES,
    SOCKETS,
    TRANSPORTS,
    Expectations,
    Override,
    Target,
    TargetError,
)

__all__ = ["TargetFileError", "load", "from_data", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
VERDICTS = ("defended", "vulnerable", "broken")
READY_KINDS = ("socket", "http", "command")

#: The keys of each table, and what each holds (for "unknown key" messages).
KEYS = {
    (): ("version", "name", "description", "events", "install", "server", "client", "expect"),
    ("install",): ("build", "copy", "image"),
    ("server",): ("command", "placements", "sockets", "transports", "args", "ready"),
    ("server", "args"): (*SOCKETS, "tcp", *OPTIONS),
    ("server", "ready"): (*READY_KINDS, "timeout"),
    ("client",): ("use", "dial", "server_uid"),
    ("expect",): ("default", "like", "scenarios"),
}


class TargetFileError(TargetError):
    """A target file is not valid; ``problems`` lists each one (line, key, what is wrong)."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = sorted(problems, key=_line_of)
        super().__init__(f"{path}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


def _line_of(problem: str) -> int:
    """The line a problem names (``line N: ...``), 0 for the others: the file's order."""
    head = problem.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0


def _split_key(text: str) -> list[str]:
    """``a."b.c".d`` -> ``["a", "b.c", "d"]``."""
    parts, cur, quote = [], "", None
    for ch in text.strip():
        if quote:
            if ch == quote:
                quote = None
            else:
                cur += ch
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = r"""(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)"""
_KEYLINE = re.compile(rf"^\s*({_KEY}(?:\s*\.\s*{_KEY})*)\s*=")


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each table and key of a TOML text is (1-based line numbers)."""
    where: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            table = tuple(_split_key(m.group(1)))
            where.setdefault(table, n)
            continue
        m = _KEYLINE.match(line)
        if m:
            where.setdefault((*table, *_split_key(m.group(1))), n)
    return where


class _Checker:
    def __init__(self, path: str, text: str | None):
        self.path = path
        self.lines = key_lines(text) if text else {}
        self.problems: list[str] = []

    def where(self, key: tuple[str, ...]) -> str:
        for i in range(len(key), 0, -1):
            if key[:i] in self.lines:
                return f"line {self.lines[key[:i]]}"
        return "top level" if not key else "(not in the file)"

    def bad(self, key: tuple[str, ...], message: str) -> None:
        name = ".".join(f'"{k}"' if not re.match(r"^[A-Za-z0-9_-]+$", k) else k for k in key)
        self.problems.append(f"{self.where(key)}: {name or 'the file'}: {message}")

    # -- typed reads ---------------------------------------------------------------------
    def table(self, data: Mapping, key: tuple[str, ...]) -> dict:
        value = data.get(key[-1]) if key else data
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.bad(key, f"must be a table ([{'.'.join(key)}]), not {_kind(value)}")
            return {}
        known = KEYS.get(key)
        if known is not None:
            for k in value:
                if k not in known:
                    hint = _close(k, known)
                    self.bad((*key, k), f"unknown key{hint} (known here: {', '.join(known)})")
        return dict(value)

    def string(self, data: Mapping, key: tuple[str, ...], *, required: bool = False,
               choices: tuple[str, ...] | None = None) -> str | None:
        value = data.get(key[-1])
        if value is None:
            if required:
                self.bad(key, "is missing (a string)")
            return None
        if not isinstance(value, str) or not value.strip():
            self.bad(key, f"must be a non-empty string, not {_kind(value)}")
            return None
        if choices and value not in choices:
            self.bad(key, f"{value!r} is not one of {', '.join(choices)}{_close(value, choices)}")
            return None
        return value

    def strings(self, data: Mapping, key: tuple[str, ...], *, required: bool = False,
                choices: tuple[str, ...] | None = None, empty_ok: bool = True,
                placeholders: tuple[str, ...] = ()) -> list[str] | None:
        value = data.get(key[-1])
        if value is None:
            if required:
                self.bad(key, "is missing (a list of strings, e.g. [\"a\", \"b\"])")
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(key, f"must be a list of strings (an argv: [\"prog\", \"--flag\"]), "
                     f"not {_kind(value)}")
            return None
        if not value and not empty_ok:
            self.bad(key, "must not be empty")
            return None
        if choices:
            wrong = [v for v in value if v not in choices]
            if wrong:
                self.bad(key, f"{', '.join(map(repr, wrong))} not among {', '.join(choices)}"
                         f"{_close(wrong[0], choices)}")
                return None
        for v in value:
            self.placeholders(key, v, placeholders)
        return value

    def placeholders(self, key: tuple[str, ...], text: str, allowed: tuple[str, ...]) -> None:
        try:
            names = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:
            self.bad(key, f"{text!r}: a brace that is no placeholder ({exc}; write {{{{ for "
                     "a literal brace)")
            return
        for name in names:
            if name not in allowed:
                self.bad(key, f"{text!r} uses the placeholder {{{name}}}, unknown here"
                         + (f" (known here: {', '.join('{' + a + '}' for a in allowed)})"
                            if allowed else " (no placeholder is filled in here)"))


def _kind(value: Any) -> str:
    return {str: "a string", bool: "true/false", int: "a number", float: "a number",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__) \
        + (f" ({value!r})" if isinstance(value, (str, int, float, bool)) else "")


def _close(word: str, choices) -> str:
    import difflib

    near = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def from_data(data: Mapping, *, path: str = "<target>", text: str | None = None,
              here: Path | None = None, builtin: bool = False) -> Target:
    """A :class:`Target` from parsed target-file data; :class:`TargetFileError` lists every
    problem (with lines when ``text``, the file's TOML, is given)."""
    c = _Checker(path, text)
    top = c.table(data, ())
    version = top.get("version")
    if version is None:
        c.bad(("version",), f"is missing (write version = {FORMAT_VERSION})")
    elif version != FORMAT_VERSION or isinstance(version, bool):
        c.bad(("version",), f"{version!r}: this wraplab reads version {FORMAT_VERSION}")
    name = c.string(top, ("name",), required=True)
    if name and not builtin and not _NAME.match(name):
        c.bad(("name",), f"{name!r}: lowercase letters, digits and '-' only (it names the "
              "target in cell ids and report columns)")
    if name and not builtin and name in PROFILES:
        c.bad(("name",), f"{name!r} is a built-in profile's name; choose another")
    description = c.string(top, ("description",)) or ""
    events = top.get("events", False)
    if not isinstance(events, bool):
        c.bad(("events",), f"must be true or false, not {_kind(events)}")
        events = False

    install = c.table(top, ("install",))
    build = c.strings(install, ("install", "build"), empty_ok=False,
                      placeholders=("here",)) or []
    copy = c.strings(install, ("install", "copy"), empty_ok=False) or []
    image = c.string(install, ("install", "image"))
    if image and copy:
        c.bad(("install", "image"), "give either copy (host files) or image, not both")
    base = here or Path(".")
    copied = []
    for rel in copy:
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            c.bad(("install", "copy"), f"{rel!r}: a path relative to the target file's "
                  "directory, inside it")
            continue
        copied.append(str((base / p).resolve()))
        if not build and not (base / p).exists():
            c.bad(("install", "copy"), f"{rel!r} does not exist (looked for {base / p}); "
                  "nothing builds it (install.build)")
    names = [Path(p).name for p in copied]
    if len(set(names)) != len(names):
        c.bad(("install", "copy"), "two entries have the same file name (each lands in "
              "{target_dir}/<name>)")

    server = c.table(top, ("server",))
    if "server" not in top:
        c.bad(("server",), "is missing: the [server] table with the start command")
    command = c.strings(server, ("server", "command"), required=bool(server) or
                        "server" in top, empty_ok=False, placeholders=PLACEHOLDERS) or []
    placements = c.strings(server, ("server", "placements"), choices=PLACEMENTS,
                           empty_ok=False) or ["root"]
    sockets = c.strings(server, ("server", "sockets"), choices=SOCKETS,
                        empty_ok=False) or ["notify"]
    transports = c.strings(server, ("server", "transports"), choices=TRANSPORTS,
                           empty_ok=False) or ["unix"]
    args_t = c.table(server, ("server", "args"))
    args: dict[str, tuple[str, ...]] = {}
    for key in KEYS[("server", "args")]:
        allowed = PLACEHOLDERS + (("value",) if key in OPTIONS else ())
        got = c.strings(args_t, ("server", "args", key), placeholders=allowed)
        if got is not None:
            args[key] = tuple(got)
        if key in OPTIONS and got is not None and not any("{value}" in a for a in got):
            c.bad(("server", "args", key), "never uses {value} (the option's value)")
    for sock in sockets:
        args.setdefault(sock, ())
    if "tcp" in transports and "tcp" not in args:
        c.bad(("server", "transports"), "lists tcp, but [server.args] has no tcp = [...] "
              "(how to make the server serve its API on 127.0.0.1:{tcp_port})")
    ready_t = c.table(server, ("server", "ready"))
    kinds = [k for k in READY_KINDS if k in ready_t]
    ready_kind, ready_value = "socket", "{api_path}"
    if len(kinds) > 1:
        c.bad(("server", "ready"), f"give one of {', '.join(READY_KINDS)}, not "
              f"{' and '.join(kinds)}")
    elif kinds == ["command"]:
        ready_kind = "command"
        ready_value = tuple(c.strings(ready_t, ("server", "ready", "command"), empty_ok=False,
                                      placeholders=PLACEHOLDERS) or ())
    elif kinds:
        ready_kind = kinds[0]
        ready_value = c.string(ready_t, ("server", "ready", ready_kind)) or ""
        c.placeholders(("server", "ready", ready_kind), ready_value, PLACEHOLDERS)
        if ready_kind == "http" and ready_value and not ready_value.startswith("/"):
            c.bad(("server", "ready", "http"), f"{ready_value!r}: a path starting with '/'")
    timeout = ready_t.get("timeout", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        c.bad(("server", "ready", "timeout"), f"must be a number of seconds > 0, not "
              f"{_kind(timeout)}")
        timeout = 30

    client = c.table(top, ("client",))
    c.string(client, ("client", "use"), choices=("wrapref",))
    dial = c.string(client, ("client", "dial"), choices=("retry", "once")) or "once"
    server_uid = client.get("server_uid", "auto") if isinstance(client, Mapping) else "auto"
    if isinstance(server_uid, bool) or not (
            server_uid in ("auto", "any") or (isinstance(server_uid, int) and server_uid >= 0)):
        c.bad(("client", "server_uid"), f"must be \"auto\", \"any\" or a uid (an integer "
              f">= 0), not {server_uid!r}")
        server_uid = "auto"

    expect_t = c.table(top, ("expect",))
    default = c.string(expect_t, ("expect", "default"), choices=VERDICTS)
    like = c.string(expect_t, ("expect", "like"),
                    choices=tuple(f"wrapref:{p}" for p in PROFILES))
    if default and like:
        c.bad(("expect", "like"), "give either default or like, not both")
    overrides: dict[str, Override] = {}
    scen_t = expect_t.get("scenarios") or {}
    if not isinstance(scen_t, Mapping):
        c.bad(("expect", "scenarios"), "must be a table of [expect.scenarios.\"<slug>\"]")
        scen_t = {}
    known = _scenario_slugs() if scen_t else ()
    for slug, o in scen_t.items():
        key = ("expect", "scenarios", slug)
        if slug not in known:
            c.bad(key, f"no scenario {slug!r}{_close(slug, known)} (wraplab list)")
        if not isinstance(o, Mapping):
            c.bad(key, "must be a table with verdict and reason")
            continue
        for k in o:
            if k not in ("verdict", "reason", "guard"):
                c.bad((*key, k), f"unknown key{_close(k, ('verdict', 'reason', 'guard'))} "
                      "(known here: verdict, reason, guard)")
        v = _verdict(c, o, (*key, "verdict"))
        why = c.string(o, (*key, "reason"), required=True)
        guard = c.string(o, (*key, "guard"), choices=tuple(_guards()))
        if v and why:
            overrides[slug] = Override(v, why, guard)

    if c.problems:
        raise TargetFileError(path, c.problems)
    from dataclasses import replace

    target = Target(
        name=name or "", description=description, command=tuple(command), args=args,
        placements=tuple(placements), sockets=tuple(sockets), transports=tuple(transports),
        ready_kind=ready_kind, ready_value=ready_value, ready_timeout=float(timeout),
        build=tuple(a.replace("{here}", str(base.resolve())) for a in build),
        copy=tuple(copied), image=image, here=str(base.resolve()) if here else None,
        dial=dial, server_uid=str(server_uid), has_events=events,
        expect=Expectations(default=default or "defended", like=like, scenarios=overrides),
        source=None if builtin else path)
    return replace(target, label=target.name)


def _verdict(c: _Checker, o: Mapping, key: tuple[str, ...]):
    """A verdict string, or a table keyed like a scenario's EXPECT: ``"*"``, or socket kinds,
    placements and transports joined by ``/`` (``"signal"``, ``"service/ptrace"``)."""
    value = o.get(key[-1])
    if not isinstance(value, Mapping):
        return c.string(o, key, required=True, choices=VERDICTS)
    parts_ok = (*SOCKETS, *PLACEMENTS, *TRANSPORTS)
    good = True
    for k, v in value.items():
        parts = [] if k == "*" else k.split("/")
        bad = [p for p in parts if p not in parts_ok]
        if bad or not k:
            c.bad((*key, k), f"a key is \"*\" or socket kinds, placements and transports "
                  f"joined by '/' ({', '.join(parts_ok)}), not {k!r}")
            good = False
        if v not in VERDICTS:
            c.bad((*key, k), f"{v!r} is not one of {', '.join(VERDICTS)}")
            good = False
    if not value:
        c.bad(key, "an empty table (give \"*\" = <verdict> at least)")
        good = False
    return dict(value) if good else None


def _scenario_slugs() -> tuple[str, ...]:
    from wraplab.engine.scenarios import discover

    return tuple(s.slug for s in discover())


def _guards():
    from wraplab.engine.axes import GUARDS

    return GUARDS


def load(path: str | Path) -> Target:
    """Read and check a target file; :class:`TargetFileError` lists every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetFileError(str(path), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetFileError(str(path), [f"cannot be read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TargetFileError(str(path), [f"not valid TOML: {exc}"]) from None
    return from_data(data, path=str(path), text=text, here=p.resolve().parent)
