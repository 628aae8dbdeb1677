"""The administrator starts the server under an unusual umask; what do its files become?

docs/hostile-users.md H24 (issue 14, finding 8). The modes of what a server creates are
``mode & ~umask`` unless it sets them explicitly, and the umask is the administrator's
(a shell profile, a service manager). The administrator (root) starts two more servers
of this cell's profile, each on a fresh log file and a fresh API directory inside a
root-owned 0755 directory (as /var/log and /run are):

1. under umask 000: mallory (another local user) appends a forged JSON line to the new
   log file;
2. under umask 077: alice wraps through the new server's API.

The server's umask is read from /proc (the scenario checks that it is the one asked for).
Recorded: the modes of the log file and the API directory, mallory's append, alice's
wrap, and whether each server reported the unusual umask in its log.

Verdict: vulnerable when mallory's forged line landed in the log (0666 under umask 000)
or when alice could not reach the API under umask 077 (directory 0700: nobody but root
can wrap, and nothing says why); defended when the kernel refused mallory's append
(EACCES: the log is 0640 whatever the umask), alice's wrap worked (the API directory is
0755) and both servers logged ``unusual umask``; error when a server did not start or
did not run under the umask asked for, or mallory's append failed for another reason
than the mode (the attack did not happen).

Actors: owner (alice), attacker (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended (explicit-modes).
- agentsh, pre-235, permissive, accept-once: vulnerable: the log is opened with the
  umask's mode (0666) and the API directory made with 0755 & ~umask (0700) (the
  reference's own plumbing; agentsh's was not read: assumed the same,
  docs/hostile-users.md H24).
"""

import json
import os

from wraplab.engine import DEFENDED, VULNERABLE, file_text, log_lines, server_state, starts_server

SLUG = "server-umask"
#: It judges from the reference server's own startup log lines ("cannot start", its
#: warnings): a foreign target's cells are reported not run.
NEEDS = ("wrapref",)
ORDER = 258
ACTORS = {"owner": "owner", "attacker": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": DEFENDED.by("explicit-modes"),
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def under_umask(ctx, adm: str, name: str, umask: int) -> dict:
    """Start a server under ``umask`` with its log ``{adm}/{name}.log`` and its API in
    ``{adm}/{name}/`` (neither exists yet); what its files became."""
    srv = starts_server(ctx, f"starts a server under umask {umask:03o}",
                        api_path=f"{adm}/{name}/api.sock", temp_base=ctx.run.temp_base,
                        log_file=f"{adm}/{name}.log", umask=umask)
    if srv["serving"]:
        srv["umask"] = server_state(ctx, pid=srv["pid"]).get("umask")
        srv["log"] = ctx.facts(f"{adm}/{name}.log", f"log under umask {umask:03o}")
        srv["api_dir"] = ctx.facts(f"{adm}/{name}", f"API directory under umask {umask:03o}")
    return srv


def warned(ctx, path: str) -> bool:
    return any(line.get("msg", "").startswith("unusual umask")
               for line in log_lines(file_text(ctx, path)))


def run(ctx):
    adm = f"{ctx.run.temp_base}/adm-{os.urandom(4).hex()}"
    ctx.run.exec("root", ["mkdir", "-m", "0755", adm], timeout=10)
    open_srv = under_umask(ctx, adm, "open", 0o000)
    if not open_srv["serving"]:
        return ctx.error(f"the server did not start under umask 000: {open_srv.get('stderr')}")
    if open_srv["umask"] != "0000":
        return ctx.error(f"the server runs under umask {open_srv['umask']}, not 0000")
    forged = json.dumps({"level": "info", "msg": "session created", "owner": ctx.owner.uid,
                         "forged_by": ctx.attacker.uid})
    log = f"{adm}/open.log"
    app = ctx.attacker.runs_tool("hostile", "append", "--path", log, "--line", forged)
    landed = forged in file_text(ctx, log)
    ctx.step(ctx.attacker, f"appends a forged line to {log} "
             f"(mode {open_srv['log'].get('mode', 0):04o})",
             f"{app.get('appended')} bytes" if app.get("appended") else app.get("errno", ""),
             errno=app.get("errno"), detail=app)
    open_srv["handle"].kill()

    closed_srv = under_umask(ctx, adm, "closed", 0o077)
    if not closed_srv["serving"]:
        return ctx.error(f"the server did not start under umask 077: "
                         f"{closed_srv.get('stderr')}")
    if closed_srv["umask"] != "0077":
        return ctx.error(f"the server runs under umask {closed_srv['umask']}, not 0077")
    client = ctx.target.client(f"unix:{adm}/closed/api.sock", timeout=ctx.client_budget)
    res = ctx.run.exec(ctx.owner.user_role, client, timeout=ctx.client_budget + 60)
    wrap = ctx.owner.wrap_done(res, res.started, client)
    closed_srv["handle"].kill()
    warnings = {"000": warned(ctx, log), "077": warned(ctx, f"{adm}/closed.log")}
    api_mode = closed_srv["api_dir"].get("mode") or 0
    ctx.metrics.update(log_mode=f"{open_srv['log'].get('mode') or 0:04o}",
                       api_dir_mode=f"{api_mode:04o}", forged_line=landed,
                       append=app.get("errno") or app.get("appended"), owner_wrap=wrap.ok,
                       owner_errno=wrap.errno, warned=warnings)
    weak = []
    if landed:
        weak.append(f"under umask 000 the log is {open_srv['log'].get('mode', 0):04o} and "
                    f"mallory appended a forged line ({app.get('appended')} bytes)")
    if not wrap.ok and wrap.errno == "EACCES":
        weak.append(f"under umask 077 the API directory is {api_mode:04o} and alice's wrap "
                    f"{wrap.failure()}")
    if weak:
        said = [k for k, v in warnings.items() if v]
        return ctx.vulnerable("; ".join(weak) + ("; the server warned under umask "
                                                 + ", ".join(said) if said
                                                 else "; no warning in either log"))
    if app.get("errno") != "EACCES":
        return ctx.error(f"mallory's append neither landed nor met the file's mode: {app}")
    if not wrap.ok:
        return ctx.broken(f"alice's wrap under umask 077 {wrap.failure()}")
    if not all(warnings.values()):
        return ctx.error(f"modes were explicit but the unusual umask was not reported in "
                         f"every log: {warnings}")
    return ctx.defended(
        f"under umask 000 the log is {open_srv['log'].get('mode', 0):04o} and the kernel "
        f"refused mallory's append (EACCES); under umask 077 the API directory is "
        f"{api_mode:04o} and alice's wrap worked; both servers logged the unusual umask",
        guard="explicit-modes")
