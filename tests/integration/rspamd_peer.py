"""A real rspamd for the tests: the Debian package's rules, our own config dir, one normal worker on a
loopback port; started once per test session (it compiles its rules for some seconds).

The test configuration (``_LOCAL``): no DNS-based modules (the tests have no internet), actions only
at scores far above what ordinary test mail gets (so a clean message is ``no action``), and two test
rules that make rspamd choose an action by the Subject: ``[rewrite-me]`` → rewrite subject,
``[soft-reject]`` → soft reject. GTUBE is rspamd's own: reject.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import free_port, wait_for_port

__all__ = ["GTUBE", "RspamdServer", "rspamd_server"]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

_CONF = """
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    dns {{ nameserver = ["127.0.0.1:{dns_port}"]; timeout = 0.2s; retransmits = 1; }}
}}
logging {{ type = "file"; filename = "$LOGDIR/rspamd.log"; level = "notice"; }}
worker "normal" {{
    bind_socket = "127.0.0.1:{port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
"""

_ACTIONS = 'reject = 150; add_header = 50; rewrite_subject = 30; greylist = null; subject = "[SPAM] %s";\n'

_LUA = """
local function subject_has(task, word)
  local s = task:get_subject()
  return s ~= nil and s:find(word, 1, true) ~= nil
end
rspamd_config.POSTIER_REWRITE = {
  callback = function(task) return subject_has(task, '[rewrite-me]') end,
  score = 35.0, description = 'Postier test: rewrite subject', group = 'postier',
}
rspamd_config.POSTIER_ADD_HEADER = {
  callback = function(task) return subject_has(task, '[add-header]') end,
  score = 55.0, description = 'Postier test: add header', group = 'postier',
}
rspamd_config.POSTIER_SOFT = {
  callback = function(task)
    if subject_has(task, '[soft-reject]') then
      task:set_pre_result('soft reject', 'Postier test: try later')
      return true
    end
    return false
  end,
  score = 0.0, description = 'Postier test: soft reject', group = 'postier',
}
"""

_OFF = (
    "rbl",
    "dkim_signing",
    "arc",
    "dmarc",
    "spf",
    "dkim",
    "asn",
    "emails",
    "phishing",
    "url_redirector",
    "fuzzy_check",
    "neural",
    "dcc",
    "greylist",
    "ratelimit",
    "replies",
    "history_redis",
    "mx_check",
)


class RspamdServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        root = self.root
        for sub in ("local.d", "db", "run", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "rspamd.conf").write_text(_CONF.format(port=self.port, dns_port=free_port(udp=True)))
        (root / "local.d" / "actions.conf").write_text(_ACTIONS)
        (root / "local.d" / "options.inc").write_text("disable_hyperscan = true;\n")
        for module in _OFF:
            (root / "local.d" / f"{module}.conf").write_text("enabled = false;\n")
        (root / "rspamd.local.lua").write_text(_LUA)
        share = "/usr/share/rspamd"
        variables = {
            "CONFDIR": "/etc/rspamd",
            "LOCAL_CONFDIR": str(root),
            "DBDIR": str(root / "db"),
            "RUNDIR": str(root / "run"),
            "LOGDIR": str(root / "log"),
            "PLUGINSDIR": f"{share}/plugins",
            "RULESDIR": f"{share}/rules",
            "LUALIBDIR": f"{share}/lualib",
            "SHAREDIR": share,
            "WWWDIR": f"{share}/www",
        }
        command = [shutil.which("rspamd") or "rspamd", "-f", "-c", str(root / "rspamd.conf")]
        if os.geteuid() == 0:
            command.append("--insecure")  # rspamd refuses to run its workers as root otherwise
        for name, value in variables.items():
            command += ["--var", f"{name}={value}"]
        with (root / "stdout.log").open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, alive=self.proc, log=root / "log" / "rspamd.log", timeout_s=180)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def rspamd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RspamdServer]:
    if shutil.which("rspamd") is None:
        pytest.fail("rspamd is not installed: make peers (scripts/install-peers)")
    server = RspamdServer(tmp_path_factory.mktemp("rspamd"))
    started = time.monotonic()
    server.start()
    print(f"rspamd ready in {time.monotonic() - started:.1f}s")
    yield server
    server.stop()
