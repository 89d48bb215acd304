"""Running as root: bind the listeners, then become ``[server] user`` before any client byte is read.

Theory of operation (issue 14, finding 13). Ports 25, 465 and 587 need root (or
CAP_NET_BIND_SERVICE, as contrib/postier.service gives an unprivileged user). ``postier serve``
started as root therefore:

1. decides before anything else (``plan``): with ``server.user`` set it will switch to that user
   (and ``server.group``, default the user's primary group); without it, it refuses to start — exit
   2 — unless ``--allow-root`` says running as root is meant. Started as another user, it runs as
   that user (``server.user``, when set, must be that user: only root can switch);
2. binds every listening socket as root (``supervisor.bind_listeners``);
3. ``drop``: makes ``data_dir`` (created if missing) and everything in it belong to the user — the
   queue, the TLS pair, the users file and mailboxes may have been made by an earlier run as root —
   without following symbolic links; then takes the user's groups (``initgroups``: a group such as
   ssl-cert that may read the TLS key), the group, and the user id, real, effective and saved, so
   there is no way back (checked: ``setuid(0)`` must fail);
4. only then builds the application: the queue is opened, the TLS files are read and the first
   client connection is accepted as the user. Receiving workers (``server.workers``) are started by
   the primary after the switch, so they never hold root either.

Modules imported after the switch must be readable by the user: the Python installation and
Postier's own, as with any system-wide install.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from postier.config import Config
from postier.mail.errors import ConfigError
from postier.observe import get_logger

__all__ = ["Identity", "drop", "plan"]

_log = get_logger("postier.privileges")


@dataclass(frozen=True, slots=True)
class Identity:
    """Whom to become after binding."""

    name: str
    uid: int
    gid: int


def _identity(user: str, group: str) -> Identity:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError("server.user", f"no such user {user!r}") from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ConfigError("server.group", f"no such group {group!r}") from None
    return Identity(entry.pw_name, entry.pw_uid, gid)


def plan(config: Config, *, allow_root: bool, euid: int | None = None) -> Identity | None:
    """Whom to become once the listeners are bound (None: stay as we are). Raises ``ConfigError``
    for root without ``server.user`` nor ``allow_root``, an unknown user or group, or a user other
    than the one we run as when we are not root."""
    euid = os.geteuid() if euid is None else euid
    server = config.server
    if not server.user and server.group:
        raise ConfigError("server.group", "needs server.user")
    if euid != 0:
        if server.user and _identity(server.user, server.group).uid != euid:
            raise ConfigError(
                "server.user", f"switching to {server.user!r} needs root (running as uid {euid})"
            )
        return None
    if server.user:
        identity = _identity(server.user, server.group)
        if identity.uid == 0:
            raise ConfigError("server.user", "must not be root (uid 0)")
        return identity
    if not allow_root:
        raise ConfigError(
            "server.user",
            "refusing to run as root: set [server] user (and group) to switch to after binding the "
            "listeners, or pass --allow-root",
        )
    _log.warning("running as root (--allow-root): set [server] user to drop privileges after binding")
    return None


def drop(identity: Identity, data_dir: Path) -> None:
    """Give ``data_dir`` to ``identity`` and become it for good (see the module docstring)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    changed = _chown_tree(data_dir, identity.uid, identity.gid)
    os.initgroups(identity.name, identity.gid)
    os.setgid(identity.gid)
    os.setuid(identity.uid)  # as root: real, effective and saved ids alike
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel guarantees this
        raise RuntimeError("privileges could not be dropped")
    _log.info(
        "running as user %s (uid %d, gid %d); %d files under %s given to it",
        identity.name,
        identity.uid,
        identity.gid,
        changed,
        data_dir,
    )


def _chown_tree(root: Path, uid: int, gid: int) -> int:
    """Give every entry under ``root`` (``root`` too) to uid:gid, never following a symbolic link
    (a link placed there must not hand its target to the user). Returns how many were changed."""
    changed = 0
    for directory, dirs, files in os.walk(root, followlinks=False):
        names = [os.path.join(directory, n) for n in (*dirs, *files)]
        for name in [str(root), *names] if directory == str(root) else names:
            st = os.lstat(name)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(name, uid, gid, follow_symlinks=False)
                changed += 1
    return changed
