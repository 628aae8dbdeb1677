"""``wraplab run --json`` keeps the whole outcome, ``wraplab show`` prints it again as the run
did, ``--repeat`` gives the verdict distribution and a race's rate with its Wilson interval,
and the timeline places each step where its result was known."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness_support import REPO, make_outcome, requires_root
from wraplab import report, stats, timeline
from wraplab.engine import Step


def wraplab(*args: str, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "wraplab.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})


# ---------------------------------------------------------------- the Wilson interval


@pytest.mark.parametrize("hits,n,low,high", [
    (5, 10, 0.2366, 0.7634),     # symmetric around one half
    (0, 10, 0.0, 0.2775),        # no hit: the upper bound stays well above 0
    (10, 10, 0.7225, 1.0),
    (81, 3000, 0.02178, 0.03350),  # a symlink-race cell's size
])
def test_wilson_interval_matches_the_textbook_values(hits, n, low, high):
    r = stats.wilson(hits, n)
    assert r.low == pytest.approx(low, abs=5e-4) and r.high == pytest.approx(high, abs=5e-4)
    assert r.low <= hits / n <= r.high


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError):
        stats.wilson(3, 2)
    assert stats.wilson(0, 0).n == 0


def test_repeats_report_the_distribution_and_the_pooled_race_rate():
    runs = []
    for wins, verdict in ((2, "vulnerable"), (0, "defended"), (5, "vulnerable")):
        o = make_outcome(verdict, "vulnerable", scenario="symlink-race", guard=None)
        o.metrics.update(tries=1000, wins=wins)
        runs.append(o)
    text = report.render_run(runs, repeat=3)
    assert "verdicts: defended 1, vulnerable 2" in text
    assert "as expected (vulnerable): 2/3 runs" in text
    rate = stats.wilson(7, 3000)
    assert f"race won: 7/3000 tries = 0.23 % (95 % Wilson interval {100 * rate.low:.2f} %-" \
        f"{100 * rate.high:.2f} %)" in text
    assert "first mismatch (run 2): defended" in text
    summary = stats.repeat_summary(runs)
    assert summary["race"]["hits"] == 7 and summary["race"]["n"] == 3000


# ---------------------------------------------------------------- the timeline


def test_the_timeline_places_a_step_at_its_end_and_says_when_it_started():
    """The owner's client ran 1.5 s and failed: its line comes after the server event that
    happened meanwhile, at +1.500, and says it started at +0.000."""
    owner = Step(t=100.0, actor="owner", user="alice", uid=1001, action="wraps",
                 result="failed: EAGAIN", ms=3.0, end=101.5)
    event = Step(t=100.7, actor="server", user="server", uid=0, action="event peer_rejected")
    attack = Step(t=100.2, actor="intruder", user="mallory", uid=1003, action="connects",
                  result="EACCES", ms=100.0)
    lines = timeline.lines([owner, event, attack])
    assert [line.split()[0] for line in lines] == ["+0.300s", "+0.700s", "+1.500s"]
    assert "connects -> EACCES [100.0 ms]  (took 0.100 s from +0.200)" in lines[0]
    assert "took" not in lines[1]  # an instant
    assert lines[2].endswith("(took 1.500 s from +0.000)")


def test_old_reports_without_step_ends_still_read():
    s = Step.from_dict({"t": 5.0, "actor": "owner", "user": "alice", "uid": 1, "action": "x",
                        "result": "", "errno": None, "ms": 250.0, "detail": {},
                        "a_key_of_a_later_version": 1})
    assert s.end is None and s.until == pytest.approx(5.25)


# ---------------------------------------------------------------- the command line


def test_run_refuses_bad_repeat_and_keep_combinations():
    for argv, words in ((["--repeat", "0"], "--repeat needs a number >= 1"),
                        (["--keep", "--repeat", "2"], "it takes no --repeat")):
        out = wraplab("run", "wrong-uid", "--lab", "local", *argv)
        assert out.returncode == 2 and words in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_show_refuses_what_is_not_an_outcome(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    out = wraplab("show", str(bad))
    assert out.returncode == 2 and "not a wraplab report" in out.stderr
    out = wraplab("show", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "not a readable JSON report" in out.stderr


def test_run_json_keeps_the_whole_outcome_and_show_prints_the_same_text(tmp_path,
                                                                      check_report):
    requires_root("the local lab makes real users by uid")
    j = tmp_path / "run.json"
    run = wraplab("run", "wrong-uid", "--lab", "local", "--profile", "hardened", "--json",
                  str(j))
    assert run.returncode == 0, run.stdout + run.stderr
    data = check_report(j)
    assert data["command"] == "run" and data["repeat"] == 1
    assert data["argv"][:2] == ["run", "wrong-uid"]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    assert data["wraplab_commit"].startswith(commit)
    (o,) = data["outcomes"]
    wrap = next(s for s in o["steps"] if s["actor"] == "owner" and s["action"].startswith("wraps"))
    assert wrap["end"] > wrap["t"] and all("end" in s for s in o["steps"]) and o["events"]
    owner = [p for p in o["processes"] if p["actor"] == "owner" and "wrap" in p["argv"]]
    assert owner and owner[0]["uid"] == wrap["uid"] and owner[0]["exit_code"] == 0
    assert owner[0]["argv"][:2] == ["wrapref", "wrap"] and owner[0]["end"] > owner[0]["start"]
    assert any(p["action"] == "server-ready" for p in o["processes"])
    assert o["lab_info"]["lab"] == "local" and o["lab_info"]["kept"] is False
    show = wraplab("show", str(j))
    assert show.returncode == 0, show.stderr
    assert show.stdout == run.stdout
    assert "timeline" in show.stdout and "verdict: defended" in show.stdout


def test_repeat_runs_fresh_labs_and_reports_the_distribution(tmp_path, check_report):
    requires_root("the local lab makes real users by uid")
    j = tmp_path / "rep.json"
    run = wraplab("run", "wrong-uid", "--lab", "local", "--profile", "hardened", "--repeat",
                  "2", "--json", str(j))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "verdicts: defended 2" in run.stdout
    assert "as expected (defended (kernel)): 2/2 runs" in run.stdout
    data = check_report(j)
    assert len(data["outcomes"]) == 2 and data["repeats"][0]["runs"] == 2
    ids = {o["lab_info"]["run_id"] for o in data["outcomes"]}
    assert len(ids) == 2  # a fresh lab each time
    assert wraplab("show", str(j)).stdout == run.stdout
    # plain progress, one line per run, on stderr (not a terminal)
    assert run.stderr.count("wrong-uid[hardened-notify-local]") == 2
