"""A private Postfix instance in a temporary directory, for use as a real peer.

Theory of operation: ``postfix -c DIR start`` with our own main.cf and master.cf. The instance has its
own queue_directory and data_directory, listens only on 127.0.0.1:PORT (``inet_interfaces``), never
chroots, and keeps Postfix's default fsync behaviour (cleanup fsyncs every queue file before smtpd
answers 250). It never touches /etc/postfix or a system Postfix: every path and port is its own, and it
is stopped with ``postfix -c DIR stop`` (then its master is waited for, and killed if it lingers).

Two modes:
- acceptance: mail is put on hold (``check_client_access static:HOLD``): the message is written and
  fsync'd exactly as usual, but the queue manager leaves it alone — the same "accepted, stored, not
  delivered" work that Postier does today;
- relay: every message goes to ``relayhost = [127.0.0.1]:SINK`` (an smtp-sink), queue drains.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.procs import wait_greeting, wait_pid_gone

__all__ = ["ACCEPT_DOMAIN", "IDLE_HEADROOM", "SMTPD_MAXPROC", "postfix_instance", "postfix_version"]

ACCEPT_DOMAIN = "bench.test"
SMTPD_KIB = 1_400
"""Memory one idle smtpd process costs, with its kernel share: 1.2 MiB PSS measured at 2,000."""
IDLE_HEADROOM = 200
"""smtpd processes kept free of idle sessions, for the clients timed meanwhile."""


def _smtpd_maxproc(want: int = 10_000 + IDLE_HEADROOM) -> int:
    """One smtpd per connection: enough for the idle scenario's 10,000, unless that would take more
    than 60 % of the memory available when the bench starts (a shared machine must not run out): then
    as many as fit, and the idle scenario holds that many sessions (its table says how many)."""
    available = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1])
    fits = int(available * 0.6 / SMTPD_KIB) if available else want
    return max(2 * IDLE_HEADROOM, min(want, fits))


SMTPD_MAXPROC = _smtpd_maxproc()

_MAIN_CF = """\
compatibility_level = 3.6
myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination = {domain}
local_recipient_maps =
local_transport = discard
alias_maps =
alias_database =
biff = no
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
mail_owner = postfix
setgid_group = postdrop
smtpd_banner = $myhostname ESMTP
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtp_dns_support_level = disabled
smtp_host_lookup = native
"""

_MASTER_CF = """\
127.0.0.1:{port} inet n - n - {smtpd_maxproc} smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def postfix_version() -> str:
    out = subprocess.run(["postconf", "-d", "-h", "mail_version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or "unknown"


def _write_config(root: Path, port: int, relay_port: int | None) -> Path:
    etc = root / "etc"
    etc.mkdir(parents=True)
    main = _MAIN_CF.format(domain=ACCEPT_DOMAIN, root=root)
    if relay_port is None:
        main += "smtpd_recipient_restrictions = check_client_access static:HOLD\n"
    else:
        main += f"relayhost = [127.0.0.1]:{relay_port}\n"
    (etc / "main.cf").write_text(main)
    (etc / "master.cf").write_text(_MASTER_CF.format(port=port, smtpd_maxproc=SMTPD_MAXPROC))
    return etc


def _postfix(etc: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["postfix", "-c", str(etc), action], capture_output=True, text=True, timeout=60, check=False
    )


def _master_pid(root: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((root / "queue" / "pid" / "master.pid").read_text().split()[0])
    return None


@contextlib.contextmanager
def postfix_instance(root: Path, port: int, relay_port: int | None = None) -> Iterator[int]:
    """Run a private Postfix under ``root`` listening on 127.0.0.1:``port``; yields the master's pid.

    ``root`` is created and removed here; the instance is stopped even when the body raises.
    """
    root.mkdir(parents=True)
    os.chmod(root, 0o755)  # noqa: S103 — the postfix user must traverse it (umask may be stricter)
    etc = _write_config(root, port, relay_port)
    (root / "queue").mkdir(mode=0o755)  # postfix check creates the queue's subdirectories
    try:
        started = _postfix(etc, "start")
        if started.returncode != 0:
            log = (root / "maillog").read_text() if (root / "maillog").exists() else started.stderr
            raise RuntimeError(f"postfix -c {etc} start failed: {log.strip()[-300:]}")
        wait_greeting(port)
        pid = _master_pid(root)
        if pid is None:
            raise RuntimeError("postfix started but wrote no master.pid")
        yield pid
    finally:
        _stop(root, etc)
        shutil.rmtree(root, ignore_errors=True)


def _stop(root: Path, etc: Path) -> None:
    pid = _master_pid(root)
    _postfix(etc, "stop")
    if pid is not None and not wait_pid_gone(pid, 30.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        wait_pid_gone(pid, 5.0)
