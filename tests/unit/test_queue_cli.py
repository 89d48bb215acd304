"""``postier queue …`` through its own argparse registration, on a real queue directory."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from postier.cli import queue_cmd
from postier.mail.address import Address
from postier.mail.envelope import ClientInfo, Envelope, Recipient
from postier.queue import QueueId, RecipientResult, RecipientState, SqliteQueue

BODY = b"Subject: hello\r\nFrom: alice@example.org\r\n\r\nsecret body line\r\n"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="postier")
    queue_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    result: int = args.func(args)
    return result


def populate(data_dir: Path) -> tuple[QueueId, QueueId]:
    """Two messages: one with a failed and a pending recipient, one to another domain."""

    async def main() -> tuple[QueueId, QueueId]:
        q = SqliteQueue(data_dir / "queue")
        await q.open()
        env = Envelope(
            Address("alice", "example.org"),
            (Recipient(Address("bob", "b.test")), Recipient(Address("carol", "c.test"))),
            envid="ENV1",
            client=ClientInfo(
                ip="192.0.2.7",
                helo="mua.example",
                auth_user="alice",
                mailauth="spf=pass dkim=none dmarc=none",
            ),
        )
        first = await q.enqueue(env, BODY)
        await q.record([RecipientResult(first, 0, RecipientState.FAILED, "550 5.1.1 unknown user")])
        second = await q.enqueue(Envelope(None, (Recipient(Address("dan", "d.test")),)), b"X: y\r\n\r\nz\r\n")
        await q.close()
        return first, second

    return asyncio.run(main())


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, QueueId, QueueId]:
    first, second = populate(tmp_path / "var")
    return tmp_path / "var", first, second


def test_list_text_and_json(data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]) -> None:
    var, first, second = data
    assert run("queue", "list", "--data-dir", str(var)) == 0
    out = capsys.readouterr().out
    assert first in out and second in out and "550 5.1.1 unknown user" in out and "2 messages" in out
    assert run("queue", "list", "--data-dir", str(var), "--domain", "d.test", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["total"], listed["shown"]) == (1, 1)
    assert [(r["id"], r["sender"], r["pending"]) for r in listed["messages"]] == [(second, "", 1)]
    assert run("queue", "list", "--data-dir", str(var), "--error", "unknown user", "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["messages"]] == [first]


def test_list_says_how_many_were_not_shown(
    data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14, finding 14: a truncated list says so on stderr, --json carries the total, 0 means all."""
    var, first, second = data
    assert run("queue", "list", "--data-dir", str(var), "--limit", "1") == 0
    out, err = capsys.readouterr()
    assert first in out and second not in out and "-- 1 message of 2" in out
    assert "1 of 2 messages not shown" in err
    assert run("queue", "list", "--data-dir", str(var), "--limit", "1", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["total"], listed["shown"], len(listed["messages"])) == (2, 1, 1)
    assert run("queue", "list", "--data-dir", str(var), "--limit", "0") == 0
    out, err = capsys.readouterr()
    assert first in out and second in out and err == ""
    assert run("queue", "list", "--data-dir", str(var), "--limit", "-1") == 2


ESC = "\x1b]0;owned\x07\x1b[2J"


