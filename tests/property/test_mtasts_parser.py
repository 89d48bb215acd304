"""Hypothesis: the MTA-STS parsers never raise, and a policy survives its own text form."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postier.delivery.security.mtasts import (
    Broken,
    StsMode,
    StsPolicy,
    StsRecord,
    mx_matches,
    parse_policy,
    parse_record,
)
from postier.delivery.security.mtasts_fetch import parse_http_response

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
host = st.lists(label, min_size=1, max_size=4).map(".".join)
pattern = st.one_of(host, host.map(lambda h: "*." + h))
policies = st.builds(
    StsPolicy,
    st.sampled_from(list(StsMode)),
    st.integers(0, 31_557_600),
    st.lists(pattern, min_size=1, max_size=5, unique=True).map(tuple),
)


@given(st.text(max_size=2000))
def test_parse_policy_never_raises(text: str) -> None:
    assert isinstance(parse_policy(text), StsPolicy | Broken)


@given(st.lists(st.text(max_size=200), max_size=4))
def test_parse_record_never_raises(texts: list[str]) -> None:
    assert parse_record(texts) is None or isinstance(parse_record(texts), StsRecord | Broken)


@given(st.binary(max_size=2000))
def test_parse_http_response_never_raises(raw: bytes) -> None:
    assert isinstance(parse_http_response(raw), str | Broken)


@given(policies)
def test_policy_round_trips(policy: StsPolicy) -> None:
    assert parse_policy(policy.to_text()) == policy


@given(
    st.lists(
        st.sampled_from(["version: STSv1", "mode: enforce", "mx: a.test", "max_age: 9", "x: y", ""]),
        max_size=12,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_line_order_and_endings_do_not_matter_beyond_first_wins(lines: list[str], eol: str) -> None:
    assert parse_policy(eol.join(lines)) == parse_policy("\n".join(lines))


@given(label, host)
def test_wildcard_matches_exactly_one_label(first: str, rest: str) -> None:
    assert mx_matches(f"{first}.{rest}", f"*.{rest}")
    assert not mx_matches(rest, f"*.{rest}")
    assert not mx_matches(f"x.{first}.{rest}", f"*.{rest}")
