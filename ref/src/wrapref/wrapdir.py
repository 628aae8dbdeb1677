"""The wrap directory: a private directory holding the wrap sockets.

One :class:`WrapDir` per wrap-init.  It creates ``wrap-*`` under the server's
temp base, binds ``notify-<id>.sock`` (and ``signal-<id>.sock``) or
``ptrace-<id>.sock`` in it, gives the caller access, validates the result and,
at the end, removes everything it made.

Threat model: the server runs as root (or as a service account) and the
caller is an unprivileged local user; other local users are hostile.  The
directory and sockets must let exactly the caller connect.  Two orders are
implemented, chosen by ``profile.layout``:

``agentsh`` (AGENTSH.md B6-B10, gap G1)
    mkdtemp 0700 -> chown the directory to the caller (uid only) -> chmod
    0700 -> bind -> chown + chmod each socket *by path* (following symlinks)
    -> validate permission bits with stat (following symlinks).  The caller
    owns the directory between bind and the socket chown, so it can swap a
    socket for a symlink and have root chown a file of its choosing.  That
    window is kept real on purpose (no delay added, none optimised away).
    Chown impossible (EPERM) or legacy caller: directory 0711, sockets 0666,
    root-owned.

``hardened`` (SPEC.md §3 H3-H5)
    bind every socket while the directory is still server-owned 0700, with
    ``fchmod(0600)`` on the socket fd before bind; lchown the sockets; hand
    the directory over last through its fd.  Without CAP_CHOWN, POSIX ACLs
    grant exactly the caller (directory ``u:<uid>:--x``, sockets
    ``u:<uid>:rw-``); 0711/0666 only where the filesystem has no ACLs.  A
    caller with the server's own uid gets server-owned 0700/0600 files.
    Validation uses lstat: exact mode, owner, file type and ACL.

``root-only`` (pre-235) and ``open`` (permissive) are the historical and the
naive variants.

Every step that creates something is undone by :meth:`WrapDir.remove`, which
the owner calls on every error path before answering.  With
``profile.robust_cleanup`` (docs/hostile-users.md H14) removal is
:func:`empty_dir_fd`: fd-relative, iterative, bounded in fds, operations and
time, so nothing the caller puts in its directory (a 100,000-deep tree,
symlinks, a racing writer) can make it recurse, follow a link or run forever.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time

from .profiles import (
    LAYOUT_AGENTSH,
    LAYOUT_HARDENED,
    LAYOUT_OPEN,
    LAYOUT_ROOT_ONLY,
    Profile,
)

__all__ = [
    "WrapDir",
    "WrapDirError",
    "PathBudgetError",
    "ValidationError",
    "PATH_LIMIT",
    "SOCKET_KINDS",
    "socket_id",
    "socket_name",
    "ACL_XATTR",
    "ACL_USER_OBJ",
    "ACL_USER",
    "ACL_GROUP_OBJ",
    "ACL_GROUP",
    "ACL_MASK",
    "ACL_OTHER",
    "ACL_UNDEFINED_ID",
    "acl_encode",
    "acl_decode",
    "acl_grant",
    "get_acl",
    "set_acl",
    "empty_dir_fd",
    "CleanupIncomplete",
    "ISOLATION_CHOWN",
    "ISOLATION_ACL",
    "ISOLATION_SAME_UID",
    "ISOLATION_NONE",
]

#: sun_path budget applied everywhere (agentsh uses the macOS value).
PATH_LIMIT = 104
SOCKET_KINDS = ("notify", "signal", "ptrace")
_NAME_OVERHEAD = len("/notify-") + len(".sock")  # 13, the same for every kind

ISOLATION_CHOWN = "chown"
ISOLATION_ACL = "acl"
ISOLATION_SAME_UID = "same-uid"
ISOLATION_NONE = "none"

# POSIX ACL xattr format (linux/posix_acl_xattr.h).
ACL_XATTR = "system.posix_acl_access"
ACL_XATTR_VERSION = 2
ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_GROUP = 0x08
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")

_NO_ACL_ERRNOS = (errno.ENODATA, getattr(errno, "ENOATTR", errno.ENODATA))
_ACL_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS)


class WrapDirError(Exception):
    """A filesystem step failed; the server answers 500 with this message."""

    status = 500


class PathBudgetError(WrapDirError):
    """The temp directory leaves no room for a socket name (SPEC §1)."""


class ValidationError(WrapDirError):
    """The directory or a socket is not as the layout promised."""


def socket_id(dirpath: str, session_id: str, limit: int = PATH_LIMIT) -> str:
    """The id part of the socket names in *dirpath* (AGENTSH.md B13).

    Raises PathBudgetError when ``limit - len(dir) - 13 < 1``.
    """
    ident = os.path.basename(session_id)
    budget = limit - len(os.fsencode(dirpath)) - _NAME_OVERHEAD
    if budget < 1:
        raise PathBudgetError(
            f"temp directory path too long for Unix socket ({budget} bytes remaining)"
        )
    if len(ident.encode("utf-8", "surrogateescape")) > budget:
        ident = hashlib.sha256(ident.encode("utf-8", "surrogateescape")).hexdigest()
        ident = ident[: min(budget, 64)]
    return ident


def socket_name(kind: str, ident: str) -> str:
    return f"{kind}-{ident}.sock"


# --------------------------------------------------------------------------- ACLs


def acl_encode(entries) -> bytes:
    """Encode ``[(tag, perm, id), ...]`` as a system.posix_acl_access blob."""
    out = [_ACL_HEADER.pack(ACL_XATTR_VERSION)]
    out.extend(_ACL_ENTRY.pack(tag, perm, ident) for tag, perm, ident in entries)
    return b"".join(out)


def acl_decode(blob: bytes):
    """Decode a system.posix_acl_access blob into ``[(tag, perm, id), ...]``."""
    if len(blob) < _ACL_HEADER.size or (len(blob) - _ACL_HEADER.size) % _ACL_ENTRY.size:
        raise ValueError(f"malformed ACL xattr ({len(blob)} bytes)")
    (version,) = _ACL_HEADER.unpack_from(blob)
    if version != ACL_XATTR_VERSION:
        raise ValueError(f"unknown ACL xattr version {version}")
    return [
        _ACL_ENTRY.unpack_from(blob, off)
        for off in range(_ACL_HEADER.size, len(blob), _ACL_ENTRY.size)
    ]


def acl_grant(uid: int, user_perm: int, owner_perm: int):
    """The ACL granting *uid* exactly *user_perm*; group and others get nothing."""
    return [
        (ACL_USER_OBJ, owner_perm, ACL_UNDEFINED_ID),
        (ACL_USER, user_perm, uid),
        (ACL_GROUP_OBJ, 0, ACL_UNDEFINED_ID),
        (ACL_MASK, user_perm, ACL_UNDEFINED_ID),
        (ACL_OTHER, 0, ACL_UNDEFINED_ID),
    ]


def get_acl(target, follow_symlinks: bool = False):
    """The access ACL of *target* (path or fd) as entries, or None if it has none."""
    kwargs = {} if isinstance(target, int) else {"follow_symlinks": follow_symlinks}
    try:
        blob = os.getxattr(target, ACL_XATTR, **kwargs)
    except OSError as exc:
        if exc.errno in _NO_ACL_ERRNOS or exc.errno in _ACL_UNSUPPORTED:
            return None  # no ACL, or none possible here (e.g. a symlink)
        raise
    return acl_decode(blob)


def set_acl(target, entries, follow_symlinks: bool = False) -> None:
    kwargs = {} if isinstance(target, int) else {"follow_symlinks": follow_symlinks}
    os.setxattr(target, ACL_XATTR, acl_encode(entries), **kwargs)


def _octal(mode: int) -> str:
    return "%04o" % (mode & 0o7777)


# ------------------------------------------------------------- bounded removal

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def drive(steps):
    """Run a cooperative generator (``*_steps``) to its end in this thread; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def empty_dir_fd(top_fd: int, max_depth: int = 16, max_ops: int = 200_000,
                 timeout: float = 5.0) -> bool:
    """Remove everything inside the directory open as *top_fd*; True once it is empty.

    Iterative and fd-relative: ``openat(O_NOFOLLOW)``, ``unlinkat``; never a path,
    never a symlink followed, no recursion.  At most *max_depth* directory fds are
    held: a subtree deeper than that is renamed up into *top_fd* (flattened) and
    emptied from there.  *max_ops* entries and *timeout* seconds bound the work a
    racing writer can cause; False means something was left (the caller logs it).
    """
    return drive(empty_dir_steps(top_fd, max_depth, max_ops, timeout))


