"""``postier tls records``: the records to publish for our domains, checked with our own parsers."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import tomli_w
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from postier.delivery.security.mtasts import StsMode, StsPolicy, parse_policy, parse_record
from postier.delivery.security.publish import records_for
from postier.delivery.security.tlsrpt import parse_rua


def test_records_parse_with_our_own_readers() -> None:
    pem = trustme.CA().issue_cert("mx.example.org").cert_chain_pems[0].bytes()
    published = records_for("example.org", "MX.example.org.", pem, StsMode.ENFORCE)
    assert parse_policy(published.policy) == StsPolicy(StsMode.ENFORCE, 604_800, ("mx.example.org",))
    sts, _, rpt, tlsa = published.records
    assert parse_record([sts.split("TXT", 1)[1].strip().strip('"')]) is not None
    assert parse_rua([rpt.split("TXT", 1)[1].strip().strip('"')]) == ["mailto:tlsrpt@example.org"]
    spki = (
        x509.load_pem_x509_certificate(pem)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    assert tlsa.startswith(f"_25._tcp.mx.example.org.  TLSA  3 1 1 {hashlib.sha256(spki).hexdigest()}")
    assert published.policy_url == "https://mta-sts.example.org/.well-known/mta-sts.txt"
    other = records_for("example.org", "mx.example.org", None, StsMode.TESTING)
    assert other.records[0] != sts and len(other.records) == 3  # a new policy, a new id; no TLSA


def test_cli_prints_records_for_each_local_domain(tmp_path: Path) -> None:
    config = {
        "server": {"hostname": "mx.example.org", "data_dir": str(tmp_path)},
        "relay": {"local_domains": ["localhost", "example.org", "example.net"]},
    }
    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(config))
    argv = [sys.executable, "-m", "postier", "tls", "records", "-c", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert '_mta-sts.example.org.  TXT  "v=STSv1; id=' in done.stdout
    assert '_smtp._tls.example.net.  TXT  "v=TLSRPTv1; rua=mailto:tlsrpt@example.net"' in done.stdout
    assert ";   mx: mx.example.org" in done.stdout and "localhost" not in done.stdout
