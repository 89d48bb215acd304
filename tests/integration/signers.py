"""Third-party DKIM and ARC signers for the mail authentication tests: dkimpy (in process) and OpenDKIM
(``opendkim -t`` in signing mode, whose output names the DKIM-Signature field it would insert)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dkim

from tests.dkimkeys import SigningKey

__all__ = ["arc_seal", "dkimpy_sign", "opendkim_sign"]


def dkimpy_sign(
    message: bytes, selector: str, domain: str, key: SigningKey, algorithm: bytes = b"rsa-sha256"
) -> bytes:
    signature = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        key.private,
        signature_algorithm=algorithm,
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    return bytes(signature) + message


def arc_seal(message: bytes, selector: str, domain: str, key: SigningKey, authserv_id: str) -> bytes:
    """dkimpy's ARC set for ``message``, which must carry an Authentication-Results field of
    ``authserv_id`` (the forwarder's own checks)."""
    fields = dkim.arc_sign(message, selector.encode(), domain.encode(), key.private, authserv_id.encode())
    return b"".join(fields) + message


def opendkim_sign(message: bytes, selector: str, domain: str, key: SigningKey, workdir: Path) -> bytes:
    """OpenDKIM's rsa-sha256 relaxed/relaxed signature of ``message`` (CRLF line ends), prepended."""
    workdir.mkdir(parents=True, exist_ok=True)
    keyfile = workdir / f"{selector}.private"
    keyfile.write_bytes(key.private)
    keyfile.chmod(0o600)
    conf = workdir / "sign.conf"
    conf.write_text(
        f"Mode s\nSyslog no\nRequireSafeKeys no\nDomain {domain}\nSelector {selector}\nKeyFile {keyfile}\n"
        "SignatureAlgorithm rsa-sha256\nCanonicalization relaxed/relaxed\n"
    )
    path = workdir / "message.eml"
    path.write_bytes(message.replace(b"\r\n", b"\n"))
    done = subprocess.run(
        ["opendkim", "-x", str(conf), "-t", str(path)], capture_output=True, timeout=60, check=True
    )
    found = re.search(rb"^DKIM-Signature: .*?(?=\n\S|\Z)", done.stdout, re.S | re.M)
    assert found is not None, done.stdout + done.stderr
    field = found.group(0).replace(b"\r\n", b"\n").rstrip(b"\n").replace(b"\n", b"\r\n")
    return field + b"\r\n" + message
