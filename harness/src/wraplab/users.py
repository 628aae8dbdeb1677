"""The users and group of containers/users.conf, read the same way the images read them.

Format (whitespace separated, ``#`` comments)::

    group  NAME  GID  -     -
    user   NAME  UID  ROLE  GROUPS     # GROUPS: comma separated supplementary groups, or -
    system NAME  UID  ROLE  -          # a user the base image already has (nobody)

Every user gets a private primary group of the same name with ``gid == uid``
(containers/create-users.sh does the same in the images). A ``system`` user is checked in
the images, never created, and keeps its numbers in every lab (LocalLab does not shift it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from wraplab import paths


@dataclass(frozen=True)
class User:
    """One actor identity. ``uid``/``gid``/``groups`` are the numbers as seen inside a lab."""

    name: str
    uid: int
    gid: int
    role: str
    groups: tuple[int, ...] = ()
    group_names: tuple[str, ...] = ()
    system: bool = False  # the image's own user (users.conf kind ``system``)

    def shifted(self, offset: int) -> User:
        """The same user with every id moved by ``offset`` (LocalLab's reserved range);
        root and system users stay as they are."""
        if offset == 0 or self.uid == 0 or self.system:
            return self
        return replace(
            self,
            uid=self.uid + offset,
            gid=self.gid + offset,
            groups=tuple(g + offset for g in self.groups),
        )


ROOT = User(name="root", uid=0, gid=0, role="root")


@dataclass(frozen=True)
class Group:
    name: str
    gid: int


class UsersError(ValueError):
    """users.conf is malformed."""


@dataclass(frozen=True)
class Users(Mapping[str, User]):
    """Users addressable by role *or* by name (``users["owner"] is users["alice"]``);
    ``"root"`` is always there."""

    users: tuple[User, ...]
    groups: tuple[Group, ...]

    @cached_property
    def _index(self) -> dict[str, User]:
        index: dict[str, User] = {"root": ROOT}
        for user in self.users:
            index[user.name] = user
            index[user.role] = user
        return index

    def __getitem__(self, key: str) -> User:
        try:
            return self._index[key]
        except KeyError:
            known = ", ".join(sorted(self._index))
            raise KeyError(f"no user or role {key!r} (known: {known})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def by_role(self) -> dict[str, User]:
        return {u.role: u for u in self.users}

    @property
    def service(self) -> User:
        return self["service"]

    def shifted(self, offset: int) -> Users:
        return Users(
            users=tuple(u.shifted(offset) for u in self.users),
            groups=tuple(Group(g.name, g.gid + offset) for g in self.groups),
        )


def parse(text: str, source: str = "users.conf") -> Users:
    groups: dict[str, Group] = {}
    raw_users: list[tuple[str, int, str, list[str], bool]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 5 or fields[0] not in ("group", "user", "system"):
            raise UsersError(f"{source}:{lineno}: expected 'group|user|system NAME ID ROLE "
                             "GROUPS'")
        kind, name, ident, role, extra = fields
        try:
            num = int(ident)
        except ValueError:
            raise UsersError(f"{source}:{lineno}: id {ident!r} is not a number") from None
        if kind == "group":
            groups[name] = Group(name, num)
        elif kind == "system" and extra != "-":
            raise UsersError(f"{source}:{lineno}: a system user has no groups here (-)")
        else:
            raw_users.append((name, num, role, [] if extra == "-" else extra.split(","),
                              kind == "system"))
    users = []
    for name, uid, role, group_names, system in raw_users:
        for g in group_names:
            if g not in groups:
                raise UsersError(f"{source}: user {name} is in undeclared group {g!r}")
        users.append(
            User(
                name=name,
                uid=uid,
                gid=uid,
                role=role,
                groups=tuple(groups[g].gid for g in group_names),
                group_names=tuple(group_names),
                system=system,
            )
        )
    return Users(users=tuple(users), groups=tuple(groups.values()))


def load(path: Path | None = None) -> Users:
    """Read containers/users.conf (or ``path``)."""
    path = path or paths.users_conf()
    return parse(path.read_text(), str(path))
