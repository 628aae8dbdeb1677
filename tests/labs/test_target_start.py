"""Labs start what a target describes: files installed into ``{target_dir}``, readiness by
socket or command, and a clear error quoting the server's last log lines (and output) when
it exits or never gets ready -- with nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import lab_param
from wraplab.labs import DockerLab, LabError, LocalLab, Readiness, ServerSpec, cleanup, lab_by_name
from wraplab.target_files import load

BLACKBOX = Path(__file__).resolve().parents[1] / "targets" / "wrapref-blackbox" / "target.toml"

LABS = [lab_param("docker-bookworm"), lab_param("local")]


@pytest.mark.parametrize("lab", LABS)
def test_installed_files_run_and_the_socket_says_ready(start_lab, lab):
    target = load(BLACKBOX)
    run = start_lab(lab, target.server_spec(socket="signal", lab=lab))
    script = run.stat(f"{run.target_dir}/serve.sh")
    assert (script.kind, script.uid, script.mode) == ("file", 0, 0o755), script
    assert run.server.poll() is None
    assert any(e.note.startswith("installed serve.sh into") for e in run.transcript)
    ready = [e for e in run.transcript if e.action == "server-ready"]
    assert ready and "socket readiness" in ready[0].note
    assert ready[0].argv[0] == f"{run.target_dir}/serve.sh"
    done = run.exec("owner", ["wrapref", "wrap", "--api", run.api], timeout=60)
    assert done.ok and done.json()["ok"], done.describe() + done.stderr


def _lab(name: str, tmp_path):
    return LocalLab(base_dir=tmp_path) if name == "local" else lab_by_name(name)


def _left(base: Path) -> list[Path]:
    """What a local lab left in its base: the ``lib`` tree this process's labs share
    stays until the process ends (``local.shared_lib``)."""
    return [p for p in base.iterdir() if not p.name.startswith(cleanup.LOCAL_LIB_PREFIX)]


@pytest.mark.parametrize("lab", LABS)
def test_a_server_that_exits_is_said_with_its_log_and_output(lab, tmp_path):
    spec = ServerSpec(argv=("sh", "-c", "echo starting up >> {log_file}; "
                            "echo no config file >&2; exit 3"),
                      ready=Readiness("socket", "{api_path}", 20), name="quitter")
    with pytest.raises(LabError) as err:
        _lab(lab, tmp_path).start(spec)
    text = str(err.value)
    assert "the server exited before it was ready" in text and "exit 3" in text, text
    assert "starting up" in text and "no config file" in text, text
    if lab == "local":
        assert not _left(tmp_path), "the local lab left its directory"


@pytest.mark.parametrize("lab", LABS)
def test_a_server_never_ready_is_said_at_the_deadline(lab, tmp_path):
    spec = ServerSpec(argv=("sh", "-c", "echo waiting for nothing >> {log_file}; "
                            "exec sleep 60"),
                      ready=Readiness("command", ("test", "-e", "{target_dir}/flag"), 2),
                      name="sleeper")
    with pytest.raises(LabError) as err:
        _lab(lab, tmp_path).start(spec)
    text = str(err.value)
    assert "the server was not ready after 2 s (command readiness" in text, text
    assert "test -e" in text and "waiting for nothing" in text, text
    if lab == "local":
        assert not _left(tmp_path), "the local lab left its directory"


IMAGED = ServerSpec(argv=("srv",), image="wraplab-test/no-such-image:1", name="imaged")


def test_an_image_target_is_refused_by_the_local_lab():
    with pytest.raises(LabError, match="the local lab runs no images"):
        LocalLab()._new_run(IMAGED)


@pytest.mark.requires_docker
def test_a_missing_image_is_said_before_any_container():
    with pytest.raises(LabError, match="no-such-image:1 of imaged is not here: build it FROM"):
        DockerLab("bookworm")._new_run(IMAGED)
