"""Real SMTP clients against a running Postier: Python's smtplib and aiosmtplib, and swaks.

Each test checks what a user would: the reply the client got, and that the message is in the queue
with its envelope and exact bytes behind the Received header Postier adds.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl

import aiosmtplib
import pytest

from tests.integration.harness import RunningServer, add_users
from tests.integration.mailcheck import queue_id_from_reply, queued_body, queued_envelope

pytestmark = pytest.mark.integration

MESSAGE = b"From: me@example.org\r\nTo: postmaster@localhost\r\nSubject: hi\r\n\r\nHello, Postier.\r\n"


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _smtplib_transaction(port: int, **options: object) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.example.org")
        if options.get("starttls"):
            client.starttls(context=_insecure_context())
            client.ehlo("client.example.org")
        mail_options = list(options.get("mail_options", []))  # type: ignore[call-overload]
        code, _ = client.mail(str(options.get("sender", "me@example.org")), mail_options)
        assert code == 250
        for rcpt in options.get("rcpts", ["postmaster@localhost"]):  # type: ignore[attr-defined]
            code, text = client.rcpt(rcpt)
            assert code == 250, text
        return client.data(options.get("body", MESSAGE))  # type: ignore[arg-type]


async def test_smtplib_plain(server: RunningServer) -> None:
    code, text = await asyncio.to_thread(_smtplib_transaction, server.smtp_port)
    assert code == 250
    assert text.startswith(b"2.0.0 Ok: queued as ")
    qid = queue_id_from_reply(text)
    envelope = await queued_envelope(server, qid)
    assert str(envelope.sender) == "me@example.org"
    assert [str(r.address) for r in envelope.recipients] == ["postmaster@localhost"]
    assert envelope.client.helo == "client.example.org"
    assert envelope.client.protocol == "ESMTP"
    body = await queued_body(server, qid)
    assert body.startswith(b"Received: from client.example.org ([127.0.0.1])\r\n\tby mx.test (Postier)")
    trace, message = body[: body.index(b"From: me@")], body[body.index(b"From: me@") :]
    assert message == MESSAGE  # byte for byte behind the one header Postier adds
    assert all(line.startswith((b"Received: ", b"\t")) for line in trace.split(b"\r\n")[:-1])


async def test_smtplib_starttls_8bitmime_smtputf8(server: RunningServer) -> None:
    body = "From: zoë@exämple.org\r\nSubject: ünïcode\r\n\r\nGrüße, 世界\r\n".encode()
    code, text = await asyncio.to_thread(
        _smtplib_transaction,
        server.smtp_port,
        starttls=True,
        sender="zoë@exämple.org",
        rcpts=["postmaster@localhost"],
        mail_options=["BODY=8BITMIME", "SMTPUTF8"],
        body=body,
    )
    assert code == 250
    qid = queue_id_from_reply(text)
    envelope = await queued_envelope(server, qid)
    assert envelope.smtputf8 is True
    assert envelope.body == "8BITMIME"
    assert envelope.client.protocol == "UTF8SMTPS"
    assert envelope.client.tls is not None and envelope.client.tls.startswith("TLSv1.")
    assert (await queued_body(server, qid)).endswith(body)


async def test_aiosmtplib_starttls_and_dot_stuffing(server: RunningServer) -> None:
    body = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=server.smtp_port, start_tls=True, tls_context=_insecure_context()
    )
    async with client:
        errors, text = await client.sendmail("me@example.org", ["postmaster@localhost"], body)
    assert errors == {}
    qid = queue_id_from_reply(text.encode())
    assert (await queued_body(server, qid)).endswith(body)


async def test_many_recipients_and_large_message(server: RunningServer) -> None:
    rcpts = [f"user{i}@example.test" for i in range(150)]
    await asyncio.to_thread(add_users, server.data_dir, *rcpts)  # 150 mailboxes: 150 queued recipients
    line = b"x" * 998 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * 5000  # about 5 MB
    code, text = await asyncio.to_thread(_smtplib_transaction, server.smtp_port, rcpts=rcpts, body=body)
    assert code == 250
    qid = queue_id_from_reply(text)
    envelope = await queued_envelope(server, qid)
    assert len(envelope.recipients) == 150
    assert (await queued_body(server, qid)).endswith(body)


async def _swaks(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "swaks",
        "--server",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


def _swaks_queue_id(transcript: str) -> str:
    lines = [line for line in transcript.splitlines() if "Ok: queued as" in line]
    assert lines, transcript
    return lines[-1].rsplit(" ", 1)[1]


@pytest.mark.parametrize(
    ("flags", "protocol"),
    [
        ([], "ESMTP"),
        (["--pipeline"], "ESMTP"),
        (["--tls"], "ESMTPS"),
        (["--tls", "--pipeline"], "ESMTPS"),
    ],
    ids=["plain", "pipelining", "starttls", "starttls-pipelining"],
)
async def test_swaks(server: RunningServer, flags: list[str], protocol: str) -> None:
    rc, out = await _swaks(
        f"127.0.0.1:{server.smtp_port}",
        "--from",
        "me@example.org",
        "--to",
        "postmaster@localhost",
        "--helo",
        "swaks.example.org",
        "--header",
        "Subject: swaks test",
        *flags,
    )
    assert rc == 0, out
    qid = _swaks_queue_id(out)
    envelope = await queued_envelope(server, qid)
    assert envelope.client.protocol == protocol
    assert b"Subject: swaks test" in await queued_body(server, qid)


async def test_swaks_many_recipients_pipelined(server: RunningServer) -> None:
    users = [f"user{i}@example.test" for i in range(120)]
    await asyncio.to_thread(add_users, server.data_dir, *users)
    rcpts = ",".join(users)
    # swaks would list all 120 in one To: line of over 1000 octets, which RFC 5321 §4.5.3.1.6 forbids.
    rc, out = await _swaks(
        f"127.0.0.1:{server.smtp_port}",
        "--to",
        rcpts,
        "--pipeline",
        "--header",
        "To: undisclosed-recipients:;",
    )
    assert rc == 0, out
    envelope = await queued_envelope(server, _swaks_queue_id(out))
    assert len(envelope.recipients) == 120


async def test_swaks_relay_refused_from_untrusted_network(start_server) -> None:  # type: ignore[no-untyped-def]
    server = await start_server(relay={"trusted_networks": []})
    rc, out = await _swaks(f"127.0.0.1:{server.smtp_port}", "--to", "someone@elsewhere.example")
    assert rc != 0
    assert "554 5.7.1 Relay access denied" in out
