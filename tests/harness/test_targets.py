"""Targets without a lab: the target file format (every problem with its line and key),
the built-in targets' command lines, expectations and overrides, cells a target cannot run,
and ``wraplab targets [check]``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
from harness_support import REPO, collected_ids
from wraplab import engine, report, targets
from wraplab.target_files import TargetFileError, key_lines, load

BLACKBOX = REPO / "tests" / "targets" / "wrapref-blackbox" / "target.toml"

MINIMAL = """\
version = 1
name = "tiny"
[server]
command = ["/usr/local/bin/tiny", "--listen", "{api_path}"]
[server.args]
accept_window = ["--window", "{value}"]
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_the_builtin_targets_start_wrapref_as_the_labs_did():
    spec = targets.reference("agentsh").server_spec(
        placement="service", socket="signal", transport="tcp", lab="docker",
        accept_window=6.0, backlog=4, peer=True)
    assert spec.argv == ("wrapref", "serve", "--profile", "agentsh", "--api", "{api}",
                         "--temp-base", "{temp_base}", "--log-file", "{log_file}",
                         "--signal-socket", "--api", f"tcp:127.0.0.1:{targets.TCP_PORT}",
                         "--accept-window", "6", "--backlog", "4")
    assert spec.extra_apis == (f"tcp:127.0.0.1:{targets.TCP_PORT}",)
    assert (spec.placement.value, spec.peer, spec.ready.kind, spec.ready.value) == \
        ("service", True, "http", "/healthz")
    assert targets.reference("hardened").dial == "retry"
    assert targets.reference("pre-235").dial == "once"
    assert all(targets.get(n).has_events for n in targets.builtin_names())
    assert targets.get("permissive") == targets.get("wrapref:permissive")


def test_a_minimal_file_expects_defended_everywhere_and_runs_what_it_serves(tmp_path):
    t = load(write(tmp_path, MINIMAL))
    assert (t.name, t.profile, t.has_events, t.sockets, t.ready_kind) == \
        ("tiny", "tiny", False, ("notify",), "socket")
    scenario = engine.get_scenario("wrong-uid")
    cells = t.cells(scenario, lab="docker")
    assert {c.expected for c in cells} == {engine.DEFENDED}
    runnable = [c for c in cells if not c.not_run]
    assert [c.socket for c in runnable] == ["notify"]
    assert {c.not_run for c in cells if c.not_run} == {
        "tiny serves no signal socket (server.sockets)",
        "tiny serves no ptrace socket (server.sockets)"}
    assert runnable[0].name == "wrong-uid[tiny-notify-docker]"
    assert runnable[0].target == "tiny"


def test_a_cell_needing_an_option_the_target_lacks_is_not_run_and_reported(tmp_path):
    t = targets.register(load(write(tmp_path, MINIMAL)))
    scenario = engine.get_scenario("slow-client")
    assert scenario.server.get("handshake_timeout") is not None
    cells = t.cells(scenario, lab="docker", sockets=["notify"])
    assert cells and all("has no handshake_timeout (server.args.handshake_timeout)"
                         in c.not_run for c in cells)
    out = engine.run_cell(cells[0])  # no lab is made: the cell is not run
    assert out.verdict is engine.NOT_RUN and not out.ok and "handshake_timeout" in out.reason
    ran = engine.run_cell(engine.make_cells([engine.get_scenario("wrong-uid")],
                                            profiles=["agentsh"])[0], lab=_NoLab())
    counts = report.summary_counts([out, ran])
    assert (counts["cells"], counts["not_run"]) == (1, 1)
    text = report.render_outcome(out)
    assert "not run: tiny has no handshake_timeout" in text and "target tiny" in text
    junit = report.to_junit([out]).decode()
    assert "<skipped" in junit and 'name="target" value="tiny"' in junit
    data = json.loads(json.dumps(report.to_json([out, ran]), default=str))
    schema = json.loads((report.SCHEMAS / "report-v1.schema.json").read_text())
    jsonschema.validate(data, schema)
    back = report.outcomes_from_json(data)
    assert back[0].verdict is engine.NOT_RUN and back[0].cell.target == "tiny"
    assert any("not run: slow-client against tiny" in line
               for line in report.notes_lines([out]))