def empty_dir_steps(top_fd: int, max_depth: int = 16, max_ops: int = 200_000,
                    timeout: float = 5.0, chunk: int = 256):
    """:func:`empty_dir_fd` as a generator: it yields after every *chunk* entries.

    The server's event loop runs it as a task, so a tree a caller filled to the bound
    delays nobody else's handshake; it returns (``StopIteration.value``) the same bool.
    """
    deadline = time.monotonic() + timeout
    ops = 0
    pause = chunk
    # frames: [fd, name in parent, subdirectories still to visit, listed?]
    stack = [[os.dup(top_fd), None, [], False]]
    try:
        while stack:
            if ops >= max_ops or time.monotonic() >= deadline:
                return False
            if ops >= pause:
                pause = ops + chunk
                yield
            frame = stack[-1]
            fd = frame[0]
            if frame[2]:
                name = frame[2].pop()
                if len(stack) >= max_depth:
                    fresh = ".rm-" + os.urandom(8).hex()
                    try:
                        os.rename(name, fresh, src_dir_fd=fd, dst_dir_fd=top_fd)
                    except OSError:
                        pass
                    else:
                        stack[0][2].append(fresh)
                    ops += 1
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    ops += 1
                    continue
                stack.append([child, name, [], False])
                continue
            try:
                names = os.listdir(fd)
            except OSError:
                names = []
            if names:
                frame[3] = True
                for name in names:
                    ops += 1
                    if ops >= pause:
                        pause = ops + chunk
                        yield
                    try:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        frame[2].append(name)
                        continue
                    try:
                        os.unlink(name, dir_fd=fd)
                    except OSError:
                        pass
                if frame[2]:
                    continue
                if ops >= max_ops:
                    return False
                continue  # list again: empty now, unless a writer races us
            if len(stack) == 1:
                return True
            stack.pop()
            os.close(fd)
            try:
                os.rmdir(frame[1], dir_fd=stack[-1][0])
            except OSError:
                pass
            ops += 1
        return True
    finally:
        for frame in stack:
            os.close(frame[0])


