"""DATA framing: only <CRLF>.<CRLF> ends the data; dot-unstuffing; bare CR/LF; limits."""

from __future__ import annotations

import re
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mail.replies import S
from postier.mail.reply import Reply
from postier.smtp.framing import ChunkReader, DataReader, dot_stuff, dot_unstuff
from postier.smtp.sink import MessageSink


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
    sink = MessageSink(max_message_octets=100)
    reader = ChunkReader(5, sink=sink)
    assert reader.feed(b"he") is None
    assert reader.feed(b"lloQUIT\r\n") == b"QUIT\r\n"
    assert sink.finish() == b"hello"


def test_chunk_reader_can_discard() -> None:
    reader = ChunkReader(3, sink=None)
    assert reader.feed(b"abcd") == b"d"
    assert not reader.keep


# --- streaming: the message in pieces, memory bounded (issue 14: 2, 7) -------------------------------


def _stream(
    wire: bytes, *, hold: int, step: int, max_bytes: int = 1 << 30
) -> tuple[bytes, Reply | None, int]:
    """Feed ``wire`` in ``step``-octet reads to a reader whose sink holds ``hold`` octets; take the
    output as the engine would. Returns (whole body, error, the most octets ever kept at once)."""
    sink = MessageSink(max_message_octets=max_bytes, hold_octets=hold)
    reader = DataReader(max_message_bytes=max_bytes, max_text_line=1000, sink=sink)
    out, peak = bytearray(), 0
    for i in range(0, len(wire), step):
        rest = reader.feed(wire[i : i + step])
        peak = max(peak, reader.memory_octets + sink.memory_octets)
        out += b"".join(sink.take())
        if rest is not None:
            break
    body, error = reader.result()
    return bytes(out) + body, error, peak


@given(
    st.lists(st.sampled_from([b"a" * 300, b".", b"..x", b"\r\n", b"Subject: s", b"\r\n\r\n"]), max_size=400),
    st.sampled_from([0, 1000, 1 << 20]),
    st.sampled_from([1, 7, 4096, 70_000]),
)
def test_streaming_gives_the_same_message_as_reading_it_whole(
    pieces: list[bytes], hold: int, step: int
) -> None:
    body = b"".join(pieces).replace(b"\r\n.\r\n", b"\r\n")
    wire = dot_stuff(body)
    whole = read(wire, max_bytes=1 << 30)
    streamed = _stream(wire, hold=hold, step=step)
    assert (streamed[0], streamed[1] and f"{streamed[1].code} {streamed[1].status}") == whole[:2]


def test_a_large_message_streams_with_bounded_memory() -> None:
    line = b"x" * 998 + b"\r\n"
    wire = b"Subject: big\r\n\r\n" + line * 20_000 + b".\r\n"  # 20 MB
    body, error, peak = _stream(wire, hold=256 * 1024, step=256 * 1024)
    assert error is None
    assert len(body) == len(wire) - 3
    assert peak < 1_000_000


@pytest.mark.parametrize("cut", [997, 998, 999, 1000, 1001])
def test_a_line_of_the_limit_split_before_its_lf_is_accepted(cut: int) -> None:
    wire = b"x\r\n" + b"y" * 998 + b"\r\n" + b"z\r\n.\r\n"
    assert read(wire[: cut + 3], wire[cut + 3 :])[1] is None
    assert read(b"x\r\n" + b"y" * 999 + b"\r\n.\r\n")[1] == "550 5.6.0"


def test_a_line_without_end_fails_at_once_and_is_not_kept() -> None:
    reader = DataReader(max_message_bytes=1 << 30, max_text_line=1000)
    for _ in range(1000):
        assert reader.feed(b"y" * 10_000) is None  # 10 MB, one line
        assert reader.memory_octets < 100_000
    assert reader.feed(b"\r\n.\r\nNOOP\r\n") == b"NOOP\r\n"
    assert reader.result()[1] == S.DATA_LINE_TOO_LONG


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (b"X: " + b"y" * 900 + b"\r\n", None),
        ((b"X: " + b"y" * 900 + b"\r\n") * 1200, S.HEADER_TOO_BIG),  # about 1.08 MB of header fields
        (b"", None),
    ],
)
def test_the_header_section_is_bounded(header: bytes, error: Reply | None) -> None:
    wire = dot_stuff(header + b"\r\n" + b"body\r\n" * 300_000)
    assert _stream(wire, hold=1 << 16, step=65536)[1] == error


def test_a_message_without_a_blank_line_is_all_header() -> None:
    wire = dot_stuff((b"X: " + b"y" * 900 + b"\r\n") * 1200)
    assert _stream(wire, hold=1 << 16, step=65536)[1] == S.HEADER_TOO_BIG
    assert _stream(wire[-5000:], hold=1 << 16, step=65536)[1] is None


@pytest.mark.parametrize("cut", range(0, 8))
def test_the_blank_line_is_found_across_writes(cut: int) -> None:
    data = b"A: b\r\n\r\nbody"
    sink = MessageSink(max_message_octets=100, max_header_octets=5)
    sink.write(data[:cut])
    sink.write(data[cut:])
    assert sink.error is None
    too_small = MessageSink(max_message_octets=100, max_header_octets=3)
    too_small.write(data[:cut])
    too_small.write(data[cut:])
    assert too_small.error == S.HEADER_TOO_BIG


def test_the_sink_holds_then_spools() -> None:
    sink = MessageSink(max_message_octets=1000, hold_octets=10)
    sink.write(b"12345")
    assert not sink.has_output and sink.memory_octets == 5
    sink.write(b"678901")
    assert b"".join(sink.take()) == b"12345678901"
    sink.write(b"ab")
    assert sink.has_output
    assert sink.finish() == b"ab"
    assert sink.spooled_octets == 11


def test_tiny_writes_cost_about_their_size() -> None:
    sink = MessageSink(max_message_octets=1 << 30, hold_octets=1 << 20)
    tracemalloc.start()
    try:
        for _ in range(100_000):
            sink.write(b"x")
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 200_000
    assert sink.finish() == b"x" * 100_000
