#!/usr/bin/env python3
"""The race-prone cells, repeated while both cores are kept busy: a verdict must not depend
on the machine's load (actors are ordered by barriers, never by sleeps).

Runs every cell of the race-prone scenarios (every profile, socket, placement, transport)
``--repeat`` times in the chosen labs while ``--burners`` busy processes (one per core by
default) spin at full speed; stops them whatever happens; prints, per scenario, the runs,
mismatches and errors, and exits 1 if any cell ever differed from its expectation.

    python3 scripts/stress_races.py [--repeat 20] [--lab docker --lab local] [-j 2]
        [--scenario wrong-uid ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from collections import Counter

from wraplab import engine

RACE_PRONE = ("legacy-no-caller-uid", "wrong-uid", "socket-discovery", "slow-client",
              "deputy-stall", "reconnect-flood")


def burn(stop) -> None:  # a busy loop until told to stop (no sleep: it must take a core)
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--lab", action="append", choices=engine.LABS)
    ap.add_argument("--base", default="bookworm", choices=engine.BASES)
    ap.add_argument("--scenario", action="append", choices=RACE_PRONE)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 2)
    ap.add_argument("-j", "--jobs", type=int, default=engine.runner.auto_jobs(),
                    help="cells at a time (default: the matrix's -j auto)")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    scenarios = [engine.get_scenario(s) for s in (args.scenario or RACE_PRONE)]
    cells = [c for lab in (args.lab or list(engine.LABS))
             for c in engine.make_cells(scenarios, lab=lab, base=args.base)]
    stop = multiprocessing.Event()
    burners = [multiprocessing.Process(target=burn, args=(stop,), daemon=True)
               for _ in range(args.burners)]
    runs: Counter = Counter()
    bad: list[dict] = []
    t0 = time.time()
    print(f"stress: {len(cells)} cells x {args.repeat}, {args.burners} CPU burners, "
          f"{args.jobs} cells at a time", flush=True)
    for p in burners:
        p.start()
    try:
        for rnd in range(1, args.repeat + 1):
            outcomes = engine.run_cells(cells, jobs=args.jobs)
            for o in outcomes:
                runs[o.cell.scenario] += 1
                if not o.ok:
                    bad.append({"round": rnd, "cell": o.cell.name, "verdict": str(o.verdict),
                                "guard": o.guard, "expected": str(o.cell.expectation),
                                "reason": o.reason})
                    print(f"  round {rnd}: MISMATCH {o.cell.name}: {o.verdict} "
                          f"(expected {o.cell.expectation}) - {o.reason}", flush=True)
            print(f"round {rnd}/{args.repeat}: {len(outcomes)} cells, "
                  f"{sum(not o.ok for o in outcomes)} not as expected, "
                  f"{time.time() - t0:.0f} s so far", flush=True)
    finally:
        stop.set()
        for p in burners:
            p.join(5)
            if p.is_alive():
                p.kill()
    errors = sum(1 for b in bad if b["verdict"] == "error")
    for s in scenarios:
        n = sum(1 for b in bad if b["cell"].startswith(s.slug + "["))
        print(f"{s.slug:24} {runs[s.slug]:5} runs, {n} not as expected")
    print(f"total: {sum(runs.values())} runs, {len(bad) - errors} mismatches, {errors} "
          f"errors, {time.time() - t0:.0f} s under {args.burners} burners")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"runs": dict(runs), "bad": bad, "repeat": args.repeat,
                       "burners": args.burners, "seconds": round(time.time() - t0, 1)}, f,
                      indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
