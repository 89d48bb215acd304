"""control/apikeys.py: keys stored hashed, found by their secret, scoped; the file re-read on change."""

from __future__ import annotations

from pathlib import Path

import pytest

from postier.control.apikeys import ApiKeyError, ApiKeyStore, check_scopes


def test_add_lookup_remove(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "api-keys.json")
    secret = store.add("ci", check_scopes("send"))
    assert secret.startswith("pk_ci_") and secret not in (tmp_path / "api-keys.json").read_text()
    assert (tmp_path / "api-keys.json").stat().st_mode & 0o777 == 0o600
    key = store.lookup(secret)
    assert key is not None and key.allows("send") and not key.allows("read")
    assert store.lookup(secret + "x") is None and store.lookup("pk_other_" + secret[6:]) is None
    other = ApiKeyStore(tmp_path / "api-keys.json")  # as the running server sees the CLI's change
    assert other.lookup(secret) is not None
    assert store.remove("ci") and not store.remove("ci")
    assert other.lookup(secret) is None


def test_admin_implies_everything_and_bad_input_is_refused(tmp_path: Path) -> None:
    store = ApiKeyStore(tmp_path / "k.json")
    key = store.lookup(store.add("ops", check_scopes("admin")))
    assert key is not None and all(key.allows(s) for s in ("send", "read", "admin"))
    with pytest.raises(ApiKeyError):
        store.add("ops", check_scopes("read"))
    with pytest.raises(ApiKeyError):
        store.add("Bad_Name", check_scopes("read"))
    with pytest.raises(ApiKeyError):
        check_scopes("send,root")
    assert [k.name for k in store.list()] == ["ops"]
