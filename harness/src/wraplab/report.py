"""Reports of scenario runs: the transcript of one run, the verdict matrix (rich on a
terminal, plain text otherwise), JSON, JUnit XML and Markdown (for CI step summaries)."""

from __future__ import annotations

import json
import platform
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wraplab import stats, timeline
from wraplab.engine import ERROR, NOT_RUN, Outcome, Step
from wraplab.targets import PROFILES

#: The JSON report's schema: ``schemas/report-v1.schema.json`` beside this module, documented
#: in docs/reports.md. A change that breaks a reader raises the version.
SCHEMA_VERSION = 1
SCHEMA_ID = f"https://wraplab.invalid/schemas/report-v{SCHEMA_VERSION}.schema.json"
SCHEMAS = Path(__file__).resolve().parent / "schemas"


class ReportError(Exception):
    """A report file that cannot be read back (not JSON, not ours, a newer schema)."""


MARK = {"defended": "defended", "vulnerable": "VULNERABLE", "broken": "broken", "error": "ERROR",
        "not-run": "not run"}
STYLE = {"defended": "green", "vulnerable": "red", "broken": "yellow", "error": "bold magenta",
         "not-run": "dim"}


def use_rich(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


# --------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------


def _fmt_facts(f: dict) -> str:
    if not f.get("exists"):
        return f"{f.get('path')}: missing"
    mode = f.get("mode")
    acl = f.get("acl")
    return (f"{f.get('label', f.get('kind'))}: {f.get('path')}  {f.get('kind')} "
            f"uid={f.get('uid')} gid={f.get('gid')} mode={'?' if mode is None else f'{mode:04o}'}"
            + (f" acl={','.join(acl)}" if acl else " acl=-"))


def transcript_lines(out: Outcome) -> list[str]:
    """The run's timeline (:mod:`wraplab.timeline`), one line per step."""
    return timeline.lines(out.steps)


def render_outcome(out: Outcome) -> str:
    """The whole story of one run as plain text."""
    c = out.cell
    head = (f"{c.name}  (scenario {c.scenario}, target {c.target}, socket {c.socket}, "
            f"placement {c.placement}, transport {c.transport}, lab {c.lab}/{c.base})")
    if out.verdict is NOT_RUN:
        return f"{head}\nnot run: {out.reason}"
    lines = [head, "timeline (at the end of each step; +s from the run's first start):"]
    lines += transcript_lines(out) or ["  (no steps)"]
    if out.files:
        lines.append("files:")
        lines += [f"  {_fmt_facts(f)}" for f in out.files]
    if out.metrics:
        lines.append("metrics: " + json.dumps(out.metrics, sort_keys=True))
    if out.server:
        srv = out.server
        lines.append("server: " + ", ".join(
            f"{k}={srv[k]}" for k in ("pid", "uid", "caps", "fds", "threads") if k in srv))
    warn = [r for r in out.log if str(r.get("level")).lower() in ("warn", "warning", "error")]
    if warn:
        lines.append(f"server log (warnings, {len(warn)}):")
        for r in warn[:4]:
            rest = {k: v for k, v in r.items() if k not in ("ts", "level", "msg")}
            lines.append(f"  {r.get('level')}: {r.get('msg')} {json.dumps(rest, default=str)}")
        if len(warn) > 4:
            lines.append(f"  ... {len(warn) - 4} more")
    lines.append("timings: " + ", ".join(f"{k}={v}" for k, v in out.timings.items()))
    verdict = f"verdict: {out.verdict}" + (f" (guard: {out.guard})" if out.guard else "")
    verdict += f" - expected {c.expectation}: " + ("OK" if out.ok else "MISMATCH")
    if c.expect_reason:
        verdict += f" (the target file expects it: {c.expect_reason})"
    lines += [verdict, f"why: {out.reason}"]
    if out.error:
        lines.append("traceback:\n" + out.error)
    return "\n".join(lines)


def print_outcome(out: Outcome, stream=None) -> None:
    stream = stream or sys.stdout
    if not use_rich(stream) or out.verdict is NOT_RUN:
        stream.write(render_outcome(out) + "\n")
        return
    from rich.console import Console
    from rich.markup import escape as esc
    from rich.panel import Panel

    con = Console(file=stream)
    c = out.cell
    con.print(timeline.rich_table(out.steps, f"{c.name}  ({c.lab}/{c.base}, placement "
                                             f"{c.placement}, transport {c.transport})"))
    for f in out.files:
        con.print("  " + _fmt_facts(f), highlight=False)
    if out.metrics:
        con.print("  metrics: " + json.dumps(out.metrics, sort_keys=True), highlight=False)
    con.print("  timings: " + ", ".join(f"{k}={v}" for k, v in out.timings.items()))
    style = STYLE[str(out.verdict)]
    body = (f"[{style}]{out.verdict}[/]" + (f" (guard: {out.guard})" if out.guard else "")
            + f" - expected {c.expectation}: " + ("[green]OK[/]" if out.ok else "[red]MISMATCH[/]")
            + f"\n{esc(out.reason)}")
    con.print(Panel(body, title="verdict"))
    if out.error:
        con.print(out.error, markup=False)


# --------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------


def _columns(outcomes: Sequence[Outcome]) -> list[str]:
    """The profiles in their order, then other targets in the order met."""
    present = {o.cell.profile for o in outcomes}
    others = [p for p in dict.fromkeys(o.cell.profile for o in outcomes) if p not in PROFILES]
    return [p for p in PROFILES if p in present] + others


def _lab_label(o: Outcome) -> str:
    return f"{o.cell.lab}/{o.cell.base}" if o.cell.lab == "docker" else o.cell.lab


def by_lab(outcomes: Sequence[Outcome]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(_lab_label(o), []).append(o)
    return groups


def _rows(outcomes: Sequence[Outcome]) -> dict[str, dict[str, list[Outcome]]]:
    rows: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        c = o.cell
        key = c.scenario
        extra = [x for x, multi, dflt in ((c.placement, c.multi_placement, "root"),
                                          (c.transport, c.multi_transport, "unix"))
                 if multi or x != dflt]
        if extra:
            key += " (" + ", ".join(extra) + ")"
        rows[key][c.profile].append(o)
    return rows


def _mark(o: Outcome) -> str:
    text = MARK[str(o.verdict)]
    if o.verdict.value == "defended" and o.guard == "peer-check":
        text += " (peer check)"
    return text


def _cell_text(group: list[Outcome]) -> tuple[str, bool]:
    """One matrix cell: the verdict shared by every socket kind, or per kind
    (``n:`` notify, ``s:`` signal, ``p:`` ptrace). "(peer check)": defended only because
    the server rejected the attacker (the kernel let her reach the socket)."""
    ok = all(o.ok or o.verdict is NOT_RUN for o in group)
    marks = {_mark(o) for o in group}
    if len(marks) == 1:
        text = marks.pop()
    else:
        text = " ".join(f"{o.cell.socket[0]}:{_mark(o)}" for o in group)
    if not ok:
        exp = {str(o.cell.expectation) for o in group if not o.ok and o.verdict is not NOT_RUN}
        text += " ≠ " + "/".join(sorted(exp))
    return text, ok


def summary_counts(outcomes: Sequence[Outcome]) -> dict:
    """``cells`` counts the cells that ran; ``not_run`` those the target could not run
    (neither a pass nor a failure)."""
    skipped = sum(o.verdict is NOT_RUN for o in outcomes)
    n = len(outcomes) - skipped
    ok = sum(o.ok for o in outcomes)
    errors = sum(o.verdict is ERROR for o in outcomes)
    return {"cells": n, "ok": ok, "mismatches": n - ok - errors, "errors": errors,
            "not_run": skipped}


def render_matrix(outcomes: Sequence[Outcome], wall: float | None = None) -> str:
    labs = by_lab(outcomes)
    parts = []
    for label, group in labs.items():
        if len(labs) > 1:
            parts.append(f"lab {label}:")
        parts.append(_render_one(group))
    parts.append(_summary_line(outcomes, wall))
    return "\n".join(parts)


def _render_one(outcomes: Sequence[Outcome]) -> str:
    cols = _columns(outcomes)
    rows = _rows(outcomes)
    table = [["scenario", *cols]]
    for key, per in rows.items():
        table.append([key, *[_cell_text(per[p])[0] if per.get(p) else "-" for p in cols]])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for j, r in enumerate(table):
        lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numbers(value) -> list[float]:
    """A metric that is a number or a list of numbers (one per handoff), as a list."""
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value if isinstance(v, (int, float))]
    return [float(value)] if isinstance(value, (int, float)) else []


def _summary_line(outcomes: Sequence[Outcome], wall: float | None) -> str:
    s = summary_counts(outcomes)
    labs = list(by_lab(outcomes))
    text = (f"{s['cells']} cells ({', '.join(labs)}): {s['ok']} as expected, "
            f"{s['mismatches']} mismatches, {s['errors']} errors")
    if s["not_run"]:
        text += f"; {s['not_run']} not run (the target lacks what they need)"
    if wall is not None:
        text += f"; wall time {wall:.1f} s"
    rates = [r for o in outcomes for r in _numbers(o.metrics.get("flood_rate")) if r]
    if rates:
        text += f"; flood rate {min(rates):,.0f}-{max(rates):,.0f} connects/s"
    reused = [o.lab_info["container_reused"] for o in outcomes
              if isinstance(o.lab_info.get("container_reused"), bool)]
    if reused:  # a fall in reuse is a fall in speed: say it where it shows
        text += (f"; Docker containers: {reused.count(False)} started, "
                 f"{reused.count(True)} reused")
    return text


def notes_lines(outcomes: Sequence[Outcome]) -> list[str]:
    """The targets' expectation overrides (with their reasons) and why cells were not run,
    each said once."""
    seen: dict[str, None] = {}
    # One line per override: its verdicts (with the sockets of each where they differ), then
    # the reason -- not one line per verdict, each with a reason meant for another one.
    overrides: dict[tuple, dict[str, list[str]]] = {}
    for o in outcomes:
        c = o.cell
        if c.expect_reason:
            why = " ".join(c.expect_reason.split())
            per = overrides.setdefault((c.scenario, c.target, why), {})
            kinds = per.setdefault(str(c.expectation), [])
            if c.socket not in kinds:
                kinds.append(c.socket)
    for (scenario, target, reason), per in overrides.items():
        said = (next(iter(per)) if len(per) == 1 else
                ", ".join(f"{e} ({'/'.join(k)})" for e, k in per.items()))
        seen[f"  expected: {scenario} against {target}: {said} ({reason})"] = None
    for o in outcomes:
        if o.verdict is NOT_RUN:
            seen[f"  not run: {o.cell.scenario} against {o.cell.target}: {o.reason}"] = None
    return list(seen)


def print_matrix(outcomes: Sequence[Outcome], wall: float | None = None, stream=None) -> None:
    stream = stream or sys.stdout
    if not use_rich(stream):
        stream.write(render_matrix(outcomes, wall) + "\n")
        for line in notes_lines(outcomes):
            stream.write(line + "\n")
        bad = [o for o in outcomes if not o.ok and o.verdict is not NOT_RUN]
        for o in bad:
            stream.write(f"  MISMATCH {o.cell.name}: {o.verdict} (expected {o.cell.expectation})"
                         f" - {o.reason}\n")
        return
    from rich.console import Console
    from rich.markup import escape as esc

    con = Console(file=stream)
    for label, group in by_lab(outcomes).items():
        con.print(_rich_table(group, f"wraplab verdicts, lab {label} (scenario x profile)"))
    con.print(_summary_line(outcomes, wall), highlight=False)
    for line in notes_lines(outcomes):
        con.print(esc(line), highlight=False)
    for o in outcomes:
        if not o.ok and o.verdict is not NOT_RUN:
            con.print(f"  [red]MISMATCH[/] {esc(o.cell.name)}: {o.verdict}"
                      f"{f' ({o.guard})' if o.guard else ''} (expected "
                      f"{o.cell.expectation}) - {esc(o.reason)}", highlight=False)


def _rich_table(outcomes: Sequence[Outcome], title: str):
    from rich.table import Table

    cols = _columns(outcomes)
    t = Table(title=title)
    t.add_column("scenario")
    for p in cols:
        t.add_column(p)
    for key, per in _rows(outcomes).items():
        cells = []
        for p in cols:
            group = per.get(p)
            if not group:
                cells.append("-")
                continue
            text, ok = _cell_text(group)
            style = STYLE[str(group[0].verdict)] if len({o.verdict for o in group}) == 1 else ""
            cells.append(f"[{style}]{text}[/]" if ok and style else
                         (text if ok else f"[reverse red]{text}[/]"))
        t.add_row(key, *cells)
    return t


def to_markdown(outcomes: Sequence[Outcome], wall: float | None = None,
                title: str = "wraplab verdicts", labs_record: dict | None = None) -> str:
    lines = [f"### {title}", ""]
    if labs_record and labs_record.get("notes"):
        lines += [f"> {note}" for note in labs_record["notes"]] + [""]
    labs = by_lab(outcomes)
    for label, group in labs.items():
        if len(labs) > 1:
            lines += [f"**lab {label}**", ""]
        lines += _markdown_table(group) + [""]
    lines += [_summary_line(outcomes, wall) + ".", "",
              "Cells: one verdict for every socket kind, or per kind (n: notify, s: signal, "
              "p: ptrace); *(peer check)*: defended only by the server's SO_PEERCRED check.",
              ""]
    bad = [o for o in outcomes if not o.ok]
    if bad:
        lines.append("<details><summary>mismatches and errors</summary>\n")
        for o in bad:
            lines.append(f"- `{o.cell.name}`: **{o.verdict}** (expected {o.cell.expectation}) "
                         f"– {o.reason}")
        lines.append("\n</details>\n")
    return "\n".join(lines)


def _markdown_table(outcomes: Sequence[Outcome]) -> list[str]:
    cols = _columns(outcomes)
    lines = ["| scenario | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for key, per in _rows(outcomes).items():
        cells = []
        for p in cols:
            group = per.get(p)
            if not group:
                cells.append("–")
                continue
            text, ok = _cell_text(group)
            cells.append(text if ok else f"**{text}** :x:")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def to_json(outcomes: Sequence[Outcome], wall: float | None = None,
            labs: dict | None = None) -> dict:
    """The JSON report (schema: :data:`SCHEMA_VERSION`, docs/reports.md)."""
    from wraplab import __version__

    ran = sorted({o.cell.lab for o in outcomes})
    return {"schema_version": SCHEMA_VERSION, "wraplab_version": __version__,
            "generated": time.time(), "host": platform.node(), "wall_s": wall,
            "labs": labs or {"requested": ran, "ran": ran, "notes": []},
            "summary": summary_counts(outcomes),
            "outcomes": [o.to_dict() for o in outcomes]}


def git_commit() -> str | None:
    """The commit of this wraplab checkout (``-dirty`` with local changes); None outside
    a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty",
                              "--abbrev=40", "--exclude=*"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_json(outcomes: Sequence[Outcome], *, wall: float | None, labs: dict | None,
             argv: Sequence[str], repeat: int = 1) -> dict:
    """What ``wraplab run --json`` writes: the JSON report (schema v1, every outcome with
    its processes and lab) plus the command, the commit, and per cell the ``--repeat``
    summary (verdicts, the rate as expected, a race's pooled win rate)."""
    data = to_json(outcomes, wall, labs)
    cells: dict[str, list[Outcome]] = {}
    for o in outcomes:
        cells.setdefault(o.cell.name, []).append(o)
    data.update(command="run", argv=list(argv), wraplab_commit=git_commit(), repeat=repeat,
                repeats=[stats.repeat_summary(g) for g in cells.values()] if repeat > 1
                else [])
    return data


def render_run(outcomes: Sequence[Outcome], repeat: int = 1) -> str:
    """What ``wraplab run`` prints (and ``wraplab show`` again): each cell's whole story;
    with ``repeat`` > 1, per cell one line per run and the distribution instead."""
    if repeat <= 1:
        return "\n\n".join(render_outcome(o) for o in outcomes)
    cells: dict[str, list[Outcome]] = {}
    for o in outcomes:
        cells.setdefault(o.cell.name, []).append(o)
    return "\n\n".join(render_repeats(group) for group in cells.values())


def repeat_line(i: int, o: Outcome) -> str:
    m = o.metrics or {}
    race = f"  wins {m['wins']}/{m['tries']}" if isinstance(m.get("tries"), int) else ""
    guard = f" (guard: {o.guard})" if o.guard else ""
    return (f"  run {i:>3}: {str(o.verdict):<10}{guard}{race}  "
            f"{o.timings.get('total_s', 0) or 0:.1f} s  {'OK' if o.ok else 'MISMATCH'}")


def print_run(outcomes: Sequence[Outcome], repeat: int = 1, stream=None, *,
               plain: bool = False) -> None:
    """:func:`render_run` on stdout; on a terminal each cell's compact timeline instead."""
    stream = stream or sys.stdout
    if plain or repeat > 1 or not use_rich(stream):
        stream.write(render_run(outcomes, repeat) + "\n")
        stream.flush()
        return
    for i, o in enumerate(outcomes):
        if i:
            stream.write("\n")
        print_outcome(o, stream)


def write_json(path: str | Path, data: dict) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1, default=str))


def render_repeats(group: Sequence[Outcome]) -> str:
    """One cell run several times: a line per run, the verdicts, the rates."""
    c = group[0].cell
    lines = [f"{c.name}  (scenario {c.scenario}, profile {c.profile}, socket {c.socket}, "
             f"placement {c.placement}, transport {c.transport}, lab {c.lab}/{c.base}), "
             f"{len(group)} runs:"]
    lines += [repeat_line(i, o) for i, o in enumerate(group, 1)]
    counts = stats.verdicts(group)
    lines.append("verdicts: " + ", ".join(f"{v} {n}" for v, n in sorted(counts.items())))
    ok = stats.wilson(sum(o.ok for o in group), len(group))
    lines.append(f"as expected ({c.expectation}): {ok.text('runs')}")
    race = stats.race_rate(group)
    if race is not None:
        lines.append(f"race won: {race.text('tries')}")
    bad = [o for o in group if not o.ok]
    if bad:
        lines.append(f"first mismatch (run {list(group).index(bad[0]) + 1}): {bad[0].verdict}"
                     f" - {bad[0].reason}")
    return "\n".join(lines)


# XML 1.0 cannot carry most C0 controls (\x00 included, even escaped), lone surrogates,
# U+FFFE and U+FFFF: they are written as visible \xNN / \uNNNN escapes instead.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """``value`` as text XML 1.0 can carry: characters it cannot are written as escapes
    (``\x1b`` for ESC, ``\x00`` for NUL), so a transcript stays readable and parses."""
    def esc(m: re.Match) -> str:
        c = ord(m.group())
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _NOT_XML.sub(esc, str(value))


def _cell_properties(o: Outcome) -> list[tuple[str, str]]:
    c = o.cell
    return [("verdict", str(o.verdict)), ("expected", str(c.expected)),
            ("expected_guard", c.expected_guard or ""),
            ("guard", o.guard or ""), ("ok", "true" if o.ok else "false"),
            ("scenario", c.scenario), ("target", c.target), ("profile", c.profile),
            ("socket", c.socket), ("placement", c.placement), ("transport", c.transport),
            ("lab", c.lab), ("base", c.base), ("reason", o.reason),
            *([("expect_reason", c.expect_reason)] if c.expect_reason else [])]


def _sub(parent: ET.Element, tag: str, **attrs: object) -> ET.Element:
    return ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items()})


def to_junit(outcomes: Sequence[Outcome], name: str = "wraplab") -> bytes:
    """JUnit XML: ``<testsuites>`` (totals) > one ``<testsuite>`` per scenario and lab
    (totals, verdict counts as properties) > one ``<testcase>`` per cell with the cell's
    verdict, expectation and guard as properties (passing cells too); a mismatch is a
    ``<failure>``, an ``error`` verdict an ``<error>``, each with the run's transcript.
    Every text is made XML-safe (:func:`xml_text`). Schema: ``schemas/junit.xsd``."""
    counts = summary_counts(outcomes)
    total_time = sum(o.timings.get("total_s", 0) or 0 for o in outcomes)
    suites = ET.Element("testsuites", name=xml_text(name),
                        tests=str(counts["cells"] + counts["not_run"]),
                        failures=str(counts["mismatches"]), errors=str(counts["errors"]),
                        skipped=str(counts["not_run"]), time=f"{total_time:.3f}")
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.cell.scenario, _lab_label(o))].append(o)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for (scen, lab), group in groups.items():
        c = summary_counts(group)
        suite = _sub(suites, "testsuite", name=f"{scen} ({lab})",
                     tests=c["cells"] + c["not_run"],
                     failures=c["mismatches"], errors=c["errors"], skipped=c["not_run"],
                     time=f"{sum(o.timings.get('total_s', 0) or 0 for o in group):.3f}",
                     timestamp=stamp, hostname=platform.node() or "localhost")
        props = _sub(suite, "properties")
        verdicts: dict[str, int] = defaultdict(int)
        for o in group:
            verdicts[str(o.verdict)] += 1
        for verdict, n in sorted(verdicts.items()):
            _sub(props, "property", name=f"verdicts.{verdict}", value=n)
        for o in group:
            case = _sub(suite, "testcase", classname=f"wraplab.{scen}.{o.cell.lab}",
                        name=o.cell.name, time=f"{o.timings.get('total_s', 0) or 0:.3f}")
            cprops = _sub(case, "properties")
            for key, value in _cell_properties(o):
                _sub(cprops, "property", name=key, value=value)
            if o.verdict is NOT_RUN:
                _sub(case, "skipped", message=f"not run: {o.reason}"[:1000])
                continue
            if o.ok:
                continue
            tag = "error" if o.verdict is ERROR else "failure"
            el = _sub(case, tag, message=f"{o.verdict} (expected {o.cell.expectation}): "
                      f"{o.reason}"[:1000], type=f"wraplab.{tag}")
            el.text = xml_text(render_outcome(o))
    ET.indent(suites)
    return ET.tostring(suites, encoding="utf-8", xml_declaration=True)


def write_reports(outcomes: Sequence[Outcome], *, wall: float | None = None,
                  json_path: str | None = None, junit_path: str | None = None,
                  markdown_path: str | None = None, title: str = "wraplab verdicts",
                  labs: dict | None = None) -> None:
    for path, data in ((json_path, lambda: json.dumps(to_json(outcomes, wall, labs), indent=1,
                                                      default=str).encode()),
                       (junit_path, lambda: to_junit(outcomes)),
                       (markdown_path, lambda: to_markdown(outcomes, wall, title, labs).encode())):
        if path:
            p = Path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data())


@dataclass
class Merged:
    """Several JSON reports read back as one: every outcome, and the labs record."""

    outcomes: list[Outcome] = field(default_factory=list)
    labs: dict = field(default_factory=lambda: {"requested": [], "ran": [], "notes": []})


def read_report(path: str | Path) -> dict:
    """A JSON report read and checked for what :func:`outcomes_from_json` needs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not a readable JSON report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("outcomes"), list):
        raise ReportError(f"{path}: not a wraplab report (no outcomes list)")
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReportError(f"{path}: report schema version {version!r} is newer than this "
                          f"wraplab reads ({SCHEMA_VERSION})")
    return data


