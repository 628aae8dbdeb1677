"""The scenario files themselves: every one loads, and a bad one fails loading clearly."""

from __future__ import annotations

import textwrap

import pytest
from wraplab import engine
from wraplab.targets import PROFILES, reference

GOOD = '''
    """Tells the attack."""
    from wraplab.engine import DEFENDED, BROKEN
    SLUG = "{slug}"
    ACTORS = {{"owner": "owner"}}
    EXPECT = {{p: DEFENDED for p in ("hardened", "agentsh", "permissive", "accept-once")}}
    EXPECT["pre-235"] = {{"*": BROKEN, "tcp": DEFENDED}}
    TRANSPORTS = ("unix", "tcp")
    def run(ctx):
        return ctx.defended("yes")
'''


def write(tmp_path, name: str, text: str):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_builtin_scenarios_load_and_cover_every_profile():
    scenarios = engine.discover()
    slugs = [s.slug for s in scenarios]
    assert slugs[:5] == ["matching-uid", "wrong-uid", "no-cap-chown", "legacy-no-caller-uid",
                         "reconnect-flood"]
    for s in scenarios:
        assert s.doc and s.slug == s.path.stem
        for cell in s.cells():
            assert cell.expected is not engine.ERROR
        assert set(s.expect) == set(PROFILES)


def test_cell_ids_are_readable():
    s = engine.get_scenario("wrong-uid")
    names = [c.name for c in s.cells(lab="docker")]
    assert "wrong-uid[agentsh-signal-docker]" in names
    legacy = engine.get_scenario("legacy-no-caller-uid")
    assert "legacy-no-caller-uid[hardened-notify-tcp-local]" in [
        c.name for c in legacy.cells(lab="local")]
    assert legacy.expected("hardened", "notify", "root", "tcp") is engine.VULNERABLE
    assert legacy.expected("hardened", "notify", "root", "unix") is engine.DEFENDED


def test_good_file_loads_with_variant_expectations(tmp_path):
    s = engine.load_scenario(write(tmp_path, "fine-one", GOOD.format(slug="fine-one")))
    assert s.expected("pre-235", transport="tcp") is engine.DEFENDED
    assert s.expected("pre-235", transport="unix") is engine.BROKEN


def test_missing_docstring_fails(tmp_path):
    text = GOOD.format(slug="no-doc").replace('"""Tells the attack."""', "")
    with pytest.raises(engine.ScenarioError, match="docstring"):
        engine.load_scenario(write(tmp_path, "no-doc", text))


def test_slug_must_be_the_file_name(tmp_path):
    with pytest.raises(engine.ScenarioError, match="differs from the file name"):
        engine.load_scenario(write(tmp_path, "file-name", GOOD.format(slug="other-name")))


def test_every_profile_needs_an_expectation(tmp_path):
    text = GOOD.format(slug="half").replace('EXPECT["pre-235"]', "_X")
    with pytest.raises(engine.ScenarioError, match="no verdict for pre-235"):
        engine.load_scenario(write(tmp_path, "half", text))


def test_error_is_never_an_expectation(tmp_path):
    text = GOOD.format(slug="err").replace("BROKEN, \"tcp\": DEFENDED", "BROKEN")
    text = text.replace("from wraplab.engine import DEFENDED, BROKEN",
                        "from wraplab.engine import DEFENDED, BROKEN, ERROR")
    text = text.replace('{"*": BROKEN}', "ERROR")
    with pytest.raises(engine.ScenarioError, match="expect defended"):
        engine.load_scenario(write(tmp_path, "err", text))


def test_discover_fails_on_a_bad_file(tmp_path):
    write(tmp_path, "good-one", GOOD.format(slug="good-one"))
    write(tmp_path, "bad-one", GOOD.format(slug="good-one"))
    with pytest.raises(engine.ScenarioError, match="bad-one"):
        engine.discover(tmp_path)


def test_ambiguous_expectation_fails(tmp_path):
    text = GOOD.format(slug="tie").replace('{"*": BROKEN, "tcp": DEFENDED}',
                                           '{"*": BROKEN, "tcp": DEFENDED, "notify": BROKEN}')
    with pytest.raises(engine.ScenarioError, match="ambiguous"):
        engine.load_scenario(write(tmp_path, "tie", text))


def test_unknown_server_option_fails(tmp_path):
    """A misspelt lab option must not be dropped silently (the scenario would run without it)."""
    text = GOOD.format(slug="typo") + '    SERVER = {"accept_window": 3, "peer_share_pids": True}\n'
    with pytest.raises(engine.ScenarioError,
                       match=r"SERVER has unknown option\(s\) peer_share_pids \(known: "):
        engine.load_scenario(write(tmp_path, "typo", text))
    text = GOOD.format(slug="fine-options") + '    SERVER = {"server_userns": ("owner",)}\n'
    s = engine.load_scenario(write(tmp_path, "fine-options", text))
    assert s.server == {"server_userns": ("owner",)}


def test_scenarios_touch_no_underscore_name_of_the_engine():
    """Scenarios use the engine's verbs; a private name (``ctx._pending``,
    ``actor._wrap_done``) in a scenario is a verb the engine is missing."""
    import ast

    for s in engine.discover():
        tree = ast.parse(s.path.read_text())
        private = sorted({f"{n.attr} (line {n.lineno})" for n in ast.walk(tree)
                          if isinstance(n, ast.Attribute) and n.attr.startswith("_")
                          and not n.attr.startswith("__")})
        imported = sorted({a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                           and (n.module or "").startswith("wraplab.engine")
                           for a in n.names if a.name.startswith("_")})
        assert not private and not imported, f"{s.slug}: {private + imported}"


def test_server_options_are_declared_once_and_reach_the_lab():
    """Every SERVER option the engine passes on reaches the lab: the server's own options
    through the target (``[server.args]``), the lab's as fields of its ServerSpec; the
    ones it keeps are read by the engine (client_budget can be set and takes effect)."""
    import dataclasses

    from wraplab.engine.axes import SERVER_OPTIONS
    from wraplab.labs import ServerSpec
    from wraplab.targets import OPTIONS

    fields = {f.name for f in dataclasses.fields(ServerSpec)}
    for name, (where, what) in SERVER_OPTIONS.items():
        assert what
        if where == "server":
            assert name in OPTIONS or name in fields, f"{name} is declared but reaches no lab"
            if name in OPTIONS:
                assert name in reference("agentsh").args, f"wrapref has no {name}"
        else:
            assert where == "engine"
    scenario = engine.get_scenario("wrong-uid")
    scenario = type(scenario)(**{**scenario.__dict__, "server": {"client_budget": 9.5}})
    cell = scenario.cells(profiles=["hardened"], sockets=["notify"])[0]

    class Run:
        users = {"owner": None, "attacker": None}
        api = "unix:/run/api.sock"

    ctx = engine.Context(scenario, cell, Run(), reference("hardened"))
    assert ctx.client_budget == 9.5
