"""Reports that parse everywhere: JUnit read by an independent parser (junitparser) and
checked against a JUnit XSD (xmlschema); the JSON report against its versioned schema."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import junitparser
import pytest
import xmlschema
from harness_support import REPO, make_outcome, requires_root
from wraplab import report
from wraplab.engine import Step

XSD = report.SCHEMAS / "junit.xsd"
NASTY = "red \x1b[31mALERT\x1b[0m nul\x00 bell\x07 \ufffe end"


def nasty_outcomes():
    steps = [Step(t=1.0, actor="intruder", user="mallory", uid=1003, action=f"send {NASTY}",
                  result=f"got {NASTY}", errno="EACCES")]
    return [
        make_outcome("vulnerable", "defended", reason=f"token arrived: {NASTY}", steps=steps,
                     guard=None),
        make_outcome("error", "defended", socket="signal", reason="harness failed",
                     error=f"Traceback ...\n  {NASTY}"),
        make_outcome("defended", "defended", socket="ptrace", guard="peer-check"),
        make_outcome("broken", "broken", profile="pre-235", lab="local", guard=None),
    ]


def test_junit_with_control_characters_parses_with_an_independent_parser():
    xml = report.to_junit(nasty_outcomes())
    doc = junitparser.JUnitXml.fromstring(xml)
    assert (doc.tests, doc.failures, doc.errors) == (4, 1, 1)
    text = xml.decode()
    assert "\x1b" not in text and "\x00" not in text and "\ufffe" not in text
    assert "\\x1b[31mALERT" in text and "nul\\x00" in text and "\\ufffe" in text
    cases = {c.name: c for suite in doc for c in suite}
    failure = cases["wrong-uid[agentsh-notify-docker]"].result[0]
    assert isinstance(failure, junitparser.Failure)
    assert "token arrived: red \\x1b[31mALERT" in failure.message
    assert "send red \\x1b[31mALERT" in failure.text


def test_xml_text_keeps_what_xml_carries_and_escapes_the_rest():
    assert report.xml_text("tab\tnl\ncr\r é ✓ \U0001f600") == "tab\tnl\ncr\r é ✓ \U0001f600"
    assert report.xml_text("a\x00b\x1bc\x7f\ud800") == "a\\x00b\\x1bc\x7f\\ud800"


def test_junit_is_valid_against_the_xsd():
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(report.to_junit(nasty_outcomes()).decode())


def test_the_xsd_rejects_what_it_should():
    """The schema is not a rubber stamp: a suite without counts, or a case without a name,
    is refused."""
    schema = xmlschema.XMLSchema(str(XSD))
    assert not schema.is_valid("<testsuites><testsuite name='x'/></testsuites>")
    assert not schema.is_valid("<testsuites><testsuite name='x' tests='1' failures='0' "
                               "errors='0'><testcase/></testsuite></testsuites>")
    assert not schema.is_valid("<testsuites><testsuite name='x' tests='-1' failures='0' "
                               "errors='0'/></testsuites>")


@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_the_xsd_accepts_pytests_own_junit(tmp_path, family):
    """What pytest writes (a common producer) passes the same schema: it is the common
    format, not one made to fit wraplab's output."""
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def test_ok(record_property):\n    record_property('k', 'v')\n"
        "def test_bad():\n    assert 0\n"
        "@pytest.mark.skip(reason='s')\ndef test_skip():\n    pass\n")
    xml = tmp_path / "out.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={xml}", "-o", f"junit_family={family}", str(tmp_path)],
                   cwd=tmp_path, capture_output=True)
    xmlschema.XMLSchema(str(XSD)).validate(str(xml))


def test_every_cell_carries_verdict_expectation_and_guard_and_the_root_totals():
    outcomes = nasty_outcomes()
    root = ET.fromstring(report.to_junit(outcomes))
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped")} == \
        {"tests": "4", "failures": "1", "errors": "1", "skipped": "0"}
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 4
    by_name = {o.cell.name: o for o in outcomes}
    for case in cases:
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        o = by_name[case.get("name")]
        assert props["verdict"] == str(o.verdict)
        assert props["expected"] == str(o.cell.expected)
        assert props["guard"] == (o.guard or "")
        assert props["ok"] == ("true" if o.ok else "false")
    passing = [c for c in cases if not c.findall("failure") and not c.findall("error")]
    assert len(passing) == 2 and all(c.find("properties") is not None for c in passing)
    # suites are per scenario and lab, with their own totals
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"wrong-uid (docker/bookworm)", "wrong-uid (local)"}
    assert suites["wrong-uid (docker/bookworm)"].get("tests") == "3"


