"""The local lab's ``lib`` (wrapref and the actor tools, with their bytecode) is made once per
harness process and content and linked from each lab: labs with the same wrapref share one
tree, a scratch wrapref (the selftest's weakened copies) gets its own, the tree goes with
its owner process, and a kept lab (``wraplab run --keep``) has a copy of its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from wraplab import paths
from wraplab.labs import LocalLab, cleanup
from wraplab.labs.local import SYSTEM_PATH, shared_lib
from wraplab.targets import wrapref_spec

pytestmark = pytest.mark.requires_root

REPO = Path(__file__).resolve().parents[2]
SPEC = wrapref_spec("agentsh", lab="local")


@pytest.fixture
def base():
    """A base directory for the labs every actor can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="wraplab-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def lib_of(run) -> Path:
    """The shared tree a lab's ``lib`` links to (checked to be a link into the base)."""
    link = run.labdir / "lib"
    assert link.is_symlink(), f"{link} is not a link"
    target = link.resolve()
    assert target.parent.parent == run.labdir.parent, target
    assert target.parent.name.startswith(cleanup.LOCAL_LIB_PREFIX), target
    return target


def assert_root_read_only(lib: Path) -> None:
    """Root's, dirs 0755, files 0644, the bytecode in it."""
    found = [lib, *lib.rglob("*")]
    for path in found:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (0, 0), path
        want = 0o755 if stat.S_ISDIR(st.st_mode) else 0o644
        assert stat.S_IMODE(st.st_mode) == want, f"{path}: {oct(st.st_mode)}"
    assert (lib / "wrapref" / "__init__.py").is_file()
    assert (lib / "wraplab" / "actors" / "probe.py").is_file()
    assert list((lib / "wrapref" / "__pycache__").glob("server.*.pyc"))


def scratch_wrapref(where: Path, comment: str | None = None) -> Path:
    """A copy of the project's wrapref, with ``comment`` appended to its server module."""
    src = where / "wrapref"
    shutil.copytree(paths.wrapref_package(), src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if comment:
        with open(src / "server.py", "a") as f:
            f.write(f"# {comment}\n")
    return src


def imports(run, module: str = "wrapref.server") -> str:
    """Where an actor's interpreter finds ``module`` (the lab's lib, as the actor)."""
    done = run.exec("owner", ["python3", "-c", f"import {module}; print({module}.__file__)"],
                    timeout=60)
    assert done.exit_code == 0, done.describe()
    return done.stdout.strip()


def test_labs_with_the_same_wrapref_share_one_tree(base, tmp_path):
    """Two labs of this process, and a third whose wrapref is an identical copy elsewhere:
    one tree, root's and read-only, imported through each lab's own ``lib``."""
    same = LocalLab(base_dir=base, wrapref_src=scratch_wrapref(tmp_path / "copy"))
    with LocalLab(base_dir=base).start(SPEC) as one, \
            LocalLab(base_dir=base).start(SPEC) as two, same.start(SPEC) as three:
        lib = lib_of(one)
        assert lib_of(two) == lib_of(three) == lib
        assert_root_read_only(lib)
        assert imports(two) == str(two.labdir / "lib" / "wrapref" / "server.py")
        assert len(list(base.glob(f"{cleanup.LOCAL_LIB_PREFIX}*"))) == 1
    assert lib.is_dir(), "the tree lasts as long as its process, not its labs"


def test_another_wrapref_gets_another_tree(base, tmp_path):
    """A weakened scratch copy (as the selftest runs) never shares the project's tree."""
    src = scratch_wrapref(tmp_path / "weak", comment="weakened for this test")
    with LocalLab(base_dir=base).start(SPEC) as plain, \
            LocalLab(base_dir=base, wrapref_src=src).start(SPEC) as weak:
        assert lib_of(plain) != lib_of(weak)
        assert_root_read_only(lib_of(weak))
        assert (lib_of(weak) / "wrapref" / "server.py").read_bytes() == \
            (src / "server.py").read_bytes()
        assert b"weakened for this test" not in \
            (lib_of(plain) / "wrapref" / "server.py").read_bytes()
        assert imports(weak) == str(weak.labdir / "lib" / "wrapref" / "server.py")


def test_a_dead_owners_tree_is_swept_and_made_again(base):
    """The tree has a lab's owner file: the sweep at a lab's start (and ``wraplab clean``)
    removes it once its owner is gone; this process then makes a new one."""
    lib = shared_lib(base, paths.wrapref_package())
    assert cleanup.sweep_stale_local(base) == 0, "a live owner's tree was swept"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = lib.parent / cleanup.LOCAL_OWNER_FILE
    facts = json.loads(owner.read_text())
    owner.write_text(json.dumps({**facts, "pid": dead.pid, "started": 1}))
    assert cleanup.sweep_stale_local(base) == 1
    assert not lib.parent.exists()
    with LocalLab(base_dir=base).start(SPEC) as run:
        made = lib_of(run)
        assert_root_read_only(made)
        assert json.loads((made.parent / cleanup.LOCAL_OWNER_FILE).read_text())["pid"] == \
            os.getpid()
        assert imports(run).startswith(str(run.labdir / "lib"))


def hold(base: Path) -> tuple[subprocess.Popen, dict]:
    """A harness process holding a local lab under ``base`` (helpers/hold_lab.py)."""
    env = {**os.environ, "WRAPLAB_LOCAL_BASE": str(base)}
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "helpers" /
                                                 "hold_lab.py"), "local"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        pytest.fail(f"hold_lab.py exited {proc.returncode}:\n{proc.stderr.read()}")
    info = json.loads(line)
    lib = (Path(info["labdir"]) / "lib").resolve()
    assert lib.is_dir() and lib.parent.name.startswith(cleanup.LOCAL_LIB_PREFIX), lib
    return proc, {**info, "lib": lib}


