"""Keys on disk (0600, atomic, never overwritten; an unreadable file is reported and the others
load) and the decision of which keys sign: only a key whose record matches, the newest one, with
rotation's next / retiring / retired states, pinned selectors, disabled domains, and DNS outages."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postier.config.dkim import DkimConfig, DkimKeyConfig
from postier.mailauth.dkim.keys import generate_key, key_to_pem
from postier.mailauth.dkim.keystore import KeyFile, load_keys, note_seen, write_key
from postier.mailauth.dkim.table import Lookup, Published, State, build_signer, decide

T0 = datetime(2026, 12, 1, tzinfo=UTC)
MATCH, MISSING, BROKEN = Lookup(Published.MATCHES), Lookup(Published.MISSING), Lookup(Published.UNKNOWN)
OTHER = Lookup(Published.MISMATCH, "p= is another key")


def _key(selector: str, days: int, algorithm: str = "ed25519", seen: int | None = None) -> KeyFile:
    return KeyFile(
        "example.org",
        selector,
        Path(f"/k/{selector}.pem"),
        generate_key("ed25519" if algorithm == "ed25519" else "rsa"),
        T0 + timedelta(days=days),
        None if seen is None else T0 + timedelta(days=seen),
    )


def _states(
    keys: list[KeyFile], lookups: dict[str, Lookup], now_days: int = 0, **config: object
) -> dict[str, State]:
    found = decide(
        keys,
        {Path(f"/k/{s}.pem"): lookup for s, lookup in lookups.items()},
        DkimConfig(**config),  # type: ignore[arg-type]
        T0 + timedelta(days=now_days),
    )
    return {s.key.selector: s.state for s in found}


def test_write_key_is_private_atomic_and_never_overwrites(tmp_path: Path) -> None:
    entry = write_key(tmp_path / "dkim", "Example.ORG", "s1", generate_key("ed25519"), T0)
    assert entry.path == tmp_path / "dkim" / "example.org" / "s1.pem"
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.path.parent.stat().st_mode) == 0o700
    assert not [p for p in entry.path.parent.iterdir() if p.name.startswith(".")]  # no temp file left
    with pytest.raises(FileExistsError):
        write_key(tmp_path / "dkim", "example.org", "s1", generate_key("ed25519"), T0)
    [loaded], problems = load_keys(tmp_path / "dkim")
    assert (loaded.domain, loaded.selector, loaded.created_at, loaded.seen_at, problems) == (
        "example.org",
        "s1",
        T0,
        None,
        [],
    )
    note_seen(loaded, T0 + timedelta(hours=1))
    [again], _ = load_keys(tmp_path / "dkim")
    assert again.seen_at == T0 + timedelta(hours=1)


def test_an_unreadable_key_is_reported_and_the_others_load(tmp_path: Path) -> None:
    root = tmp_path / "dkim"
    write_key(root, "example.org", "good", generate_key("ed25519"), T0)
    (root / "example.org" / "junk.pem").write_text("not a key")
    locked = write_key(root, "example.org", "locked", generate_key("ed25519"), T0).path
    os.chmod(locked, 0o000)
    outside = tmp_path / "elsewhere.pem"
    outside.write_bytes(key_to_pem(generate_key("rsa")))
    configured = [
        DkimKeyConfig(domain="other.test", selector="ext", file=str(outside)),
        DkimKeyConfig(domain="other.test", selector="gone", file="missing.pem"),
    ]
    keys, problems = load_keys(root, configured, tmp_path)
    names = {(k.domain, k.selector) for k in keys}
    assert ("example.org", "good") in names and ("other.test", "ext") in names
    bad = {p.path.name for p in problems}
    assert {"junk.pem", "missing.pem"} <= bad
    if os.geteuid() != 0:  # root reads a 0000 file anyway
        assert "locked.pem" in bad


def test_only_a_key_whose_record_matches_signs() -> None:
    a = _key("a", 0)
    assert _states([a], {"a": MATCH}) == {"a": State.ACTIVE}
    assert _states([a], {"a": MISSING}) == {"a": State.UNPUBLISHED}
    assert _states([a], {"a": OTHER}) == {"a": State.MISMATCH}
    assert _states([a], {"a": BROKEN}) == {"a": State.UNPUBLISHED}  # never seen: not trusted yet
    assert _states([_key("a", 0, seen=0)], {"a": BROKEN}) == {"a": State.ACTIVE}  # a DNS outage


def test_rotation_next_then_active_then_old_retiring_then_retired() -> None:
    old, new = _key("old", 0, seen=0), _key("new", 10)
    assert _states([old, new], {"old": MATCH, "new": MISSING}, 10) == {"old": State.ACTIVE, "new": State.NEXT}
    new = _key("new", 10, seen=11)  # its record is seen on day 11
    states = _states([old, new], {"old": MATCH, "new": MATCH}, 12, rotation_grace_s=7 * 86400)
    assert states == {"old": State.RETIRING, "new": State.ACTIVE}
    states = _states([old, new], {"old": MATCH, "new": MATCH}, 18, rotation_grace_s=7 * 86400)
    assert states == {"old": State.RETIRED, "new": State.ACTIVE}
    assert _states([old, new], {"old": MATCH, "new": OTHER}, 12)["old"] is State.ACTIVE


def test_two_algorithms_sign_twice_ed25519_first() -> None:
    keys = [_key("r", 0, "rsa"), _key("e", 1)]
    statuses = decide(keys, {k.path: MATCH for k in keys}, DkimConfig(expire_s=60), T0)
    signer = build_signer(statuses, DkimConfig(expire_s=60))
    assert [k.selector for k in signer.keys_for("example.org")] == ["e", "r"]
    assert signer.expire_s == 60 and signer.keyed == {"example.org"}


def test_pinned_selectors_and_disabled_domains() -> None:
    a, b = _key("a", 0), _key("b", 1)
    both = {"a": MATCH, "b": MATCH}
    assert _states([a, b], both, selectors={"example.org": ("a",)}) == {"a": State.ACTIVE, "b": State.UNUSED}
    assert _states([a, b], both, disabled_domains=("Example.org",)) == {
        "a": State.DISABLED,
        "b": State.DISABLED,
    }
    assert _states([a, b], both, enabled=False)["b"] is State.DISABLED
    statuses = decide([a], {a.path: MATCH}, DkimConfig(enabled=False), T0)
    signer = build_signer(statuses, DkimConfig(enabled=False))
    assert signer.keys_for("example.org") == () and signer.keyed == {"example.org"}
