"""A caller fills its own wrap directory with a 1,200-deep tree: does cleanup survive it?

docs/hostile-users.md H14 (issue 14, finding 1). A wrap-init caller owns its wrap
directory (the chown path) and can put anything in it. Mallory does her own wrap-init,
never dials, and makes 1,200 nested directories in the directory she was handed. When
the window ends the server must remove all of it and release the wrap's slot: the review
found ``shutil.rmtree`` raising RecursionError, the slot never released (after ~1,025
rounds every wrap-init got 503 until a restart) and the directories surviving SIGTERM.
The harness waits until the server's fds, threads and wrap directories are back to their
baseline, then alice wraps.

Verdict: vulnerable when anything is left after the window (directories, fds, threads);
broken when alice's wrap then fails; defended when the tree was made and everything
went (guard: bounded cleanup), or when the kernel refused the tree (guard: kernel).

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
notify. Window 1.5 s (the tree takes well under 0.1 s; the window is what is waited for).

Expected:
- hardened, agentsh, accept-once: defended by the cleanup (H14: fd-relative, iterative,
  bounded; the slot released in any case). agentsh is *known* not to share the weakness
  (Go's os.RemoveAll is fd-relative with no recursion limit), so no profile is
  vulnerable here; tests/unit/test_hostile.py shows hardened failing with
  ``robust_cleanup`` off.
- permissive: defended by the kernel: the directory is root's 0711, so mallory cannot
  create anything in it.
- pre-235: broken: the same kernel refusal, but alice's own wrap fails too (root's 0700
  directory), as in every pre-235 cell.
"""

import time

from wraplab.engine import BROKEN, DEFENDED, back_to_baseline, same_state, server_state

SLUG = "deep-wrap-dir"
ORDER = 235
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
WINDOW = 1.5
DEPTH = 1200
SERVER = {"accept_window": WINDOW}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": DEFENDED,
    "pre-235": BROKEN,
    "permissive": DEFENDED,
    "accept-once": DEFENDED,
}


def run(ctx):
    base = server_state(ctx)
    t0 = time.time()
    tree = ctx.run.exec(ctx.intruder.user_role,
                        ["python3", "-m", "wraplab.actors.hostile", "deep-tree", "--api",
                         ctx.api, "--depth", str(DEPTH)], timeout=60).json()
    ctx.step(ctx.intruder, f"wrap-init of her own, then {DEPTH} nested directories in it",
             f"wrap-init HTTP {tree.get('wrap_init')}; made {tree.get('made')}"
             + (f" ({tree['errno']})" if tree.get("errno") else ""), t=t0, detail=tree)
    if tree.get("wrap_init") != 200:
        return ctx.error(f"mallory's wrap-init failed: HTTP {tree.get('wrap_init')}")
    peak = server_state(ctx)
    after = back_to_baseline(ctx, base, WINDOW + 15)
    ctx.metrics.update(made=tree.get("made"), baseline=base, peak=peak, after=after)
    if not same_state(after, base):
        return ctx.vulnerable(f"after the window: {after} (baseline {base}): the tree "
                              f"({tree.get('made')} levels) defeated cleanup")
    wrap = ctx.owner.wraps()
    if not wrap.ok:
        return ctx.broken(f"alice's wrap failed after the cleanup: {wrap.failure()}")
    if not tree.get("made"):
        return ctx.defended(f"mallory could not create in her wrap directory "
                            f"({tree.get('errno')}); alice's wrap worked", guard="kernel")
    return ctx.defended(f"{tree['made']} nested directories removed with the wrap; server "
                        f"back to {after}; alice's wrap worked", guard="bounded cleanup")
