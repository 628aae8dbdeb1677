"""What a cell's outcome records about its lab beyond the scenario's steps: every process the
lab ran (argv, uid, exit code, output tails, start and end), where the lab was (image,
container or directory), and a run kept running after the cell (``wraplab run --keep``)."""

from __future__ import annotations

import contextlib

__all__ = ["kept_or_closed", "process_records", "run_info", "TAIL"]


@contextlib.contextmanager
def kept_or_closed(run, keep: bool):
    """The run, closed at the end as usual; with ``keep`` left running once the cell ran
    (only a failure before the scenario's end still closes it)."""
    try:
        yield run
    except BaseException:
        run.close()
        raise
    if keep:
        from wraplab.labs import cleanup

        cleanup.unregister(run)  # no close at exit; `wraplab clean` removes it
    else:
        run.close()


#: How much of each process's stdout and stderr the outcome keeps (the end of it).
TAIL = 2000


def _tail(text: str, limit: int = TAIL) -> str:
    return text if len(text) <= limit else f"[{len(text) - limit} chars cut]..." + text[-limit:]


def process_records(transcript) -> list[dict]:
    """The lab's record of every process it ran (``run.transcript``): what ran as whom,
    its exit code, the tails of its output, when it started and ended (epoch seconds)."""
    out = []
    for e in transcript:
        out.append({
            "action": e.action, "actor": e.actor, "user": e.user, "uid": e.uid,
            "argv": list(e.argv), "exit_code": e.exit_code, "start": e.started,
            "end": None if e.duration is None else e.started + e.duration,
            "stdout_tail": _tail(e.stdout or ""), "stderr_tail": _tail(e.stderr or ""),
            "note": e.note})
    return out


def run_info(run, kept: bool = False) -> dict:
    """Where the cell ran: the lab, its image (tag and id), the container or directory."""
    info: dict = {"lab": run.lab_name, "base": run.base, "run_id": run.id, "kept": kept,
                  "server_argv": list(run.server.argv) if run.server else [],
                  "api": run.api, "temp_base": run.temp_base}
    image = getattr(run, "image", None)
    if image is not None:
        info.update(image=image.tag, image_id=image.id)
    if getattr(run, "container_name", None):
        info["container"] = run.container_name
        info["container_reused"] = bool(getattr(run, "container_reused", False))
        peer = getattr(run, "peer", None)
        if peer is not None:
            info["peer_container"] = peer.name
        info["volumes"] = list(getattr(run, "volumes", []))
    if getattr(run, "labdir", None):
        info["dir"] = str(run.labdir)
    return info
