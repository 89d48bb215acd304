"""The aliases file: format, lookups, errors with line numbers, reloads when the file changes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from postier.cli.main import main
from postier.mail.address import Address
from postier.recipients.aliases import AliasesError, AliasFile, parse_aliases

TEXT = """\
# the aliases of the test domains

Info:  alice, bob@example.org
sales@Example.ORG: carol,
   dave@partner.example
  # a comment inside a continued entry

verkauf@bücher.example: erik
"john"@example.org: john.smith
team: info, sales#1@example.org
"""


@pytest.mark.parametrize(
    ("address", "targets"),
    [
        (Address("info", "example.org"), ("alice", "bob@example.org")),
        (Address("INFO", "other.test"), ("alice", "bob@example.org")),  # a local part: every domain
        (Address("sales", "example.org"), ("carol", "dave@partner.example")),
        (Address("Sales", "EXAMPLE.org."), ("carol", "dave@partner.example")),
        (Address("sales", "other.test"), None),  # a whole address: that domain only
        (Address("verkauf", "xn--bcher-kva.example"), ("erik",)),
        (Address("verkauf", "BÜCHER.example"), ("erik",)),
        (Address("john", "example.org"), ("john.smith",)),  # "john" and john are one mailbox
        (Address("team", "example.org"), ("info", "sales#1@example.org")),  # "#" inside a line is text
        (Address("nobody", "example.org"), None),
        (Address("postmaster", ""), None),  # the bare <Postmaster> is never an alias key
        (Address("info", "[192.0.2.1]"), None),
    ],
)
def test_lookup(address: Address, targets: tuple[str, ...] | None) -> None:
    assert parse_aliases(TEXT).lookup(address) == targets


def test_whole_address_entry_wins_over_local_part() -> None:
    aliases = parse_aliases("info: alice\ninfo@example.org: bob\n")
    assert aliases.lookup(Address("info", "example.org")) == ("bob",)
    assert aliases.lookup(Address("info", "example.net")) == ("alice",)
    assert len(aliases) == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: b\nno colon here\n", 2, "expected"),
        ("a: b\n\n# c\nA: c\n", 4, "defined twice"),
        ("a:\n", 1, "no targets"),
        ("a: , ,\n", 1, "no targets"),
        ("a: b\nlog: |/usr/bin/logger\n", 2, "pipes or files"),
        ("a: /var/mail/a\n", 1, "pipes or files"),
        ("a: :include:/etc/list\n", 1, "pipes or files"),
        ("a: b c\n", 1, "not a local part or an address"),
        ("a: b@\n", 1, "not a local part or an address"),
        ("a b: c\n", 1, "not a local part or an address"),
        ("x@[192.0.2.1]: c\n", 1, "literal"),
        ("  a: b\n", 1, "continuation"),
        (": b\n", 1, "expected"),
    ],
)
def test_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(AliasesError) as caught:
        parse_aliases(text, "aliases")
    assert caught.value.line == line
    assert words in caught.value.message
    assert str(caught.value).startswith(f"aliases:{line}: ")


def test_continuation_error_is_reported_at_the_entry() -> None:
    with pytest.raises(AliasesError) as caught:
        parse_aliases("a: b\nc: d,\n   e f\n")
    assert caught.value.line == 2


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert len(AliasFile(tmp_path / "aliases").current()) == 0


def test_bad_file_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("a: b\nbroken\n")
    with pytest.raises(AliasesError, match=r"aliases:2: "):
        AliasFile(path)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_bytes(b"a: b\nc: \xff\n")
    with pytest.raises(AliasesError) as caught:
        AliasFile(path)
    assert caught.value.line == 2


def _bump_mtime(path: Path) -> None:
    """Make the change visible whatever the file system's timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_reload_when_the_file_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "aliases"
    path.write_text("info: alice\n")
    aliases = AliasFile(path)
    info = Address("info", "example.org")
    assert aliases.current().lookup(info) == ("alice",)

    path.write_text("info: bob\n")
    _bump_mtime(path)
    assert aliases.current().lookup(info) == ("bob",)

    # A broken edit keeps the last good table, logged once.
    path.write_text("info: bob\nbroken line\n")
    _bump_mtime(path)
    with caplog.at_level(logging.ERROR, logger="postier.users"):
        assert aliases.current().lookup(info) == ("bob",)
        assert aliases.current().lookup(info) == ("bob",)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and ":2: " in errors[0]

    path.unlink()
    assert aliases.current().lookup(info) is None  # removed: no aliases


@pytest.mark.parametrize(
    ("files", "code", "stderr"),
    [
        ({"aliases": "info: alice\n\nsales: |/bin/evil\n"}, 2, "aliases:3: '|/bin/evil': only addresses"),
        ({"aliases": "info alice\n"}, 2, 'aliases:1: expected "name: target, target'),
        ({"aliases": "info: alice\n"}, 0, ""),
        ({}, 0, ""),  # no aliases file: no aliases
    ],
)
def test_check_config_validates_the_aliases_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], code: int, stderr: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    config = tmp_path / "postier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path}"\n')
    assert main(["check-config", "-c", str(config)]) == code
    err = capsys.readouterr().err
    assert stderr in err if stderr else err == ""


def test_check_config_validates_the_local_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "postier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path}"\n[local]\nlmtp = {{ "other.test" = "unix:/x" }}\n')
    assert main(["check-config", "-c", str(config)]) == 2
    assert "local.lmtp.other.test: not one of relay.local_domains" in capsys.readouterr().err


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_bytes("\ufeffinfo: alice\r\nteam: bob\r\n".encode())  # as saved by some Windows editors
    aliases = AliasFile(path).current()
    assert aliases.lookup(Address("info", "example.org")) == ("alice",)
    assert aliases.lookup(Address("team", "example.org")) == ("bob",)


def test_check_config_reads_relay_password_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A password file that serve could not read is found by check-config too."""
    config = tmp_path / "postier.toml"
    config.write_text(
        f'[server]\ndata_dir = "{tmp_path}"\n[relay]\nsmarthost = "smtp.provider.test:587"\n'
        f'smarthost_username = "me"\nsmarthost_password_file = "{tmp_path / "missing"}"\n'
    )
    assert main(["check-config", "-c", str(config)]) == 2
    assert "relay.smarthost_password_file" in capsys.readouterr().err
    (tmp_path / "missing").write_text("secret\n")
    assert main(["check-config", "-c", str(config)]) == 0
    assert "secret" not in capsys.readouterr().out


def test_check_config_loads_the_delivery_ca_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    config = tmp_path / "postier.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path}"\n[delivery]\nca_file = "{bad}"\n')
    assert main(["check-config", "-c", str(config)]) == 2
    assert "delivery.ca_file" in capsys.readouterr().err
