"""The administrator puts the API socket in a directory mallory made first.

docs/hostile-users.md H18 and H19 (issue 14, finding 3). Mallory creates a directory in
the world-writable temp base (``$TMP/wrapapi-<id>``). An administrator then starts a
second server with ``--api unix:<that dir>/api.sock`` (root, this cell's profile, its
own root-made temp base). Mallory owns the directory, so she can move the server's API
socket aside and put her own fake API there, whose wrap-init names a notify socket of
hers. Alice's client then wraps through that path. Recorded: whether the server started,
what alice's client said, and whether alice's token reached mallory.

Alice's client is the cell's target's: ``--server-uid any`` (agentsh's client checks
nothing) on the agentsh-family profiles, the ``auto`` check on hardened.

Verdict: vulnerable when alice's token reached mallory; defended when the server refused
to start in the untrusted directory (H18) *and* alice's client refused the fake API
(H19), so no token left alice; error when mallory's fake API never got a request.

Actors: owner (alice), intruder (mallory). Placement: root. Transport: unix. Socket:
notify.

Expected:
- hardened: defended (both guards: the server exits 1 "refusing API socket directory";
  alice's client finds the API served by mallory's uid and stops with EPERM).
- agentsh, pre-235, permissive, accept-once: vulnerable: the server starts, mallory's
  fake API takes alice's fd and token (agentsh's API directory handling was not read:
  assumed unchecked; its client is known not to check the peer).
"""

import os
import time

from wraplab.engine import DEFENDED, VULNERABLE

SLUG = "untrusted-api-dir"
#: It starts the reference server itself (in an API directory it hands to mallory): a
#: foreign target's cells are reported not run.
NEEDS = ("wrapref",)
ORDER = 248
ACTORS = {"owner": "owner", "intruder": "attacker"}
SOCKETS = ("notify",)
PLACEMENTS = ("root",)
TRANSPORTS = ("unix",)
SERVER = {"accept_window": 4}
EXPECT = {
    "hardened": DEFENDED,
    "agentsh": VULNERABLE,
    "pre-235": VULNERABLE,
    "permissive": VULNERABLE,
    "accept-once": VULNERABLE,
}


def run(ctx):
    tag = os.urandom(4).hex()
    base = ctx.run.temp_base
    api_dir = f"{base}/wrapapi-{tag}"
    temp2 = f"{base}/srv2-{tag}"
    made = ctx.run.tool("hostile", ["mkdir", "--path", api_dir], as_user=ctx.intruder.user_role)
    ctx.step(ctx.intruder, f"creates {api_dir} before the server starts", str(made))
    ctx.run.exec("root", ["mkdir", "-m", "0755", temp2], timeout=10)
    argv = ["wrapref", "serve", "--profile", ctx.profile, "--api", f"unix:{api_dir}/api.sock",
            "--temp-base", temp2, "--log-file", f"{temp2}.log", "--accept-window", "5"]
    server = ctx.run.spawn("root", argv)
    fake = None
    try:
        up = ctx.waits_until("the second server is serving or has exited",
                             lambda: (not server.running) or "api.sock" in ctx.run.listdir(api_dir),
                             time.time() + 15, pause=0.2)
        started = server.running
        res = None if started else server.wait(5)
        ctx.step("root", f"starts {' '.join(argv)}",
                 "serving" if started else f"exit {res.exit_code if res else '?'}: "
                 f"{(res.stderr if res else '')[-300:].strip()}")
        fake = ctx.run.spawn(ctx.intruder.user_role,
                             ["python3", "-m", "wraplab.actors.hostile", "fake-api", "--dir",
                              api_dir, "--seconds", "8"])
        ctx.waits_until("mallory's fake API is listening",
                        lambda: "notify-fake.sock" in ctx.run.listdir(api_dir),
                        time.time() + 10, pause=0.1)
        client = ctx.target.client(f"unix:{api_dir}/api.sock", timeout=4)
        r = ctx.run.exec(ctx.owner.user_role, client, timeout=30)
        wrap = r.json() if r.stdout.strip() else {}
        ctx.step(ctx.owner, f"wraps via unix:{api_dir}/api.sock ({' '.join(client[2:])})",
                 "ok" if wrap.get("ok") else f"failed at {wrap.get('step')} "
                 f"({wrap.get('errno') or wrap.get('error')})", detail=wrap)
        # alice's client has ended: whatever it sent has arrived (a handoff waits for
        # the fake's status byte), so mallory may stop serving now, not at her 8 s bound
        got = fake.wait_or_end(time.time(), 15).json()
        ctx.step(ctx.intruder, "serves the fake API and notify socket",
                 f"{got.get('requests')} API requests, {got.get('handoffs')} handoffs, "
                 f"token {got.get('token')!r}", detail=got)
    finally:
        if fake is not None:
            fake.kill()
        server.kill()
    ctx.metrics.update(server_started=started, client=wrap.get("step"),
                       client_errno=wrap.get("errno"), fake=got)
    if not up:
        return ctx.error("the second server neither served nor exited")
    if got.get("token") and got["token"] == wrap.get("token"):
        return ctx.vulnerable(f"alice's token reached mallory's fake API in {api_dir} "
                              f"(server started: {started}; alice's client said ok: "
                              f"{wrap.get('ok')})")
    if started:
        return ctx.error(f"the server started in mallory's directory but no token moved: "
                         f"{got}, client {wrap.get('step')}")
    if wrap.get("errno") != "EPERM" or got.get("requests"):
        return ctx.error(f"alice's client did not refuse the fake API: {wrap}; {got}")
    return ctx.defended("the server refused to start in mallory's directory and alice's "
                        "client refused the API served by mallory's uid (EPERM, nothing sent)",
                        guard="startup path check + client peer check")