def test_show_and_list_print_control_characters_as_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14, finding 12: ENVID, ORCPT, HELO, replies and headers with terminal escapes, NEL, U+2028
    and bidi overrides are printed as visible escapes; no control character reaches the terminal."""

    async def main() -> QueueId:
        q = SqliteQueue(tmp_path / "var" / "queue")
        await q.open()
        env = Envelope(
            Address("alice", "example.org"),
            (Recipient(Address("bob", "b.test"), orcpt="rfc822;x" + ESC),),
            envid="E" + ESC + "\u2028\u202e",
            client=ClientInfo(ip="192.0.2.7", helo="h" + ESC + "\x85"),
        )
        qid = await q.enqueue(env, ("Subject: a" + ESC + "\r\n\tfolded\r\n\r\nbody\r\n").encode())
        await q.record([RecipientResult(qid, 0, RecipientState.FAILED, "550 5.0.0 x" + ESC)])
        await q.close()
        return qid

    qid = asyncio.run(main())
    var = str(tmp_path / "var")
    for argv in (("show", qid), ("list",), ("show", qid, "--json"), ("list", "--json")):
        assert run("queue", *argv, "--data-dir", var) == 0
        out = capsys.readouterr().out
        assert not any(not ch.isprintable() and ch not in "\n\t " for ch in out), (argv, out)
        if "--json" not in argv:
            assert "\\x1b]0;owned\\x07" in out
    assert run("queue", "show", qid, "--data-dir", var) == 0
    out = capsys.readouterr().out
    assert "\\u2028\\u202e" in out and "\\x85" in out and "\n\tfolded" in out


def test_show_headers_not_body_unless_asked(
    data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]
) -> None:
    var, first, _ = data
    assert run("queue", "show", first, "--data-dir", str(var)) == 0
    out = capsys.readouterr().out
    assert "Subject: hello" in out and "secret body line" not in out
    assert "<bob@b.test>  failed" in out and "550 5.1.1 unknown user" in out and "192.0.2.7" in out
    assert "mailauth:  spf=pass dkim=none dmarc=none" in out
    assert run("queue", "show", first.lower(), "--data-dir", str(var), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["envid"] == "ENV1" and shown["client"]["auth_user"] == "alice"
    assert shown["client"]["mailauth"] == "spf=pass dkim=none dmarc=none"
    assert [r["state"] for r in shown["recipients"]] == ["failed", "queued"]


def test_show_body_prints_it_exactly(
    data: tuple[Path, QueueId, QueueId], capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    var, first, _ = data
    assert run("queue", "show", first, "--body", "--data-dir", str(var)) == 0
    assert capfdbinary.readouterr().out == BODY


@pytest.mark.parametrize("bad", ["0000000000000000", "not-an-id", "../../x"])
@pytest.mark.parametrize("action", ["show", "retry", "hold", "release"])
def test_unknown_ids_are_a_helpful_error(
    data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str], action: str, bad: str
) -> None:
    var, _, _ = data
    assert run("queue", action, bad, "--data-dir", str(var)) == 1
    err = capsys.readouterr().err
    assert "no message" in err or "not a queue id" in err


def test_hold_release_retry(data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]) -> None:
    var, first, _ = data
    assert run("queue", "hold", first, "--data-dir", str(var)) == 0
    assert "hold: 1 message" in capsys.readouterr().out
    assert run("queue", "list", "--status", "held", "--data-dir", str(var), "--json") == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["messages"]] == [first]
    assert run("queue", "release", "--all", "--data-dir", str(var)) == 0
    assert "release: 1 message" in capsys.readouterr().out
    assert run("queue", "retry", "--all", "--data-dir", str(var)) == 0
    assert "retry: 2 recipients" in capsys.readouterr().out


def test_delete_needs_yes_without_a_terminal(
    data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]
) -> None:
    var, first, _ = data
    assert run("queue", "delete", "--all", "--data-dir", str(var)) == 1
    assert "--yes" in capsys.readouterr().err
    assert run("queue", "delete", first, "--yes", "--data-dir", str(var)) == 0
    assert "delete: 1 message" in capsys.readouterr().out
    assert run("queue", "show", first, "--data-dir", str(var)) == 1
    assert run("queue", "delete", "--all", "--yes", "--data-dir", str(var)) == 0
    assert "delete: 1 message" in capsys.readouterr().out


def test_id_or_all_is_required(
    data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]
) -> None:
    var, first, _ = data
    assert run("queue", "retry", "--data-dir", str(var)) == 2
    assert run("queue", "hold", first, "--all", "--data-dir", str(var)) == 2
    assert "one queue ID or --all" in capsys.readouterr().err


def test_stats(data: tuple[Path, QueueId, QueueId], capsys: pytest.CaptureFixture[str]) -> None:
    var, _, _ = data
    assert run("queue", "stats", "--data-dir", str(var), "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["messages"] == {"active": 2, "held": 0, "done": 0}
    assert stats["recipients"]["failed"] == 1
    assert sorted(stats["by_domain"]) == ["c.test", "d.test"]
    assert stats["by_domain"]["c.test"][0] == 1
    assert run("queue", "stats", "--data-dir", str(var)) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "c.test" in out and "active=2" in out


def test_data_dir_from_config_and_missing_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(tmp_path / "spool")
    config = tmp_path / "postier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "spool"}"\n')
    assert run("queue", "list", "--config", str(config), "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["messages"]) == 2
    assert run("queue", "list", "--data-dir", str(tmp_path / "empty")) == 1
    assert "no queue at" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()
    config.write_text("[server]\nnope = 1\n")
    assert run("queue", "stats", "--config", str(config)) == 2


def test_show_body_on_a_terminal_is_escaped_and_piped_is_raw(tmp_path: Path) -> None:
    """``--body`` is the message byte for byte when piped; on a terminal, its escapes are shown."""
    import os
    import subprocess
    import sys

    async def main() -> QueueId:
        q = SqliteQueue(tmp_path / "var" / "queue")
        await q.open()
        qid = await q.enqueue(
            Envelope(None, (Recipient(Address("dan", "d.test")),)), b"X: \x1b[2J\r\n\r\nz\r\n"
        )
        await q.close()
        return qid

    qid = asyncio.run(main())
    argv = [
        sys.executable,
        "-m",
        "postier",
        "queue",
        "show",
        qid,
        "--body",
        "--data-dir",
        str(tmp_path / "var"),
    ]
    piped = subprocess.run(argv, capture_output=True, check=True, timeout=60)
    assert piped.stdout == b"X: \x1b[2J\r\n\r\nz\r\n"
    master, slave = os.openpty()
    try:
        subprocess.run(argv, stdout=slave, check=True, timeout=60)
        shown = os.read(master, 4096)
    finally:
        os.close(master)
        os.close(slave)
    assert b"\x1b" not in shown and b"\\x1b[2J" in shown
