"""Where wraplab finds its inputs: the repository (containers/, ref/) and its cache."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ACTORS_DIR = PACKAGE_DIR / "actors"


class SourcesMissing(RuntimeError):
    """The repository files a lab needs (containers/, ref/) cannot be found."""


def repo_root() -> Path:
    """The wraplab checkout: ``$WRAPLAB_ROOT``, else the first ancestor of this package
    holding ``containers/users.conf`` (an editable install from the repository)."""
    env = os.environ.get("WRAPLAB_ROOT")
    if env:
        root = Path(env).resolve()
        if not (root / "containers" / "users.conf").is_file():
            raise SourcesMissing(f"WRAPLAB_ROOT={env} has no containers/users.conf")
        return root
    for parent in PACKAGE_DIR.parents:
        if (parent / "containers" / "users.conf").is_file():
            return parent
    raise SourcesMissing(
        "cannot find the wraplab repository (containers/users.conf) above "
        f"{PACKAGE_DIR}; install wraplab editable from a checkout or set WRAPLAB_ROOT"
    )


def containers_dir() -> Path:
    return repo_root() / "containers"


def users_conf() -> Path:
    return containers_dir() / "users.conf"


def ref_project() -> Path:
    """The reference server's project directory (ref/, holding pyproject.toml)."""
    return repo_root() / "ref"


def wrapref_package() -> Path:
    """The ``wrapref`` package sources that go into every lab."""
    pkg = ref_project() / "src" / "wrapref"
    if not (pkg / "__init__.py").is_file():
        raise SourcesMissing(f"the wrapref package is missing ({pkg}/__init__.py)")
    return pkg


def cache_dir() -> Path:
    """``$WRAPLAB_CACHE``, else ``$XDG_CACHE_HOME/wraplab`` (``~/.cache/wraplab``)."""
    env = os.environ.get("WRAPLAB_CACHE")
    if env:
        path = Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(xdg) / "wraplab"
    path.mkdir(parents=True, exist_ok=True)
    return path