class _NoLab:
    """A lab that cannot start: the cell's verdict is error, said as a lab problem."""

    def start(self, spec):
        raise RuntimeError("no lab in this test")


def test_expectations_like_a_profile_and_overrides_with_reasons(tmp_path):
    t = load(write(tmp_path, MINIMAL + """\
        [expect]
        like = "wrapref:agentsh"
        [expect.scenarios."wrong-uid"]
        verdict = "vulnerable"
        reason = "built with --legacy: no caller uid"
        """.replace("        ", "")))
    scenario = engine.get_scenario("legacy-no-caller-uid")
    e, why = t.expectation(scenario, "notify", "root", "unix")
    assert (e, why) == (scenario.expectation("agentsh"), None)
    cell = t.cells(engine.get_scenario("wrong-uid"), lab="docker")[0]
    assert (cell.expected, cell.expect_reason) == (engine.VULNERABLE,
                                                   "built with --legacy: no caller uid")
    out = engine.Outcome(cell=cell, verdict=engine.VULNERABLE, reason="r")
    assert out.ok
    assert "the target file expects it: built with --legacy" in report.render_outcome(out)
    assert any("built with --legacy" in line for line in report.notes_lines([out]))


def test_an_override_by_socket_is_one_note_with_each_verdict_and_its_sockets(tmp_path):
    t = load(write(tmp_path, MINIMAL + """\
        [expect.scenarios."deputy-handoff"]
        verdict = { "*" = "defended", signal = "vulnerable" }
        reason = '''no pid in the signal
        handoff'''
        """.replace("        ", "")))
    outs = [engine.Outcome(cell=c, verdict=c.expected, reason="r")
            for c in t.cells(engine.get_scenario("deputy-handoff"), lab="docker")]
    notes = [line for line in report.notes_lines(outs) if "expected:" in line]
    assert notes == ["  expected: deputy-handoff against tiny: defended (notify/ptrace), "
                     "vulnerable (signal) (no pid in the signal handoff)"]


BROKEN = """\
version = 1
name = "Bad Name"
descripton = "typo"

[install]
copy = ["missing-binary"]

[server]
command = ["{target_dir}/srv", "--api", "{apii}"]
placements = ["root", "rooted"]
transports = ["unix", "tcp"]

[server.args]
accept_window = ["--window"]

[server.ready]
socket = "{api_path}"
http = "/healthz"
timeout = -1

[client]
dial = "twice"

[expect]
default = "defended"
like = "wrapref:agentsh"

[expect.scenarios."wrong-uidd"]
verdict = "safe"
"""


def test_a_broken_file_names_every_problem_with_its_line_and_key(tmp_path):
    path = write(tmp_path, BROKEN)
    with pytest.raises(TargetFileError) as err:
        load(path)
    problems = err.value.problems
    want = [
        ("line 2: name:", "lowercase letters"),
        ("line 3: descripton:", "did you mean 'description'"),
        ("line 6: install.copy:", "'missing-binary' does not exist"),
        ("line 9: server.command:", "{apii}"),
        ("line 10: server.placements:", "'rooted' not among"),
        ("line 11: server.transports:", "no tcp = [...]"),
        ("line 14: server.args.accept_window:", "never uses {value}"),
        ("line 16: server.ready:", "not socket and http"),
        ("line 19: server.ready.timeout:", "seconds > 0"),
        ("line 22: client.dial:", "'twice' is not one of retry, once"),
        ("line 26: expect.like:", "either default or like"),
        ('line 28: expect.scenarios.wrong-uidd:', "did you mean 'wrong-uid'"),
        ('line 29: expect.scenarios.wrong-uidd.verdict:', "'safe' is not one of"),
        ('line 28: expect.scenarios.wrong-uidd.reason:', "is missing"),
    ]
    for where, what in want:
        assert any(p.startswith(where) and what in p for p in problems), (where, problems)
    assert len(problems) == len(want), problems
    lines = [int(p.split()[1].rstrip(":")) for p in problems]
    assert lines == sorted(lines), "problems in the file's order"


