"""A symlink waits where the server's log will be; does root write through it?

docs/hostile-users.md H26 (issue 14, finding 10). The administrator (root) points
``--log-file`` at a path in a directory mallory can write: here one she made first in the
temp base (issue 14 used /tmp itself on a host without ``fs.protected_symlinks``; in a
directory the symlink's owner owns, that sysctl never applies, so the attack does not
depend on the host). Before the server starts, mallory plants ``server.log`` there as a
symlink to a root-owned 0600 file in a root-owned 0700 directory, which she can neither
read nor write. Then root starts a server of this cell's profile with that log file.
Recorded: the symlink as planted (owner, target), whether the server started, what it
said, and the root-owned file's size and content before and after.

Verdict: vulnerable when the root-owned file grew (root appended its log lines through
mallory's symlink: she chose which file root writes); defended when the server refused
to start with its log-file refusal naming the symlink and the file is unchanged; error
when the symlink was not in place, the server neither served nor exited, it started and
the file did not grow, or it refused for another reason (the attack did not happen).

Actors: attacker (mallory); the owner only completes the cast. Placement: root.
Transport: unix. Socket: notify.

Expected:
- hardened: defended (nofollow): ``open(O_NOFOLLOW)`` fails (ELOOP) and ``wrapref serve``
  exits 1 with "cannot open --log-file: refusing log file ...: it is a symlink".
- agentsh, pre-235, permissive, accept-once: vulnerable: ``open(path, "a")`` follows the
  symlink (the reference's plumbing; agentsh's log opening was not read: assumed the
  same, docs/hostile-users.md H26).
"""

import os

from wraplab.engine import DEFENDED, VULNERABLE, file_text, starts_server

SLUG = "log-symlink"
#: It judges from the reference server's own startup log lines ("cannot start", its
#: warnings): a foreign target's cells are reported not run.
NEEDS = ("wrapref",)
ORDER = 259
ACTORS = {"owner": "owner", "attacker": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 5}
EXPECT = {
    "hardened": DEFENDED.by("nofollow"),
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}
ROOTS_LINE = "root's own file: nobody else writes here\n"


def run(ctx):
    tag = os.urandom(4).hex()
    base = ctx.run.temp_base
    secret_dir, adm, logs = f"{base}/root-{tag}", f"{base}/adm-{tag}", f"{base}/logs-{tag}"
    secret, log = f"{secret_dir}/secret", f"{logs}/server.log"
    ctx.run.exec("root", ["sh", "-c", 'mkdir -m 0700 "$1" && mkdir -m 0755 "$2" && '
                          'umask 077 && printf %s "$3" > "$4"', "sh", secret_dir, adm,
                          ROOTS_LINE, secret], timeout=10)
    before = ctx.facts(secret, "root's 0600 file")
    made = ctx.attacker.runs_tool("hostile", "mkdir", "--path", logs)
    plant = ctx.attacker.runs_tool("hostile", "symlink", "--path", log, "--target", secret)
    link = ctx.facts(log, "mallory's symlink")
    ctx.step(ctx.attacker, f"makes {logs} and plants {log} -> {secret}",
             f"directory {made.get('errno') or 'made'}; symlink "
             f"{plant.get('errno') or 'planted'}", errno=plant.get("errno"), detail=plant)
    sysctl = file_text(ctx, "/proc/sys/fs/protected_symlinks").strip()
    srv = starts_server(ctx, "starts a server logging to the path", api_path=f"{adm}/api.sock",
                        temp_base=base, log_file=log)
    if srv["serving"]:  # the start's log lines are written by now
        srv["handle"].kill()
    after = ctx.facts(secret, "root's 0600 file after the start")
    text = file_text(ctx, secret)
    grew = (after.get("size") or 0) - (before.get("size") or 0)
    ctx.metrics.update(protected_symlinks=sysctl, server_started=srv["serving"],
                       exit_code=srv.get("exit_code"), grew_bytes=grew,
                       symlink_uid=link.get("uid"), symlink_target=link.get("target"))
    if link.get("kind") != "symlink" or link.get("uid") != ctx.attacker.uid \
            or link.get("target") != secret or before.get("mode") != 0o600:
        return ctx.error(f"the attack was not set up: symlink {link}, target {before}")
    if grew > 0:
        return ctx.vulnerable(
            f"root appended {grew} bytes to its own 0600 file {secret} through mallory's "
            f"symlink {log} (server started: {srv['serving']}); it now ends "
            f"{text.strip().splitlines()[-1][:120]!r}")
    if srv["serving"]:
        return ctx.error(f"the server started with --log-file {log} but {secret} did not "
                         "grow: the symlink was not the log")
    if srv.get("exit_code") is None:
        return ctx.error("the server neither served nor exited")
    said = srv.get("stderr") or ""
    if "log-file" not in said or "symlink" not in said or log not in said:
        return ctx.error(f"the server exited {srv.get('exit_code')} for another reason: "
                         f"{said!r}")
    if text != ROOTS_LINE:
        return ctx.error(f"{secret} changed without growing: {text!r}")
    return ctx.defended(f"the server refused to start ({said.splitlines()[-1]!r}, exit "
                        f"{srv['exit_code']}); {secret} is unchanged ({after.get('size')} "
                        "bytes)", guard="nofollow")
