"""Start a lab, say so on stdout (one JSON line), then hold it until a signal arrives.

    python hold_lab.py LAB_NAME [PLACEMENT]

Used by test_cleanup.py to interrupt a harness process that is mid-run.
"""

import json
import signal
import sys
import time

from wraplab.labs import LocalRun, Placement, lab_by_name
from wraplab.targets import wrapref_spec


def main() -> int:
    # Ctrl-C as at a terminal, even when started from a shell that ignores SIGINT for its
    # background jobs (then Python inherits SIG_IGN and would never raise KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name = sys.argv[1]
    placement = Placement(sys.argv[2] if len(sys.argv) > 2 else "root")
    with lab_by_name(name).start(wrapref_spec("agentsh", placement)) as run:
        info = {"run": run.id, "lab": run.lab_name, "server_pid": run.server.pid}
        if isinstance(run, LocalRun):
            info["labdir"] = str(run.labdir)
        else:
            info["container"] = run.container_name
        print(json.dumps(info), flush=True)
        while True:  # held until SIGINT/SIGTERM (which raise KeyboardInterrupt)
            time.sleep(3600)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
