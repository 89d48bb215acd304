"""``python -m bench.dkim_micro``: the cost of DKIM signing one message, Postier's signer against
dkimpy's (the library evaluation's other candidate), and dkimpy verifying Postier's signatures.

Per size (1 KiB, 10 KiB, 100 KiB by default), each signer signs the same message ``--count`` times
per round; the median over rounds of the time per message, in µs, is printed: wall clock (its
minimum too) and CPU time of this process (steadier on a shared, loaded machine). Variants alternate in
each round (A B C … then … C B A) so a drift of the machine's load hits all alike.

    .venv/bin/python -m bench.dkim_micro --rounds 5
"""

from __future__ import annotations

import argparse
import base64
import statistics
import time
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization

from postier.mailauth.dkim.keys import generate_key, key_to_pem, public_record
from postier.mailauth.dkim.signer import SigningKey, sign_message

HEADER = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: a benchmark message\r\n"
    b"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <bench@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
)
ED, RSA = generate_key("ed25519"), generate_key("rsa")
RECORDS = {
    b"ed._domainkey.example.org.": public_record(ED).encode(),
    b"rsa._domainkey.example.org.": public_record(RSA).encode(),
}


def message(size: int) -> bytes:
    """``size`` octets in all: the header above and lines of 76 letters."""
    line = b"abcdefghij klmnopqrst uvwxyz ABCDEFGHIJ KLMNOPQRST UVWXYZ 0123456789 abcdef\r\n"
    body = (line * (size // len(line) + 1))[: max(size - len(HEADER) - 2, 0)] + b"\r\n"
    return HEADER + body


def _dkimpy_ed_key() -> bytes:
    """dkimpy takes an Ed25519 private key as the base64 of its 32 raw octets."""
    raw = ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw)


def variants(msg: bytes) -> dict[str, Callable[[], bytes]]:
    now = time.time()
    ed = (SigningKey("example.org", "ed", ED),)
    rsa = (SigningKey("example.org", "rsa", RSA),)
    rsa_pem, ed_b64 = key_to_pem(RSA), _dkimpy_ed_key()
    ours_both = sign_message(msg, ed + rsa, now=now) + msg

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        return RECORDS.get(name)

    return {
        "postier ed25519": lambda: sign_message(msg, ed, now=now),
        "postier rsa-2048": lambda: sign_message(msg, rsa, now=now),
        "postier both": lambda: sign_message(msg, ed + rsa, now=now),
        "dkimpy ed25519": lambda: dkim.sign(
            msg,
            b"ed",
            b"example.org",
            ed_b64,
            signature_algorithm=b"ed25519-sha256",
            canonicalize=(b"relaxed", b"relaxed"),
        ),
        "dkimpy rsa-2048": lambda: dkim.sign(
            msg, b"rsa", b"example.org", rsa_pem, canonicalize=(b"relaxed", b"relaxed")
        ),
        "dkimpy verifies postier's two": lambda: b"x" if dkim.verify(ours_both, dnsfunc=dns) else b"",
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dkim_micro", description=__doc__)
    p.add_argument("--size", type=int, action="append", help="message octets (repeatable)")
    p.add_argument("--count", type=int, default=300, help="messages per variant per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    for size in args.size or [1024, 10 * 1024, 100 * 1024]:
        msg = message(size)
        runs = variants(msg)
        assert runs["dkimpy verifies postier's two"]() == b"x"
        got: dict[str, list[float]] = {name: [] for name in runs}
        cpu_us: dict[str, list[float]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else reversed(names):
                fn = runs[name]
                count = max(args.count // 10, 5) if name.startswith("dkimpy rsa") else args.count
                start, cpu = time.perf_counter(), time.process_time()
                for _ in range(count):
                    fn()
                got[name].append((time.perf_counter() - start) / count * 1e6)
                cpu_us[name].append((time.process_time() - cpu) / count * 1e6)
        print(f"{len(msg):,} octets:")
        for name, values in got.items():
            wall, cpu = statistics.median(values), statistics.median(cpu_us[name])
            print(f"  {name:32s} {wall:10,.1f} µs/msg (min {min(values):,.1f}), CPU {cpu:,.1f} µs/msg")


if __name__ == "__main__":
    main()
