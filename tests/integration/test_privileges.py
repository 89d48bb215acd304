"""Privileges (issue 14, finding 13), with a real ``postier serve`` started as root (this test needs
root: it is how the server is started on port 25): it binds 127.0.0.N:25, becomes ``[server] user``
(``nobody`` here) before it opens the queue or reads a client byte — the primary and its receiving
workers alike — gives data_dir to that user, and mail still flows. Without ``user`` it refuses to run
as root, unless ``--allow-root``.

The server runs on an interpreter the dropped user can read: this machine's Python may live under
/root (mode 0700), so the system's python3 of the same version is used, with our sources and the
virtualenv's packages on PYTHONPATH — as a system-wide install would be."""

from __future__ import annotations

import os
import pwd
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

import postier
from tests.integration.harness import add_users, free_port, make_config
from tests.integration.loopback import loopback_address

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting as root is what this tests"),
]

NOBODY = pwd.getpwnam("nobody")


def _readable_by_all(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents] if p.exists())


def _python() -> tuple[str, dict[str, str]]:
    """An interpreter (and environment) that ``nobody`` can run and import Postier with."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if _readable_by_all(Path(sys.executable).resolve()) and _readable_by_all(Path(sys.prefix)):
        return sys.executable, env
    system = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no Python that an unprivileged user can run")
    source = Path(postier.__file__).resolve().parents[1]
    site = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
    env["PYTHONPATH"] = os.pathsep.join([str(source), *site])
    return system, env


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory the dropped user can reach (pytest's tmp_path is under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="postier-priv-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ids(pid: int) -> tuple[list[int], list[int]]:
    """Real, effective, saved and filesystem uids and gids of a process."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in status if line.startswith("Uid:")).split()[1:]
    gid = next(line for line in status if line.startswith("Gid:")).split()[1:]
    return [int(u) for u in uid], [int(g) for g in gid]


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _serve(config_path: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    python, env = _python()
    with log.open("ab") as out:
        return subprocess.Popen(
            [python, "-m", "postier", "serve", *flags, "--config", str(config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
        )


def test_as_root_without_user_it_refuses_unless_allowed(tmp_path: Path) -> None:
    config = tmp_path / "postier.toml"
    config.write_text(tomli_w.dumps(make_config(tmp_path / "var")))
    done = subprocess.run(
        [sys.executable, "-m", "postier", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to run as root" in done.stderr and "--allow-root" in done.stderr
    assert not (tmp_path / "var").exists()  # refused before anything was made


@pytest.mark.parametrize("workers", [1, 2])
def test_binds_port_25_as_root_then_runs_as_the_user(world_dir: Path, workers: int) -> None:
    data_dir = world_dir / "var"
    data_dir.mkdir()
    (data_dir / "left-by-root").write_text("an earlier run as root made this")
    add_users(data_dir, "alice@example.test")  # the users file, made by root
    smtp = loopback_address(25)
    data = make_config(data_dir, server={"user": "nobody", "workers": workers})
    data["listener"] = [
        {"address": f"{smtp}:25", "mode": "smtp"},
        {"address": f"127.0.0.1:{free_port()}", "mode": "submission"},
    ]
    config_path = world_dir / "postier.toml"
    config_path.write_text(tomli_w.dumps(data))
    log = world_dir / "postier.log"
    proc = _serve(config_path, log)
    try:
        deadline = time.monotonic() + 60
        while True:  # the primary's log says it is ready once it serves (as nobody)
            if proc.poll() is not None:
                pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text()}")
            if "event=ready" in log.read_text() and len(_children(proc.pid)) >= workers - 1:
                break
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for pid in [proc.pid, *_children(proc.pid)]:
            assert _ids(pid) == ([NOBODY.pw_uid] * 4, [NOBODY.pw_gid] * 4), pid
        for _ in range(4):  # several connections: with 2 workers, either process may take each
            with smtplib.SMTP(smtp, 25, timeout=30) as client:
                client.sendmail("bob@example.org", ["alice@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
        inbox = data_dir / "mail" / "example.test" / "alice" / "new"
        deadline = time.monotonic() + 30
        while not (inbox.exists() and len(list(inbox.iterdir())) == 4):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [data_dir, *data_dir.rglob("*")]}
        assert owners == {(NOBODY.pw_uid, NOBODY.pw_gid)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert "running as user nobody" in log.read_text()
