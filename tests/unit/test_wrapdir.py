"""wrapdir: the secure directory/socket helpers of every layout, validation, budget, ACLs.

Covers what agentsh's api/wrap_test.go checks (SecureNotifyDir_*, SecureSocket_*,
NotifyDirPermissions_*, LongTMPDIR_LongSessionID, BudgetExhausted) plus owners,
file types and ACLs, which agentsh never asserts.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess

import pytest
from wrapref import wrapdir as wd
from wrapref.profiles import PROFILES

from .helpers import OWNER_UID, need_root, require

AGENTSH = PROFILES["agentsh"]
HARDENED = PROFILES["hardened"]


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def owner(path) -> int:
    return os.lstat(path).st_uid


def make(base, profile, uid, cls=wd.WrapDir, session="sess-1", kinds=("notify",)):
    d = cls(base, session, profile, uid, backlog=8)
    try:
        d.create_dir()
        for kind in kinds:
            d.add_socket(kind)
        d.finish()
    except BaseException:
        d.remove()
        raise
    return d


@pytest.fixture
def base(base_dir):
    path = os.path.join(base_dir, "t")
    os.mkdir(path)
    os.chmod(path, 0o755)
    yield path
    assert os.listdir(path) == [], "wrap directory left behind"


# ------------------------------------------------------------------ agentsh order


def test_agentsh_chown_success(base):
    need_root()
    d = make(base, AGENTSH, OWNER_UID, kinds=("notify", "signal"))
    try:
        assert d.fs_isolation == "chown" and d.chown_ok
        assert (mode(d.path), owner(d.path), os.lstat(d.path).st_gid) == (0o700, OWNER_UID, 0)
        for path in d.sockets.values():
            assert stat.S_ISSOCK(os.lstat(path).st_mode)
            assert (mode(path), owner(path)) == (0o600, OWNER_UID)
        assert os.path.dirname(d.sockets["signal"]) == d.path  # same directory
    finally:
        d.remove()


@pytest.mark.parametrize("uid", [0, None])
def test_agentsh_legacy_fallback(base, uid):
    d = make(base, AGENTSH, uid, kinds=("ptrace",))
    try:
        assert d.fs_isolation == "none" and not d.chown_ok
        assert (mode(d.path), owner(d.path)) == (0o711, os.geteuid())
        assert (mode(d.sockets["ptrace"]), owner(d.sockets["ptrace"])) == (0o666, os.geteuid())
    finally:
        d.remove()


class NoChown(wd.WrapDir):
    def chown(self, path, uid):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def lchown(self, path, uid):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    def fchown_dir(self, uid):
        raise PermissionError(errno.EPERM, "Operation not permitted")


def test_agentsh_chown_eperm_falls_back(base):
    d = make(base, AGENTSH, OWNER_UID, cls=NoChown)
    try:
        assert (mode(d.path), mode(d.sockets["notify"])) == (0o711, 0o666)
        assert owner(d.sockets["notify"]) == os.geteuid()
        assert d.fs_isolation == "none"
    finally:
        d.remove()


class SocketChownFails(wd.WrapDir):
    def chown(self, path, uid):
        if path.endswith(".sock"):
            raise PermissionError(errno.EPERM, "Operation not permitted")
        os.chown(path, uid, -1)


def test_agentsh_socket_chown_failure_fails_validation(base):
    need_root()
    with pytest.raises(wd.ValidationError) as info:
        make(base, AGENTSH, OWNER_UID, cls=SocketChownFails)
    assert "notify socket permissions not established" in str(info.value)
    assert "got 0666 want 0600" in str(info.value)


class ChmodStubbed(wd.WrapDir):
    def chmod(self, path, mode_):
        pass


def test_agentsh_validation_failure_when_chmod_stubbed(base):
    old = os.umask(0o022)
    try:
        with pytest.raises(wd.ValidationError) as info:
            make(base, AGENTSH, 0, cls=ChmodStubbed)
    finally:
        os.umask(old)
    assert "directory permissions not established" in str(info.value)
    assert "got 0700 want 0711" in str(info.value)


@pytest.mark.parametrize("uid,want_owner", [(2**32, 0), (2**32 + OWNER_UID, OWNER_UID),
                                            (0xFFFFFFFF, 0)])
def test_agentsh_uid_truncates_to_32_bits(base, uid, want_owner):
    # G6: chown takes a uint32; (uid_t)-1 means "no change" and still passes B10.
    need_root()
    d = make(base, AGENTSH, uid)
    try:
        assert d.chown_ok and d.fs_isolation == "chown"
        assert (mode(d.path), owner(d.path)) == (0o700, want_owner)
        assert owner(d.sockets["notify"]) == want_owner
    finally:
        d.remove()


def test_pre235_and_permissive_layouts(base):
    d = make(base, PROFILES["pre-235"], OWNER_UID)
    try:
        assert (mode(d.path), owner(d.path), d.fs_isolation) == (0o700, os.geteuid(), "same-uid")
    finally:
        d.remove()
    d = make(base, PROFILES["permissive"], OWNER_UID)
    try:
        assert (mode(d.path), mode(d.sockets["notify"]), d.fs_isolation) == (0o711, 0o666, "none")
        assert owner(d.path) == os.geteuid()
    finally:
        d.remove()


# ----------------------------------------------------------------- hardened order


def test_hardened_chown(base):
    need_root()
    d = make(base, HARDENED, OWNER_UID, kinds=("notify", "signal"))
    try:
        assert d.fs_isolation == "chown"
        assert (mode(d.path), owner(d.path)) == (0o700, OWNER_UID)
        for path in d.sockets.values():
            assert (mode(path), owner(path)) == (0o600, OWNER_UID)
            assert wd.get_acl(path) is None
    finally:
        d.remove()


def test_hardened_same_uid(base):
    d = make(base, HARDENED, os.geteuid())
    try:
        assert d.fs_isolation == "same-uid"
        assert (mode(d.path), owner(d.path)) == (0o700, os.geteuid())
        assert (mode(d.sockets["notify"]), owner(d.sockets["notify"])) == (0o600, os.geteuid())
    finally:
        d.remove()


def test_hardened_acl_when_chown_impossible(base):
    d = make(base, HARDENED, OWNER_UID, cls=NoChown, kinds=("notify", "signal"))
    try:
        assert d.fs_isolation == "acl"
        assert (mode(d.path), owner(d.path)) == (0o710, os.geteuid())
        assert sorted(wd.get_acl(d.path)) == sorted(wd.acl_grant(OWNER_UID, 0o1, 0o7))
        for path in d.sockets.values():
            assert (mode(path), owner(path)) == (0o660, os.geteuid())
            assert (wd.ACL_USER, 0o6, OWNER_UID) in wd.get_acl(path)
        if shutil.which("getfacl"):
            out = subprocess.run(["getfacl", "-n", "-p", d.path], capture_output=True,
                                 text=True, check=True).stdout
            assert f"user:{OWNER_UID}:--x" in out and "other::---" in out
    finally:
        d.remove()


class NoChownNoAcl(NoChown):
    def set_acl(self, target, entries):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")


def test_hardened_falls_back_only_without_acl_support(base):
    d = make(base, HARDENED, OWNER_UID, cls=NoChownNoAcl)
    try:
        assert d.fs_isolation == "none"
        assert (mode(d.path), mode(d.sockets["notify"])) == (0o711, 0o666)
    finally:
        d.remove()


def test_hardened_legacy_tcp_caller_is_open(base):
    d = make(base, HARDENED, None)
    try:
        assert (d.fs_isolation, mode(d.path), mode(d.sockets["notify"])) == ("none", 0o711, 0o666)
    finally:
        d.remove()


def test_hardened_sockets_are_0600_from_bind(base):
    # E3: fchmod before bind -> the socket file never exists with a wider mode.
    seen = []

    class Spy(wd.WrapDir):
        def bind(self, path):
            sock = super().bind(path)
            seen.append(mode(path))
            return sock

    old = os.umask(0)
    try:
        d = make(base, HARDENED, os.geteuid(), cls=Spy)
    finally:
        os.umask(old)
    d.remove()
    assert seen == [0o600]


@pytest.mark.parametrize("tamper", ["chmod", "chown", "symlink", "acl"])
def test_hardened_strict_validation_catches_tampering(base, tamper):
    need_root()
    d = make(base, HARDENED, OWNER_UID)
    try:
        path = d.sockets["notify"]
        if tamper == "chmod":
            os.chmod(path, 0o666)
        elif tamper == "chown":
            os.lchown(path, 0, -1)
        elif tamper == "symlink":
            os.unlink(path)
            os.symlink("/etc/hostname", path)
            os.lchown(path, OWNER_UID, -1)
        else:
            wd.set_acl(path, wd.acl_grant(4242, 0o6, 0o6))
            os.chmod(path, 0o600)
        with pytest.raises(wd.ValidationError):
            d.validate_strict()
    finally:
        d.remove()


def test_hardened_remove_does_not_follow_a_replaced_directory(base, base_dir):
    need_root()
    d = make(base, HARDENED, OWNER_UID)
    moved = os.path.join(base_dir, "moved")
    victim = os.path.join(base_dir, "victim")
    os.mkdir(victim)
    open(os.path.join(victim, "keep"), "w").close()
    os.rename(d.path, moved)  # what the owner of the directory could do
    os.symlink(victim, d.path)
    try:
        d.remove()
        assert os.path.exists(os.path.join(victim, "keep"))
    finally:
        os.unlink(d.path)
        shutil.rmtree(moved)


# ----------------------------------------------------------------------- budget


def test_socket_id_short_unchanged():
    assert wd.socket_id("/tmp/wrap-abc", "sess-1") == "sess-1"


@pytest.mark.parametrize("dirlen", [20, 40, 60, 80, 88, 90])
def test_long_ids_are_hashed_and_paths_fit(dirlen):
    dirpath = "/" + "d" * (dirlen - 1)
    sid = "x" * 200
    ident = wd.socket_id(dirpath, sid)
    budget = 104 - dirlen - 13
    if len(sid) > budget:
        assert ident == hashlib.sha256(sid.encode()).hexdigest()[: min(budget, 64)]
    for kind in ("notify", "signal", "ptrace"):
        assert len(os.path.join(dirpath, wd.socket_name(kind, ident))) <= 104


@pytest.mark.parametrize("dirlen", [91, 100, 150])
def test_budget_exhausted(dirlen):
    with pytest.raises(wd.PathBudgetError) as info:
        wd.socket_id("/" + "d" * (dirlen - 1), "s")
    left = 104 - dirlen - 13
    assert f"too long for Unix socket ({left} bytes remaining)" in str(info.value)


def test_long_temp_base_leaves_nothing(base):
    deep = base
    while len(deep) < 95:
        deep = os.path.join(deep, "d" * min(20, 96 - len(deep)))
        os.mkdir(deep)
    with pytest.raises(wd.PathBudgetError):
        make(deep, AGENTSH, 0)
    assert os.listdir(deep) == []
    shutil.rmtree(os.path.join(base, os.listdir(base)[0]))


def test_long_temp_base_long_session_id(base):
    deep = os.path.join(base, "l" * 30)
    os.mkdir(deep)
    d = make(deep, AGENTSH, 0, session="S" * 200, kinds=("notify", "signal"))
    try:
        for path in d.sockets.values():
            assert len(path) <= 104 and os.path.exists(path)
    finally:
        d.remove()
    os.rmdir(deep)


# ------------------------------------------------------------------------ ACLs


def test_acl_encode_decode_round_trip():
    entries = wd.acl_grant(OWNER_UID, 0o6, 0o6)
    blob = wd.acl_encode(entries)
    assert len(blob) == 4 + 8 * 5 and blob[:4] == b"\x02\x00\x00\x00"
    assert wd.acl_decode(blob) == entries
    with pytest.raises(ValueError):
        wd.acl_decode(blob[:-1])


def test_acl_blob_matches_setfacl(base):
    require(shutil.which("setfacl") is not None, "setfacl (package acl) not installed")
    path = os.path.join(base, "f")
    open(path, "w").close()
    try:
        subprocess.run(["setfacl", "-m", f"u:{OWNER_UID}:r-x", path], check=True)
        got = wd.get_acl(path)
        assert (wd.ACL_USER, 0o5, OWNER_UID) in got
        assert {tag for tag, _p, _i in got} == {wd.ACL_USER_OBJ, wd.ACL_USER, wd.ACL_GROUP_OBJ,
                                                  wd.ACL_MASK, wd.ACL_OTHER}
    finally:
        os.unlink(path)
