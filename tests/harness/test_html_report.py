"""The HTML report opens in a real browser (Debian's headless chromium, driven by
playwright): every link resolves, every plot loads; the race rate and the flood latencies are
the report's own figures."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from harness_support import REPO, in_ci, make_outcome, requires_root
from wraplab import htmlreport, report, stats
from wraplab.engine import Step

CHROMIUM = os.environ.get("WRAPLAB_CHROMIUM", "/usr/bin/chromium")
#: Chromium on a closed network: no background connections, no sandbox as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def requires_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    why = f"no {CHROMIUM} (Debian's chromium package; scripts/host-deps.sh installs it)"
    if in_ci():
        pytest.fail(why + " (CI is set: a missing prerequisite is a failure)", pytrace=False)
    pytest.skip(why)


def sample_outcomes():
    """A report with a race (agentsh wins, hardened does not), a flood (owner latencies) and
    a scenario without a flood whose owner handoffs are the baseline."""
    out = []
    for profile, socket, wins in (("agentsh", "notify", 60), ("agentsh", "ptrace", 90),
                                  ("hardened", "notify", 0)):
        o = make_outcome("vulnerable" if wins else "defended",
                         "vulnerable" if profile == "agentsh" else "defended",
                         scenario="symlink-race", profile=profile, socket=socket, guard=None)
        o.metrics.update(tries=3000, wins=wins)
        out.append(o)
    for profile, ms in (("agentsh", [5.0, 7.5, 400.0]), ("hardened", [3.0, 4.0, 4.5])):
        o = make_outcome(scenario="reconnect-flood", profile=profile)
        o.metrics["owner_handoff_ms"] = ms
        out.append(o)
        base = make_outcome(scenario="wrong-uid", profile=profile)
        base.steps.append(Step(t=2.0, actor="owner", user="alice", uid=1001, action="wraps",
                               result="ok", detail={"client": {"ok": True, "t_dial": 10.0,
                                                               "t_end": 10.002}}))
        out.append(base)
    out.append(make_outcome("vulnerable", "defended", scenario="squat", profile="permissive",
                            reason="<script>alert(1)</script> & more"))
    return out


def test_figures_are_the_reports_own():
    outs = sample_outcomes()
    rates = htmlreport.race_rates(outs)["symlink-race"]
    assert (rates["agentsh"].hits, rates["agentsh"].n) == (150, 6000)
    assert rates["hardened"].hits == 0 and rates["hardened"].high == stats.wilson(0, 3000).high
    lat = htmlreport.flood_latencies(outs)
    assert lat["agentsh"]["flood"] == [5.0, 7.5, 400.0]
    assert lat["hardened"]["no flood"] == [pytest.approx(2.0)]


@pytest.fixture
def served(tmp_path):
    """Serve a directory on loopback: ``served(dir) -> base URL``."""
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def check_in_browser(base: str, shot: Path) -> dict:
    """Open index.html in headless chromium: every link followed (HTTP 200, a page with a
    link back), every image loaded (decoded, non-zero size); a screenshot. What was seen."""
    from playwright.sync_api import sync_playwright

    seen = {"links": [], "images": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            resp = page.goto(base + "index.html")
            assert resp is not None and resp.status == 200
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => "
                                   "[i.getAttribute('src'), i.complete, i.naturalWidth])")
            links = page.evaluate("Array.from(document.links).map(a => a.href)")
            page.screenshot(path=str(shot), full_page=True)
            for src, complete, width in images:
                assert complete and width > 0, f"image {src} did not load"
                seen["images"].append(src)
            for href in links:
                r = page.goto(href)
                assert r is not None and r.status == 200, f"{href}: {r and r.status}"
                back = page.evaluate("Array.from(document.links).map(a => a.href)")
                assert base + "index.html" in back, f"{href} has no link back"
                seen["links"].append(href)
        finally:
            browser.close()
    return seen


def test_the_html_report_opens_with_its_plots_and_every_link_resolves(tmp_path, served):
    requires_chromium()
    outs = sample_outcomes()
    index = htmlreport.write_html(outs, tmp_path / "html", title="sample")
    seen = check_in_browser(served(index.parent), tmp_path / "shot.png")
    assert sorted(seen["images"]) == ["flood-latency.png", "race-rates.png"]
    assert len(seen["links"]) == len(outs)  # each cell links to its own transcript page
    assert (tmp_path / "shot.png").stat().st_size > 10_000
    text = index.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text  # reasons are escaped
    assert "150/6000 = 2.50 %" in text
    page = (index.parent / htmlreport.cell_file(outs[0])).read_text()
    assert "symlink-race[agentsh-notify-docker]" in page and "timeline" in page


def test_repeated_cells_get_a_page_each():
    a, b = make_outcome(), make_outcome("vulnerable")
    files = htmlreport.cell_files([a, b])
    assert files[id(a)] != files[id(b)] and files[id(b)].endswith("-2.html")


def test_a_link_to_a_missing_page_is_caught(tmp_path, served):
    """The browser check can fail: a transcript page removed is a failed link."""
    requires_chromium()
    outs = sample_outcomes()[:2]
    index = htmlreport.write_html(outs, tmp_path / "html")
    (index.parent / htmlreport.cell_file(outs[1])).unlink()
    with pytest.raises(AssertionError, match="404"):
        check_in_browser(served(index.parent), tmp_path / "shot.png")


def test_report_html_from_a_real_matrix_json(tmp_path, served, check_report):
    """A real local cell through ``wraplab matrix --json``, then ``wraplab report --html``."""
    requires_root("the local lab makes real users by uid")
    requires_chromium()
    j = tmp_path / "m.json"
    run = subprocess.run([sys.executable, "-m", "wraplab.cli", "matrix", "--lab", "local",
                          "--scenario", "wrong-uid", "--profile", "hardened", "--socket",
                          "notify", "--json", str(j), "--html", str(tmp_path / "direct")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    check_report(j)
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "report", str(j), "--html",
                          str(tmp_path / "html")], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    seen = check_in_browser(served(tmp_path / "html"), tmp_path / "shot.png")
    assert len(seen["links"]) == 1 and seen["images"] == []  # no race, no flood in it
    for d in ("direct", "html"):
        index = (tmp_path / d / "index.html").read_text()
        assert 'href="cells/wrong-uid_hardened-notify-local.html"' in index
    assert report.read_report(j)["outcomes"][0]["processes"]
    shutil.rmtree(tmp_path / "direct")