@pytest.mark.parametrize("text,want", [
    ("version = 1\nname = \"x\"\n[server\n", "not valid TOML"),
    ("name = \"x\"\n[server]\ncommand = [\"a\"]\n", "version: is missing"),
    ("version = 2\nname = \"x\"\n[server]\ncommand = [\"a\"]\n", "reads version 1"),
    ("version = 1\nname = \"x\"\n", "server: is missing"),
    ("version = 1\nname = \"x\"\n[server]\ncommand = \"a b\"\n", "must be a list of strings"),
    ("version = 1\nname = \"agentsh\"\n[server]\ncommand = [\"a\"]\n", "built-in profile"),
])
def test_small_mistakes(tmp_path, text, want):
    with pytest.raises(TargetFileError) as err:
        load(write(tmp_path, text))
    assert want in str(err.value)


def test_key_lines_follow_tables_quoted_and_dotted_keys():
    lines = key_lines('a = 1\n[x.y]\n"b.c" = 2\n[z."q r"]\nd.e = 3\n')
    assert lines[("a",)] == 1 and lines[("x", "y", "b.c")] == 3
    assert lines[("z", "q r", "d", "e")] == 5


def test_the_example_target_file_is_valid():
    t = load(BLACKBOX)
    assert t.copy == (str(BLACKBOX.parent / "serve.sh"),)
    spec = t.server_spec(socket="ptrace", accept_window=4)
    assert spec.install == ((str(BLACKBOX.parent / "serve.sh"), "serve.sh"),)
    assert spec.argv[0] == "{target_dir}/serve.sh" and spec.argv[-3:] == (
        "--ptrace-mode", "--accept-window", "4")
    assert (spec.ready.kind, spec.ready.value) == ("socket", "{api_path}")


def test_install_build_runs_once_and_its_failure_is_said(tmp_path):
    ok = load(write(tmp_path, MINIMAL.replace("[server]", '[install]\nbuild = ["sh", "-c", '
                                              '"echo x >> {here}/built"]\ncopy = ["built"]\n'
                                              "[server]")))
    ok.prepare()
    ok.prepare()
    assert (tmp_path / "built").read_text() == "x\n"
    bad = load(write(tmp_path, MINIMAL.replace("[server]", '[install]\nbuild = ["sh", "-c", '
                                               '"echo nope >&2; exit 4"]\n[server]'),
                     "bad.toml"))
    with pytest.raises(targets.TargetError, match="exited 4:\n  nope"):
        bad.prepare()


