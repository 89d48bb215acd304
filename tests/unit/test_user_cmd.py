"""``postier user …`` through its own argparse registration, in a child Python process: the password
comes from a real pipe, or from a real pseudo-terminal for the prompt asked twice."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from postier.users import UserStore, users_path

# Builds a local parser exactly as `postier` does, and exits with the handler's code. With --tty the
# child first makes its stdin (a pty) its controlling terminal, so getpass() prompts on it.
CHILD = """
import argparse, sys
if sys.argv[1] == "--tty":
    import fcntl, termios
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    del sys.argv[1]
from postier.cli import user_cmd
parser = argparse.ArgumentParser(prog="postier")
user_cmd.register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[2:])
sys.exit(args.func(args))
"""


def cli(var: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``postier user ARGV --data-dir VAR`` with ``stdin`` on a pipe."""
    command = [sys.executable, "-c", CHILD, "-", "user", *argv, "--data-dir", str(var)]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def cli_tty(var: Path, answers: list[str], *argv: str) -> tuple[int, str]:
    """Run the command on a pseudo-terminal, typing each answer after the next prompt appears."""
    master, slave = os.openpty()
    command = [sys.executable, "-c", CHILD, "--tty", "-", "user", *argv, "--data-dir", str(var)]
    child = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen, answered = b"", 0
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            assert ready, f"no output from the child; so far: {seen!r}"
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if answered < len(answers) and seen.count(b"assword: ") > answered:
                os.write(master, answers[answered].encode() + b"\n")
                answered += 1
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return child.wait(timeout=30), seen.decode(errors="replace")


def fast_store(var: Path) -> UserStore:
    return UserStore(users_path(var), time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def var(tmp_path: Path) -> Path:
    return tmp_path / "var"


def test_add_from_stdin_then_log_in(var: Path) -> None:
    result = cli(var, "add", "Alice@EXAMPLE.test", stdin="s3cret pass\nignored second line\n")
    assert result.returncode == 0, result.stderr
    assert "added Alice@example.test" in result.stdout
    assert "s3cret" not in result.stdout + result.stderr
    store = fast_store(var)
    assert store.verify("Alice@example.test", "s3cret pass") == "Alice@example.test"
    assert store.verify("Alice@example.test", "ignored second line") is None


def test_add_with_senders_and_crlf_password(var: Path) -> None:
    result = cli(
        var, "add", "bob@example.test", "--sender", "@Example.ORG", "--sender", "b@x.test", stdin="pw\r\n"
    )
    assert result.returncode == 0, result.stderr
    user = fast_store(var).get("bob@example.test")
    assert user is not None and user.senders == ("@example.org", "b@x.test")
    assert fast_store(var).verify("bob@example.test", "pw") == "bob@example.test"


def test_passwd_from_stdin(var: Path) -> None:
    fast_store(var).add("a@example.test", "old")
    result = cli(var, "passwd", "a@EXAMPLE.test", stdin="new\n")
    assert result.returncode == 0, result.stderr
    assert fast_store(var).verify("a@example.test", "new") == "a@example.test"
    assert fast_store(var).verify("a@example.test", "old") is None


def test_password_asked_twice_on_a_terminal(var: Path) -> None:
    code, screen = cli_tty(var, ["tty pass", "tty pass"], "add", "t@example.test")
    assert code == 0, screen
    assert "Password:" in screen and "Repeat password:" in screen and "tty pass" not in screen
    assert fast_store(var).verify("t@example.test", "tty pass") == "t@example.test"


def test_passwords_differ_on_a_terminal(var: Path) -> None:
    code, screen = cli_tty(var, ["one", "two"], "add", "t@example.test")
    assert code == 1
    assert "passwords differ" in screen
    assert fast_store(var).list() == []


ERRORS = [
    # (setup user?, argv, stdin, exit code, message on stderr)
    (True, ["add", "a@example.test"], "pw\n", 1, "user exists: a@example.test"),
    (False, ["passwd", "nobody@example.test"], "pw\n", 1, "no such user"),
    (False, ["del", "nobody@example.test"], "", 1, "no such user"),
    (False, ["add", "a@example.test"], "\n", 1, "empty password"),
    (False, ["add", "a@example.test"], "", 1, "empty password"),
    (False, ["add", "a@example.test"], "bell\x07\n", 1, "password not allowed"),
    (False, ["add", "not-an-address"], "pw\n", 2, "not a valid address"),
    (False, ["add", "a@example.test", "--sender", "@"], "pw\n", 2, "not a valid sender domain"),
    (False, ["add"], "pw\n", 2, "the following arguments are required: ADDRESS"),
    (False, ["add", "a@example.test", "pw"], "", 2, "unrecognized arguments"),  # never from argv
]


@pytest.mark.parametrize(("setup", "argv", "stdin", "code", "message"), ERRORS)
def test_errors(var: Path, setup: bool, argv: list[str], stdin: str, code: int, message: str) -> None:
    if setup:
        fast_store(var).add("a@example.test", "original")
    result = cli(var, *argv, stdin=stdin)
    assert (result.returncode, message in result.stderr) == (code, True), result.stderr
    if setup:
        assert fast_store(var).verify("a@example.test", "original") == "a@example.test"
    else:
        assert fast_store(var).list() == []


def test_list_del_disable_senders(var: Path) -> None:
    store = fast_store(var)
    store.add("b@example.test", "pw")
    store.add("a@example.test", "pw", senders=["@example.test"])

    result = cli(var, "list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[1].startswith("a@example.test") and "@example.test" in lines[1] and "enabled" in lines[1]
    assert lines[2].startswith("b@example.test") and lines[-1] == "-- 2 users"
    assert "argon2" not in result.stdout

    assert cli(var, "disable", "b@example.test").returncode == 0
    assert cli(var, "senders", "b@example.test", "--sender", "@b.test").returncode == 0
    listed = json.loads(cli(var, "list", "--json").stdout)
    assert listed[1]["address"] == "b@example.test" and listed[1]["disabled"] is True
    assert listed[1]["senders"] == ["@b.test"]
    assert set(listed[0]) == {"address", "senders", "disabled", "created_at", "updated_at"}
    assert store.verify("b@example.test", "pw") is None  # the running store saw the change

    assert cli(var, "enable", "b@example.test").returncode == 0
    assert store.verify("b@example.test", "pw") == "b@example.test"
    result = cli(var, "del", "A@EXAMPLE.test")
    assert result.returncode == 1 and "no such user: A@example.test" in result.stderr
    assert cli(var, "del", "a@EXAMPLE.test").returncode == 0
    assert [u.address for u in store.list()] == ["b@example.test"]


def test_data_dir_from_config(tmp_path: Path) -> None:
    config = tmp_path / "postier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "from-config"}"\n')
    command = [sys.executable, "-c", CHILD, "-", "user", "add", "c@example.test", "--config", str(config)]
    result = subprocess.run(command, input="pw\n", capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert fast_store(tmp_path / "from-config").get("c@example.test") is not None