def test_the_tree_goes_with_its_owner(base):
    """Removed when the harness process ends (here on SIGTERM, which unwinds it); left by
    one killed outright, then swept by the next lab's start."""
    proc, info = hold(base)
    proc.terminate()
    assert proc.wait(60) == 130, proc.stderr.read()
    assert not info["lib"].parent.exists()
    assert list(base.iterdir()) == []

    proc, info = hold(base)
    proc.kill()
    proc.wait(30)
    assert info["lib"].is_dir(), "SIGKILL should leave the tree behind"
    with LocalLab(base_dir=base).start(SPEC) as run:
        assert not info["lib"].parent.exists()
        assert not Path(info["labdir"]).exists()
        assert lib_of(run) != info["lib"]


def test_a_kept_lab_has_its_own_copy(base):
    """``wraplab run --keep`` outlives its process, and so any shared tree: its ``lib`` is a
    directory of its own, and the lab still works after the process is gone."""
    env = {**os.environ, "WRAPLAB_LOCAL_BASE": str(base)}
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "run", "wrong-uid", "--lab",
                          "local", "--keep"], capture_output=True, text=True, cwd=REPO,
                         timeout=300, env=env)
    m = re.search(r"its directory: +cd (\S+)", out.stderr)
    assert out.returncode == 0 and m, out.stdout + out.stderr
    labdir = Path(m.group(1))
    try:
        lib = labdir / "lib"
        assert lib.is_dir() and not lib.is_symlink()
        assert_root_read_only(lib)
        assert list(base.glob(f"{cleanup.LOCAL_LIB_PREFIX}*")) == [], \
            "the process is gone: no shared tree of it may be left"
        assert json.loads((labdir / cleanup.LOCAL_OWNER_FILE).read_text())["keep"] is True
        lab = LocalLab(base_dir=base)
        owner = lab.users["owner"]
        done = subprocess.run(  # the owner asks the kept server, with the kept lab's lib
            [lab.python, "-m", "wraplab.actors.api", "GET", "/healthz", "--api",
             f"unix:{labdir}/run/wrapref/api.sock"],
            capture_output=True, text=True, timeout=60, user=owner.uid, group=owner.gid,
            env={"PATH": SYSTEM_PATH, "PYTHONPATH": str(lib), "HOME": "/tmp", "LANG": "C.UTF-8",
                 "PYTHONDONTWRITEBYTECODE": "1"})
        assert done.returncode == 0 and '"ok": true' in done.stdout, done
    finally:
        cleanup.sweep_stale_local(base, kept=True)
    assert not labdir.exists()
