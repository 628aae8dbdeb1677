"""Signal a process and all of its descendants (children first found, then signalled).

    python3 -m wraplab.actors.reap [--signal KILL] [--only] PID...

``--only``: signal just the given processes, not their descendants.

Prints ``{"signalled": [pid, ...]}``.
"""

import argparse
import os
import signal

from wraplab.actors._common import children_map, emit


def descendants(pids):
    kids = children_map()
    seen, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(kids.get(pid, ()))
    return seen


def main(argv=None):
    parser = argparse.ArgumentParser(prog="reap", description=__doc__.splitlines()[0])
    parser.add_argument("--signal", default="KILL")
    parser.add_argument("--only", action="store_true", help="not the descendants")
    parser.add_argument("pids", nargs="+", type=int)
    args = parser.parse_args(argv)
    signum = getattr(signal, "SIG" + args.signal.upper().removeprefix("SIG"))
    targets = list(args.pids) if args.only else descendants(args.pids)
    done = []
    for pid in targets:
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, signum)
            done.append(pid)
        except ProcessLookupError:
            pass
    emit({"signalled": done})


if __name__ == "__main__":
    main()
