"""DATA framing: only <CRLF>.<CRLF> ends the data; dot-unstuffing; bare CR/LF; limits."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mail.replies import S
from postier.smtp.framing import ChunkReader, DataReader, dot_stuff, dot_unstuff


def read(*parts: bytes, max_bytes: int = 10_000, max_line: int = 1000) -> tuple[bytes, str | None, bytes]:
    """Feed ``parts``; return (body, refusal status or None, bytes after the terminator)."""
    reader = DataReader(max_message_bytes=max_bytes, max_text_line=max_line)
    rest: bytes | None = None
    for part in parts:
        if rest is None:
            rest = reader.feed(part)
        else:
            rest += part
    assert rest is not None, "the data did not end"
    body, error = reader.result()
    return body, (f"{error.code} {error.status}" if error else None), rest


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...x\r\n.\r\n", b"..x\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        (b"\r\n.\r\n", b"\r\n"),
        (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n"),
    ],
)
def test_data_is_unstuffed(wire: bytes, body: bytes) -> None:
    assert read(wire)[:2] == (body, None)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"a\n.\nMAIL FROM:<e@x>\r\n.\r\n", id="LF-dot-LF"),
        pytest.param(b"a\n.\r\nMAIL FROM:<e@x>\r\n.\r\n", id="LF-dot-CRLF"),
        pytest.param(b"a\r.\rMAIL FROM:<e@x>\r\n.\r\n", id="CR-dot-CR"),
        pytest.param(b"a\r\n.\nMAIL FROM:<e@x>\r\n.\r\n", id="CRLF-dot-LF"),
        pytest.param(b"a\r\n.\rMAIL FROM:<e@x>\r\n.\r\n", id="CRLF-dot-CR"),
    ],
)
def test_smuggling_endings_do_not_end_the_data(wire: bytes) -> None:
    _, error, rest = read(wire + b"NOOP\r\n")
    assert error == "550 5.6.0"
    assert rest == b"NOOP\r\n"  # only what followed the real end is left for commands


def test_the_terminator_split_across_reads_is_found() -> None:
    wire = b"line\r\n.\r\nQUIT\r\n"
    for cut in range(len(wire)):
        assert read(wire[:cut], wire[cut:]) == (b"line\r\n", None, b"QUIT\r\n")


def test_byte_by_byte_feeding() -> None:
    wire = b"x\r\n..\r\n.\r\nrest"
    assert read(*[wire[i : i + 1] for i in range(len(wire))]) == (b"x\r\n.\r\n", None, b"rest")


@pytest.mark.parametrize("wire", [b"a\rb\r\n.\r\n", b"a\nb\r\n.\r\n", b"a\r\r\n.\r\n", b"\n.\r\n.\r\n"])
def test_bare_cr_or_lf_is_refused(wire: bytes) -> None:
    assert read(wire)[1] == "550 5.6.0"


@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n"]), max_size=40))
def test_line_endings_are_refused_exactly_when_a_cr_or_lf_stands_alone(pieces: list[bytes]) -> None:
    text = b"".join(pieces)
    wire = text + b"\r\n.\r\n"
    bare = re.search(rb"\r(?!\n)|(?<!\r)\n", b"\r\n" + text + b"\r\n") is not None
    if b"\r\n.\r\n" in b"\r\n" + text:
        return  # the data ends earlier: another case
    assert (read(wire)[1] == "550 5.6.0") == bare


def test_oversized_message_is_read_to_its_end_then_refused() -> None:
    chunk = b"x" * 1000 + b"\r\n"
    reader = DataReader(max_message_bytes=5000, max_text_line=2000)
    for _ in range(1000):  # about 1 MB against a 5 kB limit
        assert reader.feed(chunk) is None
    assert reader.feed(b"MAIL FROM:<smuggled@x>\r\n.\r\nNOOP\r\n") == b"NOOP\r\n"
    assert reader.result()[1] is not None
    assert reader.result()[1].code == 552  # type: ignore[union-attr]


def test_oversized_message_is_discarded_as_it_comes() -> None:
    chunk = b"x" * 1000 + b"\r\n"
    reader = DataReader(max_message_bytes=5000, max_text_line=2000)
    tracemalloc.start()
    try:
        for _ in range(20_000):  # about 20 MB against a 5 kB limit
            assert reader.feed(chunk) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000
    assert reader.feed(b".\r\n") == b""
    assert reader.result()[1] == S.MESSAGE_TOO_BIG


def test_stuffed_dots_do_not_count_against_the_size() -> None:
    body = b".\r\n" * 100  # 300 octets, 400 on the wire
    assert read(dot_stuff(body), max_bytes=300)[:2] == (body, None)
    assert read(dot_stuff(body + b"x"), max_bytes=300)[1] == "552 5.3.4"


@pytest.mark.parametrize(("length", "error"), [(998, None), (999, "550 5.6.0")])
def test_line_length_limit_counts_the_crlf(length: int, error: str | None) -> None:
    assert read(b"x" * length + b"\r\n.\r\n")[1] == error


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([b"x" * 998] * 50, None),
        ([b"x" * 999] + [b"y"] * 50, "550 5.6.0"),
        ([b"y"] * 50 + [b"x" * 999] + [b"y"] * 50, "550 5.6.0"),
        ([b"y" * 500] * 50 + [b"x" * 999], "550 5.6.0"),
        ([b"x" * 5000], "550 5.6.0"),
        ([b""] * 2000 + [b"x" * 999], "550 5.6.0"),
    ],
)
def test_a_long_line_anywhere_is_refused(lines: list[bytes], error: str | None) -> None:
    wire = b"".join(line + b"\r\n" for line in lines) + b".\r\n"
    whole = read(wire, max_bytes=1_000_000)
    assert whole[1] == error
    assert read(*[wire[i : i + 977] for i in range(0, len(wire), 977)], max_bytes=1_000_000) == whole


@pytest.mark.parametrize(
    "body", [b"", b"a\r\n", b".\r\n", b"..\r\n.x\r\n", b"no final crlf", b"\r\n.\r\n", b".a"]
)
def test_stuff_then_read_round_trips(body: bytes) -> None:
    expected = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    assert read(dot_stuff(body))[:2] == (expected, None)
    assert dot_unstuff(dot_stuff(body)[:-3]) == expected


def test_chunk_reader_reads_exactly_its_size() -> None:
    reader = ChunkReader(5, keep=True)
    assert reader.feed(b"he") is None
    assert reader.feed(b"lloQUIT\r\n") == b"QUIT\r\n"
    assert reader.chunk() == b"hello"


def test_chunk_reader_can_discard() -> None:
    reader = ChunkReader(3, keep=False)
    assert reader.feed(b"abcd") == b"d"
    assert reader.chunk() == b""
