"""Local recipients end to end: swaks and smtplib → Postier → Maildir, checked at RCPT time.

Unknown users are refused during the session (550 5.1.1, never accept-then-bounce), aliases expand
before the message is queued (an external target becomes a queued remote recipient), postmaster
always exists, and the quota refuses a full mailbox at RCPT (452 4.2.2) and a message that would not
fit at delivery (552 5.2.2)."""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postier.app import Application
from postier.config import parse_config
from postier.observe.logs import FIELDS_ATTR
from postier.queue import RecipientState
from postier.recipients import AliasesError
from tests.integration.conftest import StartServer
from tests.integration.dnsserver import DnsServer, dns_server_factory  # noqa: F401 (fixture)
from tests.integration.harness import (
    PostierProcess,
    RunningServer,
    add_users,
    free_port,
    make_config,
    wait_for_port,
)
from tests.integration.mailcheck import queue_id_from_reply
from tests.integration.peers import AiosmtpdPeer

pytestmark = pytest.mark.integration

SENDER = "me@example.org"


async def _swaks(port: int, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        f"127.0.0.1:{port}",
        "--from",
        SENDER,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def _smtplib_send(port: int, rcpts: list[str], body: bytes) -> tuple[dict[str, tuple[int, bytes]], bytes]:
    """RCPT each recipient; DATA when one was accepted. (refusals by address, end-of-data reply)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail(SENDER)
        refused = {}
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code != 250:
                refused[rcpt] = (code, text)
        if len(refused) == len(rcpts):
            client.rset()
            return refused, b""
        code, text = client.data(body)
        assert code == 250, text
        return refused, text


async def _files(maildir: Path, count: int = 1) -> list[Path]:
    """The files in ``maildir/new`` once there are ``count`` of them (delivery runs in the background)."""
    new = maildir / "new"
    for _ in range(400):
        files = sorted(new.iterdir()) if new.is_dir() else []
        if len(files) >= count:
            return files
        await asyncio.sleep(0.05)
    raise AssertionError(f"no delivery to {maildir}")


async def _final_state(server: RunningServer, qid: str) -> list[tuple[str, RecipientState, str | None]]:
    """(address, state, last reply) of each recipient once none is queued any more."""
    for _ in range(400):
        record = await server.app.queue.get(qid)
        if all(r.state is not RecipientState.QUEUED for r in record.recipients):
            return [(str(r.recipient.address), r.state, r.last_reply) for r in record.recipients]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{qid} still queued")


def _mailbox(server: RunningServer, domain: str, user: str) -> Path:
    return server.data_dir / "mail" / domain / user


async def test_swaks_to_a_user_lands_in_the_maildir(start_server: StartServer) -> None:
    server = await start_server()
    await asyncio.to_thread(add_users, server.data_dir, "alice@example.test")
    rc, out = await _swaks(
        server.smtp_port, "--to", "Alice+news@EXAMPLE.test", "--header", "Subject: local", "--body", "hello"
    )
    assert rc == 0, out
    qid = out.rsplit("Ok: queued as ", 1)[1].split()[0]
    record = await server.app.queue.get(qid)
    [alice] = record.recipients
    assert (str(alice.recipient.address), alice.recipient.orcpt) == (
        "alice@example.test",
        "rfc822;Alice+news@EXAMPLE.test",
    )
    [stored] = await _files(_mailbox(server, "example.test", "alice"))
    body = await server.app.queue.read_body(qid)
    assert stored.read_bytes() == (
        b"Return-Path: <me@example.org>\r\nDelivered-To: alice@example.test\r\n" + body
    )
    assert b"Subject: local\r\n" in body and b"\r\n\r\nhello\r\n" in body


async def test_smtplib_exact_bytes_with_the_added_headers(start_server: StartServer) -> None:
    server = await start_server()
    await asyncio.to_thread(add_users, server.data_dir, "bob@example.test")
    message = b"Subject: bytes\r\nX-Odd: \xc3\xa9t\xc3\xa9\r\n\r\n.leading dot\r\n..two dots\r\nlast\r\n"
    refused, reply = await asyncio.to_thread(_smtplib_send, server.smtp_port, ["bob@example.test"], message)
    assert refused == {}
    qid = queue_id_from_reply(reply)
    [stored] = await _files(_mailbox(server, "example.test", "bob"))
    data = stored.read_bytes()
    head = b"Return-Path: <me@example.org>\r\nDelivered-To: bob@example.test\r\nReceived: "
    assert data.startswith(head)
    assert data.endswith(b"\r\n" + message)  # exactly as sent, after the Received header
    assert data == data[: len(data) - len(message)] + message
    assert (await _final_state(server, qid)) == [
        ("bob@example.test", RecipientState.DELIVERED, "250 2.0.0 Delivered to maildir")
    ]


async def test_unknown_user_is_refused_at_rcpt_by_swaks(start_server: StartServer) -> None:
    server = await start_server()
    rc, out = await _swaks(server.smtp_port, "--to", "nobody@example.test")
    assert rc != 0
    assert "<** 550 5.1.1 No such user here" in out
    assert "DATA" not in out.split("550 5.1.1", 1)[1]  # the transaction ends at RCPT
    assert await server.app.queue.list_messages() == []


async def test_unknown_user_is_refused_at_rcpt_by_smtplib(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server()
    await asyncio.to_thread(add_users, server.data_dir, "carol@example.test")
    rcpts = ["nobody@example.test", "carol@example.test", "ghost@localhost"]
    with caplog.at_level(logging.INFO, logger="postier.mail"):
        refused, reply = await asyncio.to_thread(
            _smtplib_send, server.smtp_port, rcpts, b"Subject: x\r\n\r\nx\r\n"
        )
    rejects = [getattr(r, FIELDS_ATTR) for r in caplog.records if r.getMessage() == "reject"]
    assert [(f["stage"], f["rcpt"], f["reply"], f["reason"]) for f in rejects] == [
        ("rcpt", "<nobody@example.test>", "550 5.1.1 No such user here", "unknown user"),
        ("rcpt", "<ghost@localhost>", "550 5.1.1 No such user here", "unknown user"),
    ]
    assert refused == {
        "nobody@example.test": (550, b"5.1.1 No such user here"),
        "ghost@localhost": (550, b"5.1.1 No such user here"),
    }
    record = await server.app.queue.get(queue_id_from_reply(reply))
    assert [str(r.recipient.address) for r in record.recipients] == ["carol@example.test"]


async def test_postmaster_always_exists(start_server: StartServer) -> None:
    server = await start_server()  # no users at all
    rcpts = ["postmaster@localhost", "PostMaster@example.test", "Postmaster"]
    refused, reply = await asyncio.to_thread(
        _smtplib_send, server.smtp_port, rcpts, b"Subject: pm\r\n\r\npm\r\n"
    )
    assert refused == {}
    record = await server.app.queue.get(queue_id_from_reply(reply))
    # The bare <Postmaster> is postmaster@ the first local domain (localhost in the harness).
    assert [str(r.recipient.address) for r in record.recipients] == [
        "postmaster@localhost",
        "postmaster@example.test",
    ]
    await _files(_mailbox(server, "localhost", "postmaster"))
    await _files(_mailbox(server, "example.test", "postmaster"))


async def test_alias_to_an_external_address_is_a_queued_remote_recipient(
    start_server: StartServer, tmp_path: Path
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("# team aliases\nsales: dana, partner@remote.example\nloop1: loop2\nloop2: loop1\n")
    server = await start_server(local={"aliases": str(aliases)})
    await asyncio.to_thread(add_users, server.data_dir, "dana@example.test")
    refused, reply = await asyncio.to_thread(
        _smtplib_send,
        server.smtp_port,
        ["sales@example.test", "loop1@example.test"],
        b"Subject: s\r\n\r\ns\r\n",
    )
    assert refused == {"loop1@example.test": (550, b"5.1.1 No such user here")}
    record = await server.app.queue.get(queue_id_from_reply(reply))
    assert [(str(r.recipient.address), r.recipient.orcpt) for r in record.recipients] == [
        ("dana@example.test", "rfc822;sales@example.test"),
        ("partner@remote.example", "rfc822;sales@example.test"),
    ]
    [stored] = await _files(_mailbox(server, "example.test", "dana"))
    assert b"Delivered-To: dana@example.test\r\n" in stored.read_bytes()


async def test_quota_452_at_rcpt_and_552_at_delivery(start_server: StartServer) -> None:
    server = await start_server(local={"quota_bytes": 4000})
    await asyncio.to_thread(add_users, server.data_dir, "erin@example.test", "full@example.test")
    full = _mailbox(server, "example.test", "full")
    (full / "cur").mkdir(parents=True)
    (full / "cur" / "old-mail:2,S").write_bytes(b"x" * 4000)  # exactly at the quota

    refused, _ = await asyncio.to_thread(_smtplib_send, server.smtp_port, ["full@example.test"], b"x\r\n")
    assert refused == {"full@example.test": (452, b"4.2.2 Mailbox full, try again later")}

    first = b"Subject: 1\r\n\r\n" + (b"a" * 98 + b"\r\n") * 20
    _, reply = await asyncio.to_thread(_smtplib_send, server.smtp_port, ["erin@example.test"], first)
    assert (await _final_state(server, queue_id_from_reply(reply)))[0][1] is RecipientState.DELIVERED

    # Erin's mailbox is not full (RCPT is accepted), but this one does not fit: 552 at delivery.
    second = b"Subject: 2\r\n\r\n" + (b"b" * 98 + b"\r\n") * 20
    refused, reply = await asyncio.to_thread(_smtplib_send, server.smtp_port, ["erin@example.test"], second)
    assert refused == {}
    [(address, state, last_reply)] = await _final_state(server, queue_id_from_reply(reply))
    assert (address, state) == ("erin@example.test", RecipientState.FAILED)
    assert last_reply is not None and last_reply.startswith("552 5.2.2 ")
    assert len(await _files(_mailbox(server, "example.test", "erin"))) == 1


async def test_an_aliases_file_with_an_error_stops_the_start(
    start_server: StartServer, tmp_path: Path
) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("info: alice\ninfo: bob\n")
    with pytest.raises(AliasesError, match=r"aliases:2: 'info' is defined twice"):
        await start_server(local={"aliases": str(aliases)})


def _smtplib_utf8(port: int, rcpt: str, body: bytes) -> bytes:
    """One message with SMTPUTF8 (RFC 6531) from smtplib: MAIL FROM … SMTPUTF8, then RCPT."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        assert client.has_extn("smtputf8")
        code, text = client.mail(SENDER, options=["SMTPUTF8"])
        assert code == 250, text
        code, text = client.rcpt(rcpt)
        assert code == 250, (code, text)
        code, text = client.data(body)
        assert code == 250, text
        return text


async def test_idn_domain_by_a_label_and_by_u_label_reaches_one_mailbox(start_server: StartServer) -> None:
    # An untrusted client (not in trusted_networks): the relay policy must see the domain as local too.
    relay = {"local_domains": ["localhost", "Bücher.Example"], "trusted_networks": ["192.0.2.0/24"]}
    server = await start_server(relay=relay)
    await asyncio.to_thread(add_users, server.data_dir, "leser@bücher.example", "jürgen@bücher.example")
    body = b"Subject: idn\r\n\r\nHallo\r\n"
    _, plain = await asyncio.to_thread(_smtplib_send, server.smtp_port, ["Leser@XN--BCHER-KVA.example"], body)
    utf8 = await asyncio.to_thread(_smtplib_utf8, server.smtp_port, "leser@BÜCHER.example", body)
    utf8_local = await asyncio.to_thread(_smtplib_utf8, server.smtp_port, "Jürgen@bücher.example", body)
    nobody = "nobody@xn--bcher-kva.example"
    refused, _ = await asyncio.to_thread(_smtplib_send, server.smtp_port, [nobody], body)
    assert refused == {nobody: (550, b"5.1.1 No such user here")}
    for reply in (plain, utf8, utf8_local):
        [(_, state, _)] = await _final_state(server, queue_id_from_reply(reply))
        assert state is RecipientState.DELIVERED
    domain = server.data_dir / "mail" / "xn--bcher-kva.example"
    assert sorted(p.name for p in domain.iterdir()) == ["jürgen", "leser"]
    files = await _files(domain / "leser", 2)
    assert [f.read_bytes().split(b"\r\n", 2)[1] for f in files] == [
        b"Delivered-To: leser@xn--bcher-kva.example"
    ] * 2
    [jurgen] = await _files(domain / "jürgen")
    assert jurgen.read_bytes().split(b"\r\n", 2)[1] == "Delivered-To: jürgen@xn--bcher-kva.example".encode()


async def test_sub_addressing_two_delimiters_and_a_user_named_with_one(start_server: StartServer) -> None:
    server = await start_server(local={"recipient_delimiter": "+-"})
    await asyncio.to_thread(add_users, server.data_dir, "a@example.test", "a+b@example.test")
    for rcpt in ("a+b@example.test", "a-news@example.test", "a+c@example.test", "A+B@example.test"):
        rc, out = await _swaks(server.smtp_port, "--to", rcpt, "--body", rcpt)
        assert rc == 0, out
    whole = await _files(_mailbox(server, "example.test", "a+b"), 2)
    cut = await _files(_mailbox(server, "example.test", "a"), 2)
    assert {f.read_bytes().split(b"\r\n", 2)[1] for f in whole} == {b"Delivered-To: a+b@example.test"}
    assert {f.read_bytes().split(b"\r\n", 2)[1] for f in cut} == {b"Delivered-To: a@example.test"}
    rc, out = await _swaks(server.smtp_port, "--to", "b-a@example.test")
    assert rc != 0 and "550 5.1.1" in out


async def test_alias_to_an_external_address_from_an_untrusted_client_is_relayed_with_its_sender(
    start_server: StartServer,
    tmp_path: Path,
    dns_server_factory: Callable[..., DnsServer],  # noqa: F811 (the fixture)
    aiosmtpd_peer: Callable[..., Any],
) -> None:
    peer: AiosmtpdPeer = await aiosmtpd_peer()
    dns = dns_server_factory(
        {"remote.example": {"MX": ["10 mx.remote.example"]}, "mx.remote.example": {"A": [peer.address]}}
    )
    aliases = tmp_path / "aliases"
    aliases.write_text("fwd: partner@remote.example, dana\n")
    server = await start_server(
        relay={"trusted_networks": ["192.0.2.0/24"]},  # 127.0.0.1 is an ordinary client of the Internet
        dns={"nameservers": [f"{dns.host}:{dns.port}"]},
        local={"aliases": str(aliases)},
        delivery={"retry_base_s": 0.3, "retry_cap_s": 0.3},
    )
    await asyncio.to_thread(add_users, server.data_dir, "dana@example.test")
    rc, out = await _swaks(server.smtp_port, "--to", "partner@remote.example")
    assert rc != 0 and "<** 554 5.7.1 Relay access denied" in out  # no open relay …
    rc, out = await _swaks(server.smtp_port, "--to", "fwd@example.test", "--body", "forward me")
    assert rc == 0, out  # … but a local alias is local, and its external target is relayed
    qid = out.rsplit("Ok: queued as ", 1)[1].split()[0]
    states = await _final_state(server, qid)
    assert [(a, s) for a, s, _ in states] == [
        ("partner@remote.example", RecipientState.DELIVERED),
        ("dana@example.test", RecipientState.DELIVERED),
    ]
    [relayed] = peer.messages
    # The envelope sender stays the original one: no SRS (docs/delivery.md), so SPF may fail there.
    assert (relayed.sender, relayed.recipients) == (SENDER, ("partner@remote.example",))
    assert relayed.body.replace(b"\r\n", b"\n") == (await server.app.queue.read_body(qid)).replace(
        b"\r\n", b"\n"
    )


class _PostierInTmpfsMail(PostierProcess):
    """``postier serve`` whose ``data_dir/mail`` is a small tmpfs, filled up before it starts, in a
    private mount namespace (as tests/integration/test_queue_faults.py). The test reaches that tmpfs
    through ``/proc/<pid>/root``, which resolves paths in the child's mount namespace."""

    def start(self) -> None:
        mail = Path(self.config.server.data_dir) / "mail"
        mail.mkdir(parents=True)
        script = (
            f"mount -t tmpfs -o size=256k tmpfs {mail} && "
            f'(dd if=/dev/zero of={mail}/filler bs=4k 2>/dev/null; true) && exec "$@"'
        )
        command = [
            sys.executable,
            "-m",
            "postier",
            "serve",
            "--allow-root",
            "--config",
            str(self.config_path),
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_for_port(self.ports["smtp"], alive=self.proc, log=self.log_path)

    def inside(self, path: Path) -> Path:
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / path.relative_to("/")


async def _until(condition: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    for _ in range(600):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; the server's log:\n{log()}")


async def test_disk_full_in_maildir_defers_451_and_delivers_once_there_is_room(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    config = make_config(data_dir, delivery={"retry_base_s": 0.3, "retry_cap_s": 0.3})
    child = _PostierInTmpfsMail(tmp_path, config)
    add_users(data_dir, "alice@example.test")
    child.start()
    try:
        message = b"Subject: full\r\n\r\n" + (b"0123456789abcdef" * 4 + b"\r\n") * 256  # 16 KiB
        refused, reply = await asyncio.to_thread(
            _smtplib_send, child.ports["smtp"], ["alice@example.test"], message
        )
        assert refused == {}
        qid = queue_id_from_reply(reply)
        deferred = f"id={qid} rcpt=<alice@example.test> result=deferred relay=maildir:example.test "

        def deferred_451() -> bool:  # the TLS fields (tls_policy=, source=) come between relay and reply
            return any(deferred in line and 'reply="451 4.3.0 ' in line for line in child.log().splitlines())

        await _until(deferred_451, "the 451 deferral", child.log)
        maildir = child.inside(data_dir / "mail" / "example.test" / "alice")
        assert list((maildir / "tmp").iterdir()) == []  # the partial file was removed
        assert list((maildir / "new").iterdir()) == []
        assert f"id={qid} rcpt=<alice@example.test> result=failed" not in child.log()

        child.inside(data_dir / "mail" / "filler").unlink()  # room again: the next attempt delivers
        delivered = f"id={qid} rcpt=<alice@example.test> result=delivered"
        await _until(lambda: delivered in child.log(), "the delivery", child.log)
        [stored] = list((maildir / "new").iterdir())
        data = stored.read_bytes()
        assert data.startswith(b"Return-Path: <me@example.org>\r\nDelivered-To: alice@example.test\r\n")
        assert data.endswith(b"\r\n" + message)
        assert child.log().count(delivered) == 1
    finally:
        child.stop()


async def test_the_embedded_defaults_deliver_localhost_to_maildir(tmp_path: Path) -> None:
    """The README tour: nothing configured but where to listen and store, mail to postmaster@localhost
    is in data_dir/mail/localhost/postmaster/new/ a moment later."""
    port = free_port()
    config = parse_config(
        {"server": {"data_dir": str(tmp_path / "var")}, "listener": [{"address": f"127.0.0.1:{port}"}]}
    )
    assert (config.relay.local_domains, config.local.lmtp) == (("localhost",), {})
    app = Application(config)
    await app.start()
    try:
        rc, out = await _swaks(port, "--to", "postmaster@localhost", "--body", "the tour")
        assert rc == 0, out
        [stored] = await _files(tmp_path / "var" / "mail" / "localhost" / "postmaster")
        assert stored.read_bytes().startswith(
            b"Return-Path: <me@example.org>\r\nDelivered-To: postmaster@localhost\r\nReceived: "
        )
        rc, out = await _swaks(port, "--to", "you@localhost")
        assert "<** 550 5.1.1 No such user here" in out  # until `postier user add you@localhost`
    finally:
        await app.stop()


def _smtplib_data_reply(port: int, rcpt: str, body: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail(SENDER)
        code, text = client.rcpt(rcpt)
        assert code == 250, text
        return client.data(body)


async def test_a_forwarding_loop_is_stopped_by_the_hop_count(
    start_server: StartServer, tmp_path: Path
) -> None:
    """RFC 5321 §6.3: a message that already has 100 Received headers is in a loop (an alias that
    forwards to a server that forwards back): refused at the end of data, 554 5.4.6, never queued."""
    server = await start_server()
    await asyncio.to_thread(add_users, server.data_dir, "bob@example.test")
    hop = b"Received: from a.example by b.example with ESMTP id X;\r\n\tSun, 29 Nov 2026 10:00:00 +0000\r\n"
    rest = b"Subject: loop\r\n\r\nReceived: in the body is no hop\r\n"
    code, text = await asyncio.to_thread(
        _smtplib_data_reply, server.smtp_port, "bob@example.test", hop * 100 + rest
    )
    assert (code, text[:5]) == (554, b"5.4.6"), text
    assert await server.app.queue.list_messages() == []
    code, text = await asyncio.to_thread(
        _smtplib_data_reply, server.smtp_port, "bob@example.test", hop * 99 + rest
    )
    assert code == 250, text
    [stored] = await _files(_mailbox(server, "example.test", "bob"))
    assert stored.read_bytes().count(b"\nReceived: from a.example") == 99


async def test_a_mailbox_path_template(start_server: StartServer, tmp_path: Path) -> None:
    vmail = tmp_path / "vmail"
    server = await start_server(local={"mailbox_path": f"{vmail}/{{domain}}/{{user}}/Maildir"})
    await asyncio.to_thread(add_users, server.data_dir, "Erin@example.test")
    rc, out = await _swaks(server.smtp_port, "--to", "erin+x@EXAMPLE.test")
    assert rc == 0, out
    [stored] = await _files(vmail / "example.test" / "erin" / "Maildir")
    assert stored.read_bytes().startswith(
        b"Return-Path: <me@example.org>\r\nDelivered-To: Erin@example.test\r\n"
    )
    assert not (server.data_dir / "mail").exists()


async def test_nested_aliases_and_a_catch_all_to_maildir(start_server: StartServer, tmp_path: Path) -> None:
    aliases = tmp_path / "aliases"
    aliases.write_text("team: sales, bob\nsales@example.test: carol\n")
    server = await start_server(
        local={"aliases": str(aliases), "catch_all": {"example.test": "bob@example.test"}}
    )
    await asyncio.to_thread(add_users, server.data_dir, "bob@example.test", "carol@example.test")
    refused, reply = await asyncio.to_thread(
        _smtplib_send,
        server.smtp_port,
        ["team@example.test", "whoever@example.test", "sales@localhost"],
        b"Subject: t\r\n\r\nt\r\n",
    )
    # sales@ is an alias of example.test only; localhost has no catch-all.
    assert refused == {"sales@localhost": (550, b"5.1.1 No such user here")}
    record = await server.app.queue.get(queue_id_from_reply(reply))
    assert [(str(r.recipient.address), r.recipient.orcpt) for r in record.recipients] == [
        ("carol@example.test", "rfc822;team@example.test"),
        ("bob@example.test", "rfc822;team@example.test"),  # once: whoever@ is bob too (deduplicated)
    ]
    assert len(await _files(_mailbox(server, "example.test", "carol"))) == 1
    assert len(await _files(_mailbox(server, "example.test", "bob"))) == 1
