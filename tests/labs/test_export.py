"""``wraplab export``: the reproduction folder, run in a clean directory with only Docker (no
wraplab on PATH, no Python environment of ours), reproduces the verdict: the symlink race
wins against agentsh (exit 1) and fails against hardened (exit 0); the intruder's handoff
(wrong-uid) is accepted by permissive (exit 1) and refused for agentsh (exit 0); a reconnect
flood costs agentsh's owner her handoff without CAP_CHOWN (exit 1), not hardened's (exit 0)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
#: The exported Dockerfile starts FROM debian:bookworm; with no registry here the test
#: builds it on wraplab's own offline Debian base (python3, acl, setpriv already in it).
BASE = os.environ.get("WRAPLAB_EXPORT_BASE", "wraplab/base:bookworm")


def export(profile: str, out: Path, scenario: str = "symlink-race", *extra: str
           ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wraplab.cli", "export", scenario,
                           "--profile", profile, "--no-run", "-o", str(out), *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.fixture
def base_image():
    client = docker.from_env()
    try:
        client.images.get(BASE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"no {BASE}: run `wraplab images` first (it bootstraps it offline)")
    finally:
        client.close()
    return BASE


@pytest.mark.requires_docker
@pytest.mark.parametrize("scenario,profile,placement,status,words", [
    ("symlink-race", "agentsh", "root", 1, "ATTACK SUCCEEDED: root chowned"),
    ("symlink-race", "hardened", "root", 0,
     "attack failed: 0 of 100 canaries changed hands in up to 1500 tries"),
    ("wrong-uid", "permissive", "root", 1, "ATTACK SUCCEEDED: the server accepted a handoff "
     "of the intruder"),
    ("wrong-uid", "agentsh", "root", 0, "attack failed: only the handoff of the owner arrived"),
    # agentsh's fallback sockets without CAP_CHOWN: the flood fills the backlog, alice's one
    # non-blocking dial gets EAGAIN; hardened's ACL makes the kernel refuse the flood
    ("reconnect-flood", "agentsh", "root-no-chown", 1, "ATTACK SUCCEEDED: under the flood"),
    ("reconnect-flood", "hardened", "root-no-chown", 0, "attack failed: the kernel refused"),
])
def test_the_exported_folder_reproduces_the_verdict_with_docker_only(
        scenario, profile, placement, status, words, tmp_path, base_image):
    made = tmp_path / "export"
    out = export(profile, made, scenario, "--placement", placement)
    assert out.returncode == 0, out.stdout + out.stderr
    clean = tmp_path / "clean"
    shutil.copytree(made, clean)  # a clean directory holding only the folder
    readme = (clean / "README.md").read_text()
    assert f"wrapref:{profile}" in readme and "## How to run" in readme
    assert (clean / "repro" / "owner.sh").is_file() and (clean / "Dockerfile").is_file()
    assert (clean / "repro" / "intruder.sh").is_file() == (scenario == "wrong-uid")
    if placement == "root-no-chown":
        assert "--cap-drop CHOWN" in (clean / "run-with-docker.sh").read_text()
    docker_bin = shutil.which("docker")
    assert docker_bin
    path = f"{Path(docker_bin).parent}:/usr/bin:/bin"
    assert shutil.which("wraplab", path=path) is None  # nothing of wraplab is used
    tag = f"wraplab-repro-test/{uuid.uuid4().hex[:12]}:{profile}"
    try:
        run = subprocess.run(["/bin/sh", "run-with-docker.sh"], cwd=clean, capture_output=True,
                             text=True, timeout=600,
                             env={"PATH": path, "HOME": str(tmp_path), "TAG": tag,
                                  "BASE_IMAGE": base_image, "TRIES": "1500",
                                  "RACE_SECONDS": "30"})
        assert run.returncode == status, run.stdout[-3000:] + run.stderr[-3000:]
        assert words in run.stdout
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=120)


@pytest.mark.requires_docker
def test_export_observes_the_cell_once_and_says_so(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "export", "wrong-uid",
                          "--profile", "agentsh", "-o", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    record = json.loads((tmp_path / "x" / "outcome.json").read_text())
    observed = record["observed"]
    assert record["expected"] == "defended (kernel)"
    # an `error` under load is a slow lab, not a verdict; a wrong verdict fails
    assert observed["verdict"] in ("defended", "error"), observed
    assert observed["lab_info"]["image_id"].startswith("sha256:")
    readme = (tmp_path / "x" / "README.md").read_text()
    assert f"observed by wraplab at export: **{observed['verdict']}**" in readme
    assert observed["reason"] in readme


def test_export_refuses_what_it_cannot_write(tmp_path):
    out = subprocess.run([sys.executable, "-m", "wraplab.cli", "export", "signal-squat",
                          "--no-run", "-o", str(tmp_path / "x")], capture_output=True,
                         text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "no export recipe for signal-squat" in out.stderr
    assert not (tmp_path / "x").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "f").write_text("x")
    out = export("agentsh", busy)
    assert out.returncode == 2 and "is not empty" in out.stderr
    assert sorted(p.name for p in busy.iterdir()) == ["f"]
