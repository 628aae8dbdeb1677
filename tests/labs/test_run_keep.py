"""``wraplab run --keep``: the lab outlives the command with its server running, says how to
enter and remove it, is left alone by the automatic sweep of later starts, and is removed
by what ``wraplab clean`` runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import docker
import pytest
from wraplab.labs import cleanup, dockerexec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.requires_docker
def test_keep_leaves_the_lab_running_until_clean():
    out = subprocess.run(
        [sys.executable, "-m", "wraplab.cli", "run", "wrong-uid", "--lab", "docker", "--keep"],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=dict(os.environ))
    m = re.search(r"docker exec -it (wraplab-\S+) bash", out.stderr)
    assert out.returncode == 0 and m, out.stdout + out.stderr
    name = m.group(1)
    assert f"docker exec -it -u alice {name} bash" in out.stderr
    assert f"docker rm -f -v {name}" in out.stderr and "wraplab clean" in out.stderr
    client = docker.from_env()
    try:
        box = client.containers.get(name)
        try:
            assert box.status == "running"
            assert box.labels.get(cleanup.LABEL_KEEP) == "1"
            # the wraplab process that made it is gone, and the server still answers
            assert not cleanup.owner_alive(box.labels[cleanup.LABEL_OWNER_PID],
                                           box.labels[cleanup.LABEL_OWNER_STARTED])
            code, body, _err = dockerexec.run(
                client.api, box.id, ["python3", "-m", "wraplab.actors.api", "GET", "/healthz",
                                     "--api", "unix:/run/wrapref/api.sock"], user="alice")
            assert code == 0 and b'"ok": true' in body, body
            # a later start's sweep leaves it ...
            cleanup.sweep_stale_containers(client)
            box.reload()
            assert box.status == "running"
            # ... `wraplab clean` (kept=True) removes it
            removed = cleanup.sweep_stale_containers(client, kept=True)

            def gone() -> bool:  # a removal the daemon finishes after a client timeout
                try:
                    client.containers.get(name)
                except docker.errors.NotFound:
                    return True
                return False

            assert cleanup.wait_for(gone, 60, 0.5, f"{name} removed"), removed
        finally:
            try:
                box.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
    finally:
        client.close()
