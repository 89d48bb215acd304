"""Hypothesis: the milter reply parser and the rspamd reply parser take any bytes and give values or
their one error; well-formed packets and replies round-trip."""

from __future__ import annotations

import json
import struct

from hypothesis import given
from hypothesis import strategies as st

from postier.antispam.milter.protocol import MilterParser, MilterProtocolError, Response, encode
from postier.antispam.rspamd_protocol import ACTIONS, RspamdReplyError, parse_http, parse_reply


def _drain(parser: MilterParser) -> list[Response]:
    out = []
    while (response := parser.next()) is not None:
        out.append(response)
    return out


@given(st.binary(max_size=2048), st.lists(st.integers(min_value=1, max_value=64), max_size=20))
def test_milter_parser_any_bytes_any_split(data: bytes, cuts: list[int]) -> None:
    parser = MilterParser()
    pos = 0
    try:
        for cut in [*cuts, len(data)]:
            parser.feed(data[pos : pos + cut])
            pos += cut
            for response in _drain(parser):
                assert len(response.command) == 1
    except MilterProtocolError:
        pass


_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"),
    min_size=1,
    max_size=20,
)
_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=50)
_packets = st.one_of(
    st.sampled_from([encode(c) for c in "acdrtps"]),
    st.builds(lambda n, v: encode("h", n, v), _names, _values),
    st.builds(
        lambda i, n, v: encode("m", struct.pack("!I", i), n, v), st.integers(0, 2**32 - 1), _names, _values
    ),
    st.builds(lambda b: encode("b", b), st.binary(max_size=300)),
    st.builds(lambda r: encode("q", r), _values),
    st.builds(lambda c, t: encode("y", f"{c} {t}"), st.integers(400, 599), _values),
)


@given(st.lists(_packets, max_size=10), st.integers(min_value=1, max_value=17))
def test_milter_packets_round_trip(packets: list[bytes], step: int) -> None:
    stream = b"".join(packets)
    parser = MilterParser()
    got: list[Response] = []
    for start in range(0, len(stream), step):
        parser.feed(stream[start : start + step])
        got += _drain(parser)
    assert [encode(r.command) if not r.data else None for r in got if not r.data] == [
        p for p in packets if len(p) == 5
    ]
    assert len(got) == len(packets)


@given(st.binary(max_size=1024))
def test_rspamd_any_bytes(data: bytes) -> None:
    for parse in (parse_reply, lambda d: parse_reply(parse_http(d))):
        try:
            result = parse(data)
        except RspamdReplyError:
            continue
        assert result.action in ACTIONS


_scalar = st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=10)
_json = _scalar | st.lists(_scalar, max_size=3) | st.dictionaries(st.text(max_size=8), _scalar, max_size=3)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.sampled_from([*ACTIONS, "nonsense"]) | _json,
            "score": _json,
            "required_score": _json,
            "symbols": _json,
            "subject": _json,
            "messages": _json,
        },
    )
)
def test_rspamd_any_json_shape(reply: dict[str, object]) -> None:
    try:
        result = parse_reply(json.dumps(reply).encode())
    except RspamdReplyError:
        return
    assert result.action == reply["action"]


@given(
    st.sampled_from(sorted(ACTIONS)),
    st.floats(-100, 2000),
    st.lists(st.text(min_size=1, max_size=10), max_size=5),
)
def test_rspamd_well_formed_replies_parse(action: str, score: float, symbols: list[str]) -> None:
    body = json.dumps(
        {"action": action, "score": score, "required_score": 15, "symbols": {s: {} for s in symbols}}
    )
    http = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body.encode())}\r\n\r\n".encode() + body.encode()
    result = parse_reply(parse_http(http))
    assert (result.action, result.score, result.symbols) == (action, score, tuple(sorted(set(symbols))))
