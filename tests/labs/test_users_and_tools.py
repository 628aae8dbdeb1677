"""users.conf is read one way everywhere; the in-lab actor tools use only the stdlib."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wraplab import paths, users
from wraplab.labs import UID_OFFSET

ACTOR_MODULES = sorted(p.stem for p in paths.ACTORS_DIR.glob("*.py") if p.stem != "__init__")


def test_users_conf_declares_the_spec_users():
    declared = users.load()
    want = {"owner": ("alice", 1001), "bystander": ("bob", 1002), "attacker": ("mallory", 1003),
            "service": ("wrapd", 990), "overflow": ("nobody", 65534)}
    assert {r: (u.name, u.uid) for r, u in declared.by_role().items()} == want
    assert [(g.name, g.gid) for g in declared.groups] == [("wrapusers", 1100)]
    assert declared["owner"] is declared["alice"]
    assert declared["owner"].gid == 1001 and declared["owner"].groups == (1100,)
    assert declared["attacker"].groups == ()
    assert declared["overflow"].system and not declared["owner"].system
    assert declared["root"].uid == 0


def test_local_users_are_shifted_into_the_reserved_range():
    shifted = users.load().shifted(UID_OFFSET)
    assert shifted["owner"].uid == UID_OFFSET + 1001
    assert shifted["owner"].gid == UID_OFFSET + 1001
    assert shifted["owner"].groups == (UID_OFFSET + 1100,)
    assert shifted["overflow"].uid == 65534  # the image's own nobody, never shifted
    assert shifted["root"].uid == 0


@pytest.mark.parametrize("text", ["user alice 1001 owner", "user alice x owner -",
                                  "user alice 1001 owner nogroup"])
def test_users_conf_errors_are_reported(text):
    with pytest.raises(users.UsersError):
        users.parse(text)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", ACTOR_MODULES + ["__init__"])
def test_actor_sources_import_only_stdlib(module):
    foreign = {
        name for name in _imports(paths.ACTORS_DIR / f"{module}.py")
        if name.split(".")[0] not in sys.stdlib_module_names
        and not (name == "wraplab.actors" or name.startswith("wraplab.actors."))
    }
    assert not foreign, f"wraplab.actors.{module} imports outside the stdlib: {sorted(foreign)}"


def test_actor_modules_load_with_nothing_but_the_stdlib(tmp_path):
    """Import every tool in an isolated interpreter (no site-packages) from a copy of just
    wraplab/__init__.py + wraplab/actors, as the labs install them; list what got loaded."""
    lib = tmp_path / "lib"
    (lib / "wraplab").mkdir(parents=True)
    (lib / "wraplab" / "__init__.py").write_bytes((paths.PACKAGE_DIR / "__init__.py").read_bytes())
    subprocess.run(["cp", "-R", str(paths.ACTORS_DIR), str(lib / "wraplab" / "actors")], check=True)
    code = (
        "import importlib, json, sys\n"
        f"sys.path.insert(0, {str(lib)!r})\n"
        "before = set(sys.modules)\n"
        f"for m in {ACTOR_MODULES!r}: importlib.import_module('wraplab.actors.' + m)\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(json.dumps(new))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    foreign = [m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names
               and m != "wraplab" and not m.startswith("wraplab.actors")]
    assert not foreign, f"importing the actor tools loaded non-stdlib modules: {foreign}"
    assert {f"wraplab.actors.{m}" for m in ACTOR_MODULES} <= set(loaded)


@pytest.mark.parametrize("module", ["probe", "stat", "api", "procinfo", "reap"])
def test_required_actor_tools_exist_and_answer_help(module):
    out = subprocess.run([sys.executable, "-m", f"wraplab.actors.{module}", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_launch_tool_sets_umask_and_nofile_then_execs(tmp_path):
    """The labs' server launcher: umask and RLIMIT_NOFILE set, the program exec-ed in the
    same process; a bad value is a clear error (exit 2) and nothing is started."""
    show = ("import os, resource; "
            "print(os.getpid(), os.umask(0), *resource.getrlimit(resource.RLIMIT_NOFILE))")
    launch = [sys.executable, "-m", "wraplab.actors.launch"]
    proc = subprocess.Popen([*launch, "--umask", "077", "--nofile", "64", "--", sys.executable,
                             "-c", show], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.split() == [str(proc.pid), str(0o077), "64", "64"]
    marker = tmp_path / "started"
    for bad in (["--nofile", "3"], ["--umask", "8"], ["--umask", "1777"]):
        res = subprocess.run([*launch, *bad, "--", "touch", str(marker)], capture_output=True,
                             text=True, timeout=30)
        assert res.returncode == 2 and "launch: error:" in res.stderr, (bad, res.stderr)
    assert not marker.exists()


def test_stat_tool_decodes_acls_like_getfacl(tmp_path):
    """The stat tool reads the ACL xattr itself; compare with getfacl where present."""
    target = tmp_path / "f"
    target.write_text("x")
    if subprocess.run(["setfacl", "-m", "u:4242:r--,g:4343:-w-", str(target)]).returncode != 0:
        why = "requires setfacl (Debian package acl) and a filesystem with ACLs"
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI is set, so this fails instead of skipping)", pytrace=False)
        pytest.skip(why)
    out = subprocess.run([sys.executable, "-m", "wraplab.actors.stat", str(target)],
                         capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout)["facts"][0]
    getfacl = subprocess.run(["getfacl", "-n", "-c", "-E", str(target)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert facts["acl"] == getfacl
    assert "user:4242:r--" in facts["acl"]
