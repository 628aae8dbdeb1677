"""A static HTML report of a matrix (``wraplab matrix --html DIR``, ``wraplab report --html
DIR``): one page with the verdict table, each cell linking to its own transcript page, the
win rate of every race per profile with its 95 % Wilson interval, and the owner's handoff
latency under a reconnect flood per profile (a box plot, beside the owner's handoffs without
a flood in the same report), the plots as PNG made with matplotlib. No script, no remote
resource: the directory opens from disk or any static file server.

    DIR/index.html             the verdict table, the race rates, the flood latencies
    DIR/cells/<cell>.html      one transcript per cell (the text of ``wraplab show``)
    DIR/race-rates.png         win rate per profile with its interval (when a race ran)
    DIR/flood-latency.png      owner handoff latency, no flood vs reconnect flood
"""

from __future__ import annotations

import html
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from wraplab import report, stats
from wraplab.engine import Outcome
from wraplab.targets import PROFILES

#: The scenario whose owner latencies the flood plot shows.
FLOOD_SCENARIO = "reconnect-flood"

CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
a { text-decoration: none; }
.defended { color: #1a7f37; } .vulnerable { color: #cf222e; font-weight: bold; }
.broken { color: #9a6700; } .error { color: #8250df; font-weight: bold; }
.mismatch { background: #ffebe9; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def cell_file(o: Outcome, n: int = 1) -> str:
    """The transcript page of a cell, relative to the report directory (``n``: the n-th
    outcome of the same cell in the report, e.g. merged repeats)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", o.cell.name).strip("_")
    return f"cells/{safe}{'' if n == 1 else f'-{n}'}.html"


def cell_files(outcomes: Sequence[Outcome]) -> dict[int, str]:
    """Every outcome's page (by ``id``), numbered where a cell appears more than once."""
    seen: dict[str, int] = defaultdict(int)
    files = {}
    for o in outcomes:
        seen[o.cell.name] += 1
        files[id(o)] = cell_file(o, seen[o.cell.name])
    return files


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


# ---------------------------------------------------------------- the verdict table


def _verdict_links(group: list[Outcome], files: dict[int, str]) -> str:
    parts = []
    for o in group:
        label = report.MARK[str(o.verdict)]
        if len(group) > 1:
            label = f"{o.cell.socket[0]}: {label}"
        if not o.ok:
            label += f" ≠ {o.cell.expectation}"
        parts.append(f'<a class="{o.verdict}" href="{files[id(o)]}" '
                     f'title="{html.escape(o.reason)}">{html.escape(label)}</a>')
    return "<br>".join(parts)


def verdict_tables(outcomes: Sequence[Outcome], files: dict[int, str]) -> str:
    out = []
    for label, group in report.by_lab(outcomes).items():
        cols = [p for p in PROFILES if p in {o.cell.profile for o in group}]
        rows = report._rows(group)
        out.append(f"<h2>Verdicts, lab {html.escape(label)}</h2>\n<table>\n<tr><th>scenario</th>"
                   + "".join(f"<th>{html.escape(p)}</th>" for p in cols) + "</tr>")
        for key, per in rows.items():
            cells = []
            for p in cols:
                g = per.get(p) or []
                cls = ' class="mismatch"' if any(not o.ok for o in g) else ""
                cells.append(f"<td{cls}>{_verdict_links(g, files) if g else '–'}</td>")
            out.append(f"<tr><td>{html.escape(key)}</td>{''.join(cells)}</tr>")
        out.append("</table>")
    return "\n".join(out)


# ---------------------------------------------------------------- races


def race_rates(outcomes: Sequence[Outcome]) -> dict[str, dict[str, stats.Rate]]:
    """Per race scenario (outcomes whose metrics have ``tries`` and ``wins``), per profile:
    the win rate pooled over its cells (socket kinds, labs, repeats)."""
    groups: dict[str, dict[str, list[Outcome]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        if isinstance((o.metrics or {}).get("tries"), int):
            groups[o.cell.scenario][o.cell.profile].append(o)
    return {s: {p: stats.race_rate(per[p]) for p in PROFILES if p in per}
            for s, per in groups.items()}


def plot_race_rates(rates: dict[str, dict[str, stats.Rate]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rates), figsize=(4.5 * len(rates) + 1, 3.4), squeeze=False)
    for ax, (scenario, per) in zip(axes[0], rates.items()):
        names = list(per)
        values = [100 * (per[p].value or 0) for p in names]
        low = [v - 100 * per[p].low for v, p in zip(values, names)]
        high = [100 * per[p].high - v for v, p in zip(values, names)]
        ax.bar(names, values, color=["#cf222e" if per[p].hits else "#1a7f37" for p in names])
        ax.errorbar(names, values, yerr=[low, high], fmt="none", ecolor="black", capsize=4)
        ax.set_title(f"{scenario}: tries won (95 % Wilson)")
        ax.set_ylabel("% of tries")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def race_section(outcomes: Sequence[Outcome], outdir: Path) -> str:
    rates = race_rates(outcomes)
    if not rates:
        return "<h2>Races</h2>\n<p>No race (symlink-race) ran in this report.</p>"
    plot_race_rates(rates, outdir / "race-rates.png")
    rows = []
    for scenario, per in rates.items():
        for p, r in per.items():
            rows.append(f"<tr><td>{html.escape(scenario)}</td><td>{html.escape(p)}</td>"
                        f"<td>{r.hits}</td><td>{r.n}</td><td>{html.escape(r.text())}</td></tr>")
    return ("<h2>Races: tries won per profile</h2>\n<p>Pooled over every cell of the profile "
            "(socket kinds, labs); the interval is the 95 % Wilson score interval.</p>\n"
            "<table><tr><th>scenario</th><th>profile</th><th>won</th><th>tries</th>"
            "<th>rate</th></tr>\n" + "\n".join(rows) + "</table>\n"
            '<img src="race-rates.png" alt="race win rate per profile with its interval">')


# ---------------------------------------------------------------- flood latency


def _owner_latencies(o: Outcome) -> list[float]:
    """The owner's handoff latencies (ms, first dial to the end) in one outcome's steps."""
    out = []
    for s in o.steps:
        client = (s.detail or {}).get("client") if s.actor == "owner" else None
        if isinstance(client, dict) and client.get("ok") and client.get("t_dial") and \
                client.get("t_end"):
            out.append((float(client["t_end"]) - float(client["t_dial"])) * 1000)
    return out


def flood_latencies(outcomes: Sequence[Outcome]) -> dict[str, dict[str, list[float]]]:
    """Per profile: ``flood`` (the owner's handoffs under the reconnect flood, the scenario's
    ``owner_handoff_ms``) and ``no flood`` (the owner's successful handoffs of the scenarios
    without a flooder in the same report)."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"no flood": [], "flood": []})
    for o in outcomes:
        if o.cell.scenario == FLOOD_SCENARIO:
            per[o.cell.profile]["flood"] += report._numbers(o.metrics.get("owner_handoff_ms"))
        elif "flood" not in o.cell.scenario:
            per[o.cell.profile]["no flood"] += _owner_latencies(o)
    return {p: per[p] for p in PROFILES if p in per and per[p]["flood"]}


def plot_flood_latencies(data: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.9 * len(data) + 1), 3.8))
    series, labels, colours = [], [], []
    for p, d in data.items():
        for what, colour in (("no flood", "#8c959f"), ("flood", "#cf222e")):
            if d[what]:
                series.append(d[what])
                labels.append(f"{p}\n{what}")
                colours.append(colour)
    box = ax.boxplot(series, patch_artist=True, showfliers=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    for patch, colour in zip(box["boxes"], colours):
        patch.set_facecolor(colour)
        patch.set_alpha(0.5)
    ax.set_yscale("log")
    ax.set_ylabel("owner handoff latency, ms (log)")
    ax.set_title("owner's handoff: no flood vs reconnect flood")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def flood_section(outcomes: Sequence[Outcome], outdir: Path) -> str:
    data = flood_latencies(outcomes)
    if not data:
        return (f"<h2>Flood</h2>\n<p>No owner handoff under {FLOOD_SCENARIO} in this report.</p>")
    plot_flood_latencies(data, outdir / "flood-latency.png")
    rows = []
    for p, d in data.items():
        for what in ("no flood", "flood"):
            xs = sorted(d[what])
            if xs:
                med = statistics.median(xs)
                rows.append(f"<tr><td>{html.escape(p)}</td><td>{what}</td><td>{len(xs)}</td>"
                            f"<td>{med:.1f}</td><td>{xs[-1]:.1f}</td></tr>")
    return (f"<h2>Owner handoff latency under {FLOOD_SCENARIO}</h2>\n<p>From the owner's "
            "first dial to the end of its handoffs; only handoffs that completed. 'no flood': "
            "the owner's handoffs in this report's scenarios without a flooder.</p>\n"
            "<table><tr><th>profile</th><th></th><th>handoffs</th><th>median ms</th>"
            "<th>max ms</th></tr>\n" + "\n".join(rows) + "</table>\n"
            '<img src="flood-latency.png" alt="owner handoff latency, no flood vs flood">')


# ---------------------------------------------------------------- the report


def write_html(outcomes: Sequence[Outcome], outdir: str | Path, *,
               title: str = "wraplab verdicts", wall: float | None = None,
               labs: dict | None = None) -> Path:
    """Write the report into ``outdir`` (made if missing); the path of its index.html."""
    outdir = Path(outdir)
    (outdir / "cells").mkdir(parents=True, exist_ok=True)
    files = cell_files(outcomes)
    for o in outcomes:
        body = (f'<p><a href="../index.html">← {html.escape(title)}</a></p>\n'
                f"<h1>{html.escape(o.cell.name)}</h1>\n"
                f'<p class="{o.verdict}">{html.escape(str(o.verdict))} – expected '
                f"{html.escape(str(o.cell.expectation))}: {'OK' if o.ok else 'MISMATCH'}</p>\n"
                f"<pre>{html.escape(report.render_outcome(o))}</pre>")
        (outdir / files[id(o)]).write_text(_page(o.cell.name, body), encoding="utf-8")
    notes = "".join(f"<blockquote>{html.escape(n)}</blockquote>"
                    for n in (labs or {}).get("notes", []))
    body = "\n".join([
        f"<h1>{html.escape(title)}</h1>", notes,
        f"<p>{html.escape(report._summary_line(outcomes, wall))}. Each verdict links to its "
        "transcript; per socket kind where they differ (n: notify, s: signal, p: ptrace).</p>",
        verdict_tables(outcomes, files), race_section(outcomes, outdir),
        flood_section(outcomes, outdir)])
    index = outdir / "index.html"
    index.write_text(_page(title, body), encoding="utf-8")
    return index