def merge_reports(paths: Iterable[str | Path]) -> Merged:
    merged = Merged()
    paths = list(paths)
    if not paths:
        raise ReportError("no report files given (or none under the directories given)")
    for path in paths:
        data = read_report(path)
        try:
            merged.outcomes += outcomes_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportError(f"{path}: an outcome cannot be read ({exc!r})") from None
        labs = data.get("labs") or {}
        for key in ("requested", "ran", "notes"):
            for item in labs.get(key, []):
                if item not in merged.labs[key]:
                    merged.labs[key].append(item)
    return merged


def list_lines(scenarios: Iterable) -> list[str]:
    out = []
    for s in scenarios:
        where = "/".join(s.placements) + " " + "/".join(s.transports)
        out.append(f"{s.slug:<22} {s.title}  [{'/'.join(s.sockets)}; {where}]")
        for lab, why in sorted(s.lab_notes.items()):
            out.append(f"{'':<22}   not in the {lab} lab: {why}")
    return out


def outcomes_from_json(data: dict) -> list[Outcome]:
    """Outcomes back from :func:`to_json` output (to re-render or merge reports)."""
    from wraplab.engine import Cell, Expected, Verdict, get_scenario

    out = []
    multi: dict[str, tuple[bool, bool]] = {}
    for o in data.get("outcomes", []):
        c = o["cell"]
        if c["scenario"] not in multi:
            try:
                s = get_scenario(c["scenario"])
                multi[c["scenario"]] = (len(s.placements) > 1, len(s.transports) > 1)
            except Exception:
                multi[c["scenario"]] = (False, False)
        mp, mt = multi[c["scenario"]]
        cell = Cell(c["scenario"], c["profile"], c["socket"], c["placement"], c["transport"],
                    c["lab"], c["base"], Verdict(c["expected"]),
                    expected_guard=c.get("expected_guard"), multi_placement=mp,
                    multi_transport=mt, target=c.get("target") or "",
                    expect_reason=c.get("expect_reason"), not_run=c.get("not_run"),
                    expected_race=Expected.from_dict(c.get("expected_race")))
        out.append(Outcome(
            cell=cell, verdict=Verdict(o["verdict"]), reason=o.get("reason", ""),
            guard=o.get("guard"), steps=[Step.from_dict(s) for s in o.get("steps", [])],
            files=o.get("files", []), events=o.get("events", []), log=o.get("log", []),
            metrics=o.get("metrics", {}), timings=o.get("timings", {}),
            server=o.get("server", {}), error=o.get("error"),
            processes=o.get("processes", []), lab_info=o.get("lab_info", {})))
    return out