# ---------------------------------------------------------------------- WrapDir


class CleanupIncomplete(WrapDirError):
    """Bounded cleanup (H14) gave up: something is left in the temp base."""


class WrapDir:
    """A wrap directory and its listening sockets.

    Use: ``create_dir()``, then ``add_socket(kind)`` for each kind, then
    ``finish()``; ``remove()`` at the end, and on any error from those steps
    (the owner, :class:`wrapref.server.Wrap`, does).

    *uid* is the uid to give access to: for the agentsh-family layouts the
    caller_uid exactly as sent (an int; 0 is legacy), for the hardened layout
    the resolved uid or None for a legacy TCP caller.
    """

    #: Directory name prefix under the temp base.
    dir_prefix = "wrap-"
    #: Unix socket path limit.
    path_limit = PATH_LIMIT
    #: ACL permissions the hardened layout grants the caller.
    acl_dir_perm = 0o1  # --x
    acl_socket_perm = 0o6  # rw-

    def __init__(self, temp_base: str, session_id: str, profile: Profile, uid, backlog: int):
        self.temp_base = temp_base
        self.session_id = session_id
        self.profile = profile
        self.uid = uid
        self.backlog = backlog
        self.server_uid = os.geteuid()
        self.path = None
        self.dirfd = None
        self.ident = None
        self.listeners = {}  # kind -> listening socket
        self.sockets = {}  # kind -> path
        self.chown_ok = False
        self.fs_isolation = None
        self.removed = False
        self._remove_lock = threading.Lock()

    # -- public steps -----------------------------------------------------------------

    def create_dir(self) -> None:
        """mkdtemp and secure the directory (per layout); compute the socket id."""
        self.path = self.make_dir()
        layout = self.profile.layout
        if layout == LAYOUT_AGENTSH:
            self.secure_dir_agentsh()
            self.validate_bits(self.path, "directory", 0o700 if self.chown_ok else 0o711)
        elif layout == LAYOUT_HARDENED:
            self.dirfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        elif layout == LAYOUT_OPEN:
            self.chmod(self.path, 0o711)
            self.fs_isolation = ISOLATION_NONE
        elif layout == LAYOUT_ROOT_ONLY:
            self.fs_isolation = ISOLATION_SAME_UID
        else:
            raise WrapDirError(f"unknown layout {layout!r}")
        self.ident = socket_id(self.path, self.session_id, self.path_limit)

    def add_socket(self, kind: str) -> socket.socket:
        """Bind, listen and secure the *kind* socket; return the listener.

        A bind/listen failure closes that socket and raises OSError; a
        validation failure raises ValidationError.  Either way the caller
        decides whether to :meth:`remove` everything.
        """
        if kind not in SOCKET_KINDS:
            raise ValueError(f"unknown socket kind {kind!r}")
        path = os.path.join(self.path, socket_name(kind, self.ident))
        sock = self.bind(path)
        try:
            sock.listen(self.backlog)
        except BaseException:
            sock.close()
            raise
        self.listeners[kind] = sock
        self.sockets[kind] = path
        layout = self.profile.layout
        if layout == LAYOUT_AGENTSH:
            self.secure_socket_agentsh(path)
            self.validate_bits(path, kind + " socket", 0o600 if self.chown_ok else 0o666)
        elif layout == LAYOUT_OPEN:
            self.chmod(path, 0o666)
        return sock

    def finish(self) -> None:
        """Hand the directory over and validate (hardened); nothing for the others."""
        if self.profile.layout == LAYOUT_HARDENED:
            self.hand_over()
            self.validate()

    def validate(self) -> None:
        """Run this profile's validation over the directory and every socket.

        ``strict_validation`` (H5): lstat, exact mode, owner, type and ACL.
        Otherwise permission bits via stat, following symlinks (B10); the
        historical and naive layouts validate nothing.
        """
        layout = self.profile.layout
        if self.profile.strict_validation:
            self.validate_strict()
        elif layout == LAYOUT_AGENTSH:
            self.validate_bits(self.path, "directory", 0o700 if self.chown_ok else 0o711)
            for kind, path in self.sockets.items():
                self.validate_bits(path, kind + " socket", 0o600 if self.chown_ok else 0o666)
        elif layout == LAYOUT_HARDENED:
            self.validate_bits(self.path, "directory", self.expected(True)[0] & 0o777)
            for kind, path in self.sockets.items():
                self.validate_bits(path, kind + " socket", self.expected(False)[0] & 0o777)

    def modes(self) -> dict:
        """``{path: "0700"}`` for the directory and each socket (lstat)."""
        return self.modes_and_owners()[0]

    def owners(self) -> dict:
        """``{path: uid}`` for the directory and each socket (lstat)."""
        return self.modes_and_owners()[1]

    def modes_and_owners(self):
        """:meth:`modes` and :meth:`owners` from one lstat per path."""
        modes, owners = {}, {}
        for path in [self.path, *self.sockets.values()]:
            try:
                st = os.lstat(path)
            except OSError:
                modes[path] = owners[path] = None
                continue
            modes[path] = _octal(st.st_mode)
            owners[path] = st.st_uid
        return modes, owners

    def close_listener(self, kind: str) -> None:
        sock = self.listeners.pop(kind, None)
        if sock is not None:
            sock.close()

    def close_listeners(self) -> None:
        for kind in list(self.listeners):
            self.close_listener(kind)

    def remove(self) -> bool:
        """Close every listener and remove the directory; True if this call removed it."""
        self.close_listeners()
        return self.remove_files()

    def remove_files(self) -> bool:
        """Remove the directory and everything in it (listeners stay open).

        True if this call removed it; a second call returns False at once.
        """
        return drive(self.remove_files_steps())

    def remove_files_steps(self):
        """:meth:`remove_files` as a generator (yields while a big tree is emptied, H14)."""
        with self._remove_lock:
            if self.removed:
                return False
            self.removed = True
        try:
            if self.path is not None:
                yield from self.remove_tree_steps()
        finally:
            if self.dirfd is not None:
                os.close(self.dirfd)
                self.dirfd = None
        return self.path is not None

    # -- hooks (overridable; tests stub them) ----------------------------------------

    def make_dir(self) -> str:
        return tempfile.mkdtemp(prefix=self.dir_prefix, dir=self.temp_base)

    def chown(self, path: str, uid: int) -> None:
        """chown by path, following symlinks (agentsh's os.Chown)."""
        os.chown(path, uid, -1)

    def chmod(self, path: str, mode: int) -> None:
        """chmod by path, following symlinks (agentsh's os.Chmod)."""
        os.chmod(path, mode)

    def stat(self, path: str) -> os.stat_result:
        return os.stat(path)

    def lchown(self, path: str, uid: int) -> None:
        os.lchown(path, uid, -1)

    def fchown_dir(self, uid: int) -> None:
        os.fchown(self.dirfd, uid, -1)

    def set_acl(self, target, entries) -> None:
        set_acl(target, entries, follow_symlinks=False)

    def bind(self, path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if self.profile.layout == LAYOUT_HARDENED:
                # The socket file is created with the fd's mode (E3): 0600 from the start.
                os.fchmod(sock.fileno(), 0o600)
            sock.bind(path)
        except BaseException:
            sock.close()
            raise
        return sock

    def remove_tree_steps(self):
        if self.profile.robust_cleanup:
            yield from self.remove_tree_bounded_steps()
            return
        if self.dirfd is not None:
            # The caller may own the directory by now: remove it only if the
            # path still names the directory we made.
            try:
                same = os.path.samestat(os.lstat(self.path), os.fstat(self.dirfd))
            except OSError:
                same = False
            if not same:
                return
        shutil.rmtree(self.path, ignore_errors=True)

    def remove_tree_bounded_steps(self):
        """H14: take the directory back, empty it through its fd, then rmdir it (its own
        sockets and the rmdir first: when nothing else is there, no listing is needed).

        Raises :class:`CleanupIncomplete` when something could not be removed (the
        wrap still releases its slot; the server logs it).
        """
        fd = self.dirfd
        opened = fd is None
        if opened:
            try:
                fd = os.open(self.path, _DIR_FLAGS)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise CleanupIncomplete(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            try:
                st = os.fstat(fd)
                same = os.path.samestat(os.lstat(self.path), st)
            except OSError:
                same = False
            if not same:
                return  # the path no longer names our directory: leave it alone
            if st.st_uid != self.server_uid:
                try:  # the caller may own it: take it back so nobody adds entries
                    os.fchown(fd, self.server_uid, -1)
                    os.fchmod(fd, 0o700)
                except OSError:
                    pass
            if self.remove_own_entries(fd):
                return
            done = yield from empty_dir_steps(fd)
            try:
                os.rmdir(self.path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    done = False
            if not done:
                raise CleanupIncomplete(f"could not empty {self.path}")
        finally:
            if opened:
                os.close(fd)

    def remove_own_entries(self, fd: int) -> bool:
        """Unlink the sockets this wrap bound (fd-relative: ``unlinkat`` never follows a
        symlink), then rmdir the directory: True when that removed it (it held nothing
        else, the usual case, and no listing was needed); False leaves the rest to the
        bounded emptying (H14)."""
        for path in self.sockets.values():
            try:
                os.unlink(os.path.basename(path), dir_fd=fd)
            except OSError:
                pass  # gone or replaced: the emptying finds whatever is there
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # not empty (the caller's files): empty it, then rmdir
        return True

    # -- agentsh layout ------------------------------------------------------------

    def _uid32(self) -> int:
        uid = self.uid & 0xFFFFFFFF  # Go passes uid_t: truncated to 32 bits
        return -1 if uid == 0xFFFFFFFF else uid  # (uid_t)-1 means "no change"

    def secure_dir_agentsh(self) -> None:
        """B7/B8: chown the directory to a caller > 0 and chmod 0700, else 0711."""
        self.chown_ok = False
        if self.uid is not None and self.uid > 0:
            try:
                self.chown(self.path, self._uid32())
            except OSError:
                self.chmod(self.path, 0o711)
            else:
                try:
                    self.chmod(self.path, 0o700)
                    self.chown_ok = True
                except OSError:
                    self.chmod(self.path, 0o711)
        else:
            self.chmod(self.path, 0o711)
        self.fs_isolation = ISOLATION_CHOWN if self.chown_ok else ISOLATION_NONE

    def secure_socket_agentsh(self, path: str) -> None:
        """B9: chown + chmod 0600 by path on the chown path, else chmod 0666."""
        if self.chown_ok:
            try:
                self.chown(path, self._uid32())
                self.chmod(path, 0o600)
            except OSError:
                self.chmod(path, 0o666)
        else:
            self.chmod(path, 0o666)

    def validate_bits(self, path: str, what: str, want: int) -> None:
        """B10: stat (follows symlinks); permission bits only."""
        got = self.stat(path).st_mode & 0o777
        if got != want:
            raise ValidationError(
                f"wrap: {what} permissions not established for {path}: "
                f"got {_octal(got)} want {_octal(want)}"
            )

    # -- hardened layout -----------------------------------------------------------

    def hand_over(self) -> None:
        """Give the caller access; the directory goes last, through its fd."""
        uid = self.uid
        paths = list(self.sockets.values())
        if uid is None:
            self._open_up(paths)
            return
        if uid in (self.server_uid, 0) and self.profile.same_uid_private:
            # The server's own uid, or root (which needs no grant): 0700/0600, ours.
            self.fs_isolation = ISOLATION_SAME_UID
            return
        try:
            for path in paths:
                self.lchown(path, uid)
            self.fchown_dir(uid)
            self.fs_isolation = ISOLATION_CHOWN
            return
        except PermissionError:
            if not self.profile.use_acl:
                raise
        try:
            for path in paths:
                self.set_acl(path, acl_grant(uid, self.acl_socket_perm, 0o6))
            self.set_acl(self.dirfd, acl_grant(uid, self.acl_dir_perm, 0o7))
            self.fs_isolation = ISOLATION_ACL
        except OSError as exc:
            if exc.errno not in _ACL_UNSUPPORTED:
                raise
            self._open_up(paths)

    def _open_up(self, paths) -> None:
        # The directory is still server-owned 0700 here, so chmod by path is safe.
        for path in paths:
            os.chmod(path, 0o666)
        os.fchmod(self.dirfd, 0o711)
        self.fs_isolation = ISOLATION_NONE

    def expected(self, is_dir: bool):
        """``(mode, owner, acl entries or None)`` the hardened layout promises."""
        iso = self.fs_isolation
        if iso == ISOLATION_CHOWN:
            return (0o700 if is_dir else 0o600), self.uid, None
        if iso == ISOLATION_ACL:
            if is_dir:
                return 0o710, self.server_uid, acl_grant(self.uid, self.acl_dir_perm, 0o7)
            return 0o660, self.server_uid, acl_grant(self.uid, self.acl_socket_perm, 0o6)
        if iso == ISOLATION_SAME_UID:
            return (0o700 if is_dir else 0o600), self.server_uid, None
        return (0o711 if is_dir else 0o666), self.server_uid, None

    def validate_strict(self) -> None:
        """H5: lstat every path: type, exact mode, owner, and the expected ACL."""
        try:
            st = os.lstat(self.path)
        except OSError as exc:
            raise ValidationError(f"wrap: directory {self.path}: {exc.strerror}") from None
        if self.dirfd is not None and not os.path.samestat(st, os.fstat(self.dirfd)):
            raise ValidationError(f"wrap: directory {self.path} was replaced")
        self._check(self.path, "directory", st, stat.S_ISDIR, *self.expected(True))
        for kind, path in self.sockets.items():
            try:
                st = os.lstat(path)
            except OSError as exc:
                raise ValidationError(f"wrap: {kind} socket {path}: {exc.strerror}") from None
            self._check(path, kind + " socket", st, stat.S_ISSOCK, *self.expected(False))

    def _check(self, path, what, st, is_type, mode, owner, acl) -> None:
        problems = []
        if not is_type(st.st_mode):
            problems.append(f"wrong file type {_octal(stat.S_IFMT(st.st_mode) >> 12)}")
        if stat.S_IMODE(st.st_mode) != mode:
            problems.append(f"mode {_octal(st.st_mode)} want {_octal(mode)}")
        if st.st_uid != owner:
            problems.append(f"owner {st.st_uid} want {owner}")
        got_acl = get_acl(path)
        if got_acl is not None:
            got_acl = sorted(got_acl)
        if got_acl != (sorted(acl) if acl is not None else None):
            problems.append(f"ACL {got_acl!r} want {acl!r}")
        if problems:
            raise ValidationError(
                "wrap: {} not established for {}: {}".format(what, path, "; ".join(problems))
            )
