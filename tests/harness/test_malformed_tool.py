"""The malformed-handoff actor (``wraplab.actors.malformed``) ends the stand-in wrapper
child it forks for a notify case also when the connect fails (EACCES/ENOENT): the child
holds the tool's stdout, so a child left alive kept the actor "running" for its whole
30 s sleep (seen: every pre-235 notify cell took 30 s)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, os
from wraplab.actors.malformed import do_case
out = do_case("notify", "fds0", "/nonexistent/wraplab/notify.sock", 1.0)
try:
    left = os.waitpid(-1, os.WNOHANG)[0]  # 0: a child of ours still runs
except ChildProcessError:
    left = None
print(json.dumps({"result": out.get("result"), "child_left": left}))
"""


def test_a_failed_connect_leaves_no_wrapper_child_behind():
    res = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=60, check=True)
    out = json.loads(res.stdout)
    assert out == {"result": "ENOENT", "child_left": None}, (out, res.stderr)
