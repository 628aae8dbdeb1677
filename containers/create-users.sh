#!/bin/sh
# Create wraplab's users and group from users.conf (the one declaration the
# harness reads too: harness/src/wraplab/users.py parses it the same way).
#   group NAME GID - -            -> groupadd -g GID NAME
#   user  NAME UID ROLE GROUPS    -> a private group NAME with gid = UID, then the user,
#                                    in GROUPS (comma separated, or -)
#   system NAME UID ROLE -         -> a user the base image must already have (checked)
# The user whose role is "service" is the non-root server's account: a system
# account without a login shell, owning /run/wrapref and /var/log/wrapref.
# Runs in the image build (POSIX sh + shadow's groupadd/useradd; no network).
set -eu
conf=${1:?usage: create-users.sh users.conf}

strip() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$conf"; }

die() { echo "create-users: $*" >&2; exit 1; }

ensure_group() { # name gid
    if existing=$(getent group "$2"); then
        [ "${existing%%:*}" = "$1" ] || die "gid $2 is taken by group ${existing%%:*} in the base image"
    else
        groupadd -g "$2" "$1"
    fi
}

strip | while read -r kind name id role groups; do
    if [ "$kind" = group ]; then ensure_group "$name" "$id"; fi
done
strip | while read -r kind name id role groups; do
    [ "$kind" = system ] || continue
    existing=$(getent passwd "$id") || die "system user $name ($id) is missing from the base image"
    [ "${existing%%:*}" = "$name" ] || die "uid $id is ${existing%%:*} in the base image, not $name"
    echo "create-users: $name uid=$id role=$role (from the base image)"
done
strip | while read -r kind name id role groups; do
    [ "$kind" = user ] || continue
    if existing=$(getent passwd "$id"); then
        die "uid $id is taken by user ${existing%%:*} in the base image"
    fi
    ensure_group "$name" "$id"
    set -- -u "$id" -g "$id"
    [ "$groups" = - ] || set -- "$@" -G "$groups"
    if [ "$role" = service ]; then
        useradd "$@" -r -M -d /nonexistent -s /usr/sbin/nologin "$name"
        install -d -m 0755 -o "$name" -g "$name" /run/wrapref /var/log/wrapref
    else
        useradd "$@" -m -d "/home/$name" -s /bin/sh "$name"
        chmod 0700 "/home/$name"
    fi
    echo "create-users: $name uid=$id role=$role groups=$groups"
done
