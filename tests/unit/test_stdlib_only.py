"""ref/ is stdlib only, Python 3.9 compatible, never imports the harness, and styled."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import wrapref

PKG = Path(wrapref.__file__).resolve().parent
MODULES = sorted(PKG.glob("*.py"))

# Python 3.9 has no sys.stdlib_module_names: the modules ref/ may use, checked
# against the real list whenever the running Python has one.
STDLIB_FALLBACK = {
    "__future__", "argparse", "array", "dataclasses", "errno", "fcntl", "hashlib", "http",
    "io", "ipaddress", "json", "os", "re", "secrets", "select", "shutil", "signal",
    "socket", "socketserver", "stat", "struct", "sys", "tempfile", "threading", "time",
}


def stdlib_names() -> set:
    names = getattr(sys, "stdlib_module_names", None)
    return set(names) if names else STDLIB_FALLBACK


def imports_of(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside wrapref
                continue
            yield (node.module or "").split(".")[0], node.lineno


def test_modules_found():
    names = {p.stem for p in MODULES}
    assert {"server", "api", "client", "cli", "wire", "wrapdir", "profiles"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_only_stdlib_and_wrapref_imports(path):
    allowed = stdlib_names() | {"wrapref"}
    bad = [(mod, line) for mod, line in imports_of(path) if mod not in allowed]
    assert bad == [], f"third-party imports in {path.name}: {bad!r}"


def test_fallback_list_is_stdlib():
    names = getattr(sys, "stdlib_module_names", None)
    if names is None:
        pytest.skip("this Python has no sys.stdlib_module_names to check against")
    assert set(names) >= STDLIB_FALLBACK


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_never_imports_the_harness(path):
    mods = {mod for mod, _line in imports_of(path)}
    assert "wraplab" not in mods and "harness" not in mods


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_parses_as_python_39(path):
    ast.parse(path.read_text(), str(path), feature_version=(3, 9))
    tree = ast.parse(path.read_text())
    assert not any(type(n).__name__ == "Match" for n in ast.walk(tree)), "match is 3.10+"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_docstring_and_all(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name} has no module docstring"
    if path.name not in ("__main__.py",):
        assigned = {t.id for n in tree.body if isinstance(n, ast.Assign)
                    for t in n.targets if isinstance(t, ast.Name)}
        assert "__all__" in assigned, f"{path.name} has no __all__"


def test_pyproject_declares_no_dependencies():
    text = (PKG.parents[1] / "pyproject.toml").read_text()
    assert "dependencies = []" in text
    assert 'requires-python = ">=3.9"' in text
    assert 'wrapref = "wrapref.cli:main"' in text