def wraplab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wraplab.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_targets_lists_and_checks(tmp_path):
    listed = wraplab("targets", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    for name in targets.builtin_names():
        assert name in listed.stdout
    bad = write(tmp_path, BROKEN)
    before = sorted(tmp_path.rglob("*"))
    checked = wraplab("targets", "check", str(bad), str(BLACKBOX), cwd=tmp_path)
    assert checked.returncode == 1
    assert "line 10: server.placements:" in checked.stderr, checked.stderr
    assert f"{BLACKBOX}: valid" in checked.stdout
    assert sorted(tmp_path.rglob("*")) == before, "checking created something"
    assert wraplab("targets", "check", str(BLACKBOX), cwd=tmp_path).returncode == 0
    assert wraplab("targets", "check", cwd=tmp_path).returncode == 2


def test_cli_run_refuses_a_broken_target_before_any_lab(tmp_path):
    bad = write(tmp_path, BROKEN)
    done = wraplab("run", "wrong-uid", "--lab", "local", "--target", str(bad), cwd=tmp_path)
    if "cannot run here" in done.stderr:
        pytest.skip(f"the local lab is not usable here: {done.stderr.strip()}")
    assert done.returncode == 2 and "line 9: server.command" in done.stderr, done.stderr


def test_pytest_plugin_collects_the_matrix_outside_the_repository(tmp_path):
    """`pytest --wraplab-target NAME` (and the one-line ini) in a directory that is not
    wraplab's: the cells are items with their markers; -k selects."""
    (tmp_path / "test_own.py").write_text("def test_own():\n    pass\n")
    ids = collected_ids(tmp_path, "--wraplab-target", "wrapref:agentsh", "--wraplab-lab",
                        "docker", "-k", "wrong-uid or test_own")
    assert sorted(ids) == ["test_own", "wrong-uid[agentsh-notify-docker]",
                           "wrong-uid[agentsh-ptrace-docker]", "wrong-uid[agentsh-signal-docker]"]
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nwraplab_targets = {BLACKBOX}\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "--wraplab-lab", "local", "-m", "wrong_uid"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "wrong-uid[wrapref-blackbox-signal-local]" in run.stdout
    plain = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                            "-p", "no:cacheprovider", "-c", "/dev/null", str(tmp_path)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "1 test collected" in plain.stdout, plain.stdout  # inert without a target


def test_an_override_keyed_like_a_scenarios_expect(tmp_path):
    t = load(write(tmp_path, MINIMAL + textwrap.dedent("""\
        [expect.scenarios."deputy-handoff"]
        verdict = { "*" = "defended", signal = "vulnerable", "service/ptrace" = "broken" }
        reason = "the signal handoff carries no pid"
        """)))
    s = engine.get_scenario("deputy-handoff")
    got = {(sock, pl): t.expectation(s, sock, pl, "unix")[0].verdict
           for sock in ("notify", "signal", "ptrace") for pl in ("root", "service")}
    assert got[("signal", "root")] is engine.VULNERABLE
    assert got[("ptrace", "service")] is engine.BROKEN
    assert got[("notify", "root")] is got[("ptrace", "root")] is engine.DEFENDED
    with pytest.raises(TargetFileError, match=r"line 8: expect.scenarios.wrong-uid.verdict."
                       r"sgnal: a key is"):
        load(write(tmp_path, MINIMAL + '[expect.scenarios."wrong-uid"]\n'
                   'verdict = { sgnal = "defended" }\nreason = "r"\n', "bad.toml"))


def test_a_g8_cell_accepts_broken_or_the_attack_alone_and_nothing_else(tmp_path):
    """G8 is the server's own race: broken, or (the owner's dial won) the attack's verdict."""
    s = engine.get_scenario("dac-override-intruder")
    [cell] = s.cells(profiles=["agentsh"], sockets=["signal"], placements=["root"],
                     lab="local")
    e = cell.expectation
    assert e.met_by(engine.BROKEN, None)
    assert e.met_by(engine.DEFENDED, "peer-check")
    assert not e.met_by(engine.DEFENDED, "kernel")
    assert not e.met_by(engine.VULNERABLE, None)
    assert not e.met_by(engine.ERROR, None)
    assert "outruns G8" in str(e)
    [notify] = s.cells(profiles=["agentsh"], sockets=["notify"], placements=["root"],
                       lab="local")
    assert notify.expectation.race is None and not notify.expectation.met_by(engine.BROKEN, None)
    # A saved report keeps it: show/report re-judge the same way.
    out = engine.Outcome(cell=cell, verdict=engine.DEFENDED, reason="r", guard="peer-check")
    [back] = report.outcomes_from_json(json.loads(json.dumps(report.to_json([out]))))
    assert back.cell.expectation == e and back.ok


def test_a_flood_cell_accepts_g8_coming_first_and_says_when():
    """permissive's signal cells under a flood: vulnerable (the flood's first connection
    ends the loop), or broken when G8's cleanup ran before the loop's first accept; the
    report says which race that is, also when read back."""
    s = engine.get_scenario("reconnect-flood")
    [cell] = s.cells(profiles=["permissive"], sockets=["signal"], placements=["root"],
                     lab="local")
    e = cell.expectation
    assert e.met_by(engine.VULNERABLE, None) and e.met_by(engine.BROKEN, None)
    assert not e.met_by(engine.DEFENDED, None) and not e.met_by(engine.ERROR, None)
    assert str(e) == ("vulnerable, or broken if G8's cleanup comes before the signal loop's "
                      "first accept")
    [notify] = s.cells(profiles=["permissive"], sockets=["notify"], placements=["root"],
                       lab="local")
    assert not notify.expectation.met_by(engine.BROKEN, None)
    out = engine.Outcome(cell=cell, verdict=engine.BROKEN, reason="G8")
    [back] = report.outcomes_from_json(json.loads(json.dumps(report.to_json([out]))))
    assert back.cell.expectation == e and back.ok and str(back.cell.expectation) == str(e)
