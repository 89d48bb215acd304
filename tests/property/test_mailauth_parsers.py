"""Hypothesis for the parsers of mail authentication: the DMARC record, tag-lists, the authserv-id of
an Authentication-Results field and the From domains. Any text gives a value, never an exception;
records built from valid parts read back as built."""

from __future__ import annotations

import authres
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mailauth.dmarc import from_domains, parse_record
from postier.mailauth.domainkeys import key_name, tags
from postier.mailauth.results import MailauthResults, authentication_results, authserv_id
from postier.mailauth.spf import SpfIdentity, SpfResult
from postier.policy.context import Message, drop_header_fields

policies = st.sampled_from(["none", "quarantine", "reject"])
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=2, max_size=4).map(".".join)
space = st.sampled_from(["", " ", "  ", "\t"])


@given(st.text())
def test_any_text_is_a_record_or_none(text: str) -> None:
    record = parse_record(text)
    if record is not None:
        assert record.p in ("none", "quarantine", "reject")
        assert 0 <= record.pct <= 100


@given(
    p=policies,
    sp=st.none() | policies,
    pct=st.none() | st.integers(0, 100),
    adkim=st.none() | st.sampled_from(["r", "s"]),
    rua=st.lists(domain, max_size=3),
    gap=space,
)
def test_built_records_read_back(
    p: str, sp: str | None, pct: int | None, adkim: str | None, rua: list[str], gap: str
) -> None:
    tags_ = [f"p={p}"]
    if sp is not None:
        tags_.append(f"sp={sp}")
    if pct is not None:
        tags_.append(f"pct={pct}")
    if adkim is not None:
        tags_.append(f"adkim={adkim}")
    if rua:
        tags_.append("rua=" + ",".join(f"mailto:dmarc@{d}" for d in rua))
    text = f";{gap}".join(["v=DMARC1", *tags_])
    record = parse_record(text)
    assert record is not None
    assert (record.p, record.sp) == (p, sp or p)
    assert record.pct == (100 if pct is None else pct)
    assert record.adkim == (adkim or "r")
    assert [u.mailto for u in record.rua] == [f"dmarc@{d}" for d in rua]


@given(st.text())
def test_tag_lists_never_raise(text: str) -> None:
    assert isinstance(tags(text), dict)


@given(st.text(), st.text())
def test_key_names_are_domain_names_or_none(selector: str, name: str) -> None:
    found = key_name(selector, name)
    assert found is None or (found.endswith(name.strip().rstrip(".").lower()) and len(found) <= 253)


@given(st.text())
def test_authserv_id_of_any_text(text: str) -> None:
    assert isinstance(authserv_id(text), str)


@given(domain, st.lists(st.text(alphabet="abc ()", max_size=8), max_size=2), space)
def test_authserv_id_skips_comments(host: str, comments: list[str], gap: str) -> None:
    noise = "".join(f"({c.replace('(', '').replace(')', '')})" for c in comments)
    assert authserv_id(f"{gap}{noise}{gap}{host.upper()}{gap}{noise}; spf=pass") == host


@given(domain, st.sampled_from(["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]))
def test_our_field_parses_with_authres(host: str, result: str) -> None:
    spf = SpfResult(result, SpfIdentity.MAILFROM, "example.com", "a@example.com")
    value = authentication_results(host, MailauthResults(spf=spf))
    parsed = authres.AuthenticationResultsHeader.parse_value(value)
    assert parsed.authserv_id == host
    assert authserv_id(value) == host
    assert [r.result for r in parsed.results][:1] == [result]


@given(st.lists(st.text(), max_size=3))
def test_from_domains_never_raise(values: list[str]) -> None:
    for found in from_domains(values):
        assert found == found.lower()


field_name = st.sampled_from(["From", "To", "Subject", "Authentication-Results", "X-A", "Received"])
field_value = st.text(alphabet="abc;=@. xyz", min_size=1, max_size=12).map(str.strip).filter(bool)
folded = st.lists(field_value, min_size=1, max_size=3).map(lambda parts: "\r\n ".join(parts))


@settings(deadline=None)
@given(st.lists(st.tuples(field_name, folded), min_size=1, max_size=8), st.data())
def test_dropping_header_fields_leaves_the_others(fields: list[tuple[str, str]], data: st.DataObject) -> None:
    raw = "".join(f"{n}: {v}\r\n" for n, v in fields).encode() + b"\r\nbody\r\n"
    before = Message(raw).headers
    drop = data.draw(st.sets(st.integers(0, len(before) - 1)))
    after = drop_header_fields(raw, drop)
    assert Message(after).headers == tuple(f for i, f in enumerate(before) if i not in drop)
    assert Message(after).body == b"body\r\n"
