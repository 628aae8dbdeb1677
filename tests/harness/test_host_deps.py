"""scripts/host-deps.sh on a simulated host: a PATH of fake commands (never a real package
removed). It installs exactly what is missing and says in one line what it could not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from harness_support import REPO

SCRIPT = REPO / "scripts" / "host-deps.sh"
ALL = {"dockerd": "docker.io", "debootstrap": "debootstrap", "setfacl": "acl",
       "setpriv": "util-linux", "make": "make", "chromium": "chromium", "curl": "curl",
       "gcc": "gcc", "file:usr/lib/x86_64-linux-gnu/libatomic.so.1": "libatomic1",
       "file:usr/lib/x86_64-linux-gnu/libc.a": "libc6-dev"}
#: What the tests below take as given unless they say otherwise (the C and browser parts).
TOOLS = {"curl", "gcc", "file:usr/lib/x86_64-linux-gnu/libatomic.so.1",
         "file:usr/lib/x86_64-linux-gnu/libc.a"}


def fake_host(tmp_path: Path, *, have: set[str], uid: int = 0, apt: bool = True,
              refuse: tuple[str, ...] = (), venv: bool = True) -> Path:
    """A bin directory: the commands in ``have`` (``file:PATH``: a file under the fake root
    beside it), a python3 (with or without venv), ``id``, and an apt-get that logs its
    arguments and "installs" a package by making its command or file (except the packages
    in ``refuse``)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    root = tmp_path / "root"

    def script(name: str, body: str) -> None:
        p = bin_ / name
        p.write_text("#!/bin/bash\n" + body + "\n")
        p.chmod(0o755)

    for cmd in have:
        if cmd.startswith("file:"):
            f = root / cmd.removeprefix("file:")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
        else:
            script(cmd, "exit 0")
    script("id", f"echo {uid}")
    script("python3", f"exit {0 if venv else 1}")
    if apt:
        def make(cmd: str) -> str:
            if cmd.startswith("file:"):
                f = root / cmd.removeprefix("file:")
                return f'/bin/mkdir -p "{f.parent}"; echo > "{f}"'
            return f'echo "exit 0" > "$d/{cmd}"; /bin/chmod +x "$d/{cmd}"'

        makes = {pkg: cmd for cmd, pkg in ALL.items()}
        cases = "\n".join(f'    {pkg}) {make(cmd)} ;;'
                          for pkg, cmd in makes.items() if pkg not in refuse)
        refuse_case = "\n".join(f"    {pkg}) fail=1 ;;" for pkg in refuse)
        script("apt-get", f'''d=${{0%/*}}; echo "$*" >> "$d/../apt.log"
[ "$1" = update ] && exit 0
fail=0
for a in "$@"; do case "$a" in
{refuse_case}
    -*|install) ;;
esac; done
[ $fail = 1 ] && exit 100
for a in "$@"; do case "$a" in
{cases}
    python3-venv) printf '#!/bin/bash\\nexit 0\\n' > "$d/python3" ;;
esac; done
exit 0''')
    return bin_


def run(bin_: Path, *args: str):
    return subprocess.run(["/bin/bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={"PATH": str(bin_), "WRAPLAB_APT_LOG": str(bin_.parent / "x.log"),
                               "WRAPLAB_HOST_ROOT": str(bin_.parent / "root") + "/"},
                          timeout=60)


def apt_calls(bin_: Path) -> list[str]:
    log = bin_.parent / "apt.log"
    return log.read_text().splitlines() if log.exists() else []


def test_nothing_missing_installs_nothing(tmp_path):
    bin_ = fake_host(tmp_path, have=set(ALL))
    out = run(bin_)
    assert out.returncode == 0 and "everything is here" in out.stdout
    assert apt_calls(bin_) == []


def test_installs_exactly_what_is_missing(tmp_path):
    bin_ = fake_host(tmp_path, have=TOOLS | {"dockerd", "setpriv", "make", "chromium"},
                     venv=False)
    assert run(bin_, "--check").returncode == 1
    out = run(bin_)
    assert out.returncode == 0, out.stdout + out.stderr
    calls = apt_calls(bin_)
    assert calls[0].startswith("update")
    installed = calls[1].split()
    assert set(installed) - {"install", "-y", "-qq", "--no-install-recommends"} == \
        {"debootstrap", "acl", "python3-venv"}
    assert run(bin_).stdout.startswith("host-deps: everything is here")


def test_what_cannot_be_had_is_one_sentence_each(tmp_path):
    bin_ = fake_host(tmp_path, have=TOOLS | {"dockerd", "setfacl", "setpriv", "make",
                                             "chromium"}, refuse=("debootstrap",))
    out = run(bin_)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert lines == [line for line in lines if line.startswith("host-deps: could not install")]
    assert len(lines) == 1 and "apt-get install debootstrap" in lines[0]


def test_one_refused_package_does_not_keep_the_others_out(tmp_path):
    bin_ = fake_host(tmp_path, have=TOOLS | {"setpriv", "make"}, refuse=("docker.io",))
    out = run(bin_)
    assert out.returncode == 1
    assert (bin_ / "debootstrap").exists() and (bin_ / "setfacl").exists()
    assert "could not install docker.io" in out.stderr


@pytest.mark.parametrize("uid,apt,words", [
    (1000, True, "needs root: run `sudo scripts/host-deps.sh`"),
    (0, False, "no apt-get"),
])
def test_no_root_or_no_apt_is_said_and_changes_nothing(tmp_path, uid, apt, words):
    bin_ = fake_host(tmp_path, have=TOOLS | {"dockerd", "setfacl", "setpriv", "make",
                                             "chromium"}, uid=uid, apt=apt)
    out = run(bin_)
    assert out.returncode == 1
    assert words in out.stderr and "debootstrap" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert apt_calls(bin_) == [] and not (bin_ / "debootstrap").exists()


def test_the_c_and_browser_parts_of_a_fresh_debian(tmp_path):
    """What a fresh Debian lacked in scripts/fresh_machine.sh: libatomic1 (playwright's
    node driver), curl, gcc and libc6-dev (the static C test server)."""
    bin_ = fake_host(tmp_path, have=set(ALL) - TOOLS)
    assert "missing libatomic1" in run(bin_, "--check").stdout
    out = run(bin_)
    assert out.returncode == 0, out.stdout + out.stderr
    installed = set(apt_calls(bin_)[1].split()) - {"install", "-y", "-qq",
                                                   "--no-install-recommends"}
    assert installed == {"libatomic1", "curl", "gcc", "libc6-dev"}
    assert (tmp_path / "root/usr/lib/x86_64-linux-gnu/libatomic.so.1").exists()


def test_bad_usage():
    out = subprocess.run(["/bin/bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr
