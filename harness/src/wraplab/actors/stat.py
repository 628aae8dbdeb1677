"""lstat + POSIX ACL of paths, as JSON (run as root by the harness's ``run.stat``).

    python3 -m wraplab.actors.stat [--list] PATH...

Prints ``{"facts": [{"path", "exists", "kind", "uid", "gid", "mode", "size", "nlink",
"target", "acl", "entries", "error"}]}``. ``kind`` is dir, file, socket, symlink, fifo,
chardev, blockdev; ``mode`` the permission bits (``stat.S_IMODE``) as an int; ``acl`` is
None when the file has no ACL beyond its mode, else the entries as ``getfacl -n -c``
prints them (``user::rwx``, ``user:1001:--x``, ``mask::--x``, ``default:user::rwx``...).
Symlinks are not followed. ``--list`` adds ``entries`` (sorted names) for directories.
"""

import argparse
import errno
import os
import stat
import struct

from wraplab.actors._common import emit, errno_name

KINDS = (
    (stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISSOCK, "socket"),
    (stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"),
    (stat.S_ISBLK, "blockdev"),
)
TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}
NAMED = (0x02, 0x08)


def perm_text(bits):
    return ("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + ("x" if bits & 1 else "-")


def decode_acl(raw):
    """The Linux posix_acl xattr (version 2: u16 tag, u16 perm, u32 id per entry)."""
    (version,) = struct.unpack_from("<I", raw, 0)
    if version != 2:
        raise ValueError(f"unknown ACL xattr version {version}")
    entries = []
    for off in range(4, len(raw), 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, off)
        qualifier = str(ident) if tag in NAMED else ""
        name = TAGS.get(tag, f"tag{tag}")
        entries.append(f"{name}:{qualifier}:{perm_text(perm)}")
    return entries


def read_acl(path, mode):
    def xattr(name):
        try:
            return os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                return None
            raise

    access = xattr("system.posix_acl_access")
    default = xattr("system.posix_acl_default")
    if access is None and default is None:
        return None
    if access is not None:
        entries = decode_acl(access)
    else:
        entries = ["user::" + perm_text(mode >> 6), "group::" + perm_text(mode >> 3),
                   "other::" + perm_text(mode)]
    if default is not None:
        entries += ["default:" + e for e in decode_acl(default)]
    return entries


def facts(path, listing):
    out = {"path": path, "exists": False, "kind": None, "uid": None, "gid": None,
           "mode": None, "size": None, "nlink": None, "target": None, "acl": None,
           "entries": None, "error": None}
    try:
        st = os.lstat(path)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            out["error"] = errno_name(exc)
        return out
    out.update(exists=True, uid=st.st_uid, gid=st.st_gid, mode=stat.S_IMODE(st.st_mode),
               size=st.st_size, nlink=st.st_nlink)
    out["kind"] = next((name for test, name in KINDS if test(st.st_mode)), "unknown")
    try:
        if out["kind"] == "symlink":
            out["target"] = os.readlink(path)
        else:
            out["acl"] = read_acl(path, st.st_mode)
        if listing and out["kind"] == "dir":
            out["entries"] = sorted(os.listdir(path))
    except OSError as exc:
        out["error"] = errno_name(exc)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="stat", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    emit({"facts": [facts(p, args.list) for p in args.paths]})


if __name__ == "__main__":
    main()