def test_json_report_matches_its_schema(check_report, tmp_path):
    outcomes = nasty_outcomes()
    path = tmp_path / "r.json"
    labs = {"requested": ["auto"], "ran": ["local"], "notes": ["--lab auto: no Docker"]}
    report.write_reports(outcomes, wall=3.5, json_path=str(path), labs=labs)
    data = check_report(path)
    assert data["schema_version"] == report.SCHEMA_VERSION == 1
    assert data["labs"] == labs
    assert data["summary"] == {"cells": 4, "ok": 2, "mismatches": 1, "errors": 1,
                               "not_run": 0}


@pytest.mark.parametrize("break_it", [
    lambda d: d.pop("schema_version"),
    lambda d: d.update(schema_version=2),
    lambda d: d["outcomes"][0].update(verdict="maybe"),
    lambda d: d["outcomes"][0]["cell"].update(expected="error"),
    lambda d: d["outcomes"][0]["steps"][0].pop("actor"),
    lambda d: d["labs"].pop("ran"),
], ids=["no-version", "future-version", "bad-verdict", "error-expected", "step-no-actor",
        "labs-no-ran"])
def test_the_json_schema_rejects_a_broken_report(break_it, report_schema):
    data = json.loads(json.dumps(report.to_json(nasty_outcomes(), 1.0), default=str))
    jsonschema.validate(data, report_schema)
    break_it(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, report_schema)


def test_reports_merge_back_and_refuse_what_is_not_a_report(tmp_path, check_report):
    a, b = tmp_path / "outcomes-a.json", tmp_path / "outcomes-b.json"
    outcomes = nasty_outcomes()
    report.write_reports(outcomes[:2], json_path=str(a),
                         labs={"requested": ["docker"], "ran": ["docker"], "notes": []})
    report.write_reports(outcomes[2:], json_path=str(b),
                         labs={"requested": ["local"], "ran": ["local"], "notes": []})
    merged = report.merge_reports([a, b])
    assert [o.cell.name for o in merged.outcomes] == [o.cell.name for o in outcomes]
    assert [str(o.verdict) for o in merged.outcomes] == [str(o.verdict) for o in outcomes]
    assert merged.labs["ran"] == ["docker", "local"]
    out = tmp_path / "merged.json"
    report.write_reports(merged.outcomes, json_path=str(out), labs=merged.labs)
    check_report(out)

    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"x": 1}')
    (tmp_path / "future.json").write_text('{"schema_version": 99, "outcomes": []}')
    for name, words in (("bad.json", "not a readable JSON report"),
                        ("other.json", "not a wraplab report"),
                        ("future.json", "newer than this wraplab reads")):
        with pytest.raises(report.ReportError, match=words):
            report.merge_reports([tmp_path / name])
    with pytest.raises(report.ReportError, match="no report files"):
        report.merge_reports([])


def test_a_real_local_cell_writes_reports_that_parse(tmp_path, check_report):
    """One real cell in the local lab through the CLI: JSON against the schema, JUnit
    against the XSD and through junitparser, the lab that ran named in the report."""
    requires_root("the local lab makes real users by uid")
    j, x, m = tmp_path / "m.json", tmp_path / "m.xml", tmp_path / "m.md"
    proc = subprocess.run(
        [sys.executable, "-m", "wraplab.cli", "matrix", "--lab", "local", "--scenario",
         "wrong-uid", "--profile", "hardened", "--socket", "notify", "--json", str(j),
         "--junit", str(x), "--markdown", str(m)],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = check_report(j)
    assert data["labs"] == {"requested": ["local"], "ran": ["local"], "notes": []}
    assert [o["cell"]["id"] for o in data["outcomes"]] == ["wrong-uid[hardened-notify-local]"]
    xmlschema.XMLSchema(str(XSD)).validate(str(x))
    doc = junitparser.JUnitXml.fromfile(str(x))
    assert (doc.tests, doc.failures, doc.errors) == (1, 0, 0)
    assert "wrong-uid" in m.read_text()


def test_summary_line_takes_flood_rates_per_handoff():
    """A flood scenario records one rate per handoff (a list); the table's summary line
    reports their range rather than failing on it."""
    one, many = make_outcome(), make_outcome(scenario="reconnect-flood")
    one.metrics["flood_rate"] = 90000.0
    many.metrics["flood_rate"] = [120000.0, 60000.0, None]
    text = report.render_matrix([one, many], 12.0)
    assert "flood rate 60,000-120,000 connects/s" in text


def test_summary_line_counts_started_and_reused_containers():
    """Cells in a container an earlier cell left checked clean are counted apart: when the
    reuse check refuses every cell, the summary shows it (it once did, unnoticed)."""
    fresh, reused, local = make_outcome(), make_outcome(), make_outcome()
    fresh.lab_info = {"container": "c1", "container_reused": False}
    reused.lab_info = {"container": "c1", "container_reused": True}
    assert report.render_matrix([fresh, reused, local]).endswith(
        "; Docker containers: 1 started, 1 reused")
    assert "Docker containers" not in report.render_matrix([local])
