"""The server engine with large messages: data handed out as ``MessageData``, memory bounded, BDAT
floods (issue 14: 1, 2, 7)."""

from __future__ import annotations

import tracemalloc

from postier.mail.replies import S, greeting, queued
from postier.mail.reply import Reply
from postier.smtp.framing import dot_stuff
from postier.smtp.server.connection import ServerConnection
from postier.smtp.server.events import (
    NEED_DATA,
    Answered,
    DataStart,
    Hello,
    MailFrom,
    MessageData,
    MessageReceived,
    RcptTo,
    Rejected,
)
from postier.smtp.server.settings import EngineSettings


class Driver:
    """Answers yes to everything; writes ``MessageData`` to ``spool``; records the peak of memory."""

    def __init__(self, **settings: object) -> None:
        self.conn = ServerConnection(EngineSettings(**settings))  # type: ignore[arg-type]
        self.conn.send(greeting("mx"))
        self.spool = bytearray()
        self.messages: list[bytes] = []
        self.replies: list[Reply] = []
        self.peak = 0

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.peak = max(self.peak, self.conn.memory_octets)
        while (event := self.conn.next_event()) is not NEED_DATA:
            self.peak = max(self.peak, self.conn.memory_octets)
            if isinstance(event, MessageData):
                for part in event.parts:
                    self.spool += part
                continue
            reply = self._answer(event)
            self.replies.append(reply)
            self.conn.send(reply)

    def _answer(self, event: object) -> Reply:
        if isinstance(event, Answered):
            if isinstance(event, Rejected):
                self.spool.clear()
            return event.reply
        if isinstance(event, Hello):
            return self.conn.ehlo_reply()
        if isinstance(event, MessageReceived):
            assert event.spooled_octets == len(self.spool)
            self.messages.append(bytes(self.spool) + event.body)
            self.spool.clear()
            return queued("ID")
        return {MailFrom: S.SENDER_OK, RcptTo: S.RECIPIENT_OK, DataStart: S.START_DATA}[type(event)]

    def start(self) -> None:
        self.feed(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n")

    def feed_in_reads(self, wire: bytes, step: int = 65536) -> None:
        for i in range(0, len(wire), step):
            self.feed(wire[i : i + step])

    @property
    def last(self) -> str:
        return f"{self.replies[-1].code} {self.replies[-1].status}"


MESSAGE = b"Subject: big\r\n\r\n" + (b"z" * 78 + b"\r\n") * 100_000  # 8 MB


def test_a_large_data_message_is_handed_out_and_memory_stays_bounded() -> None:
    driver = Driver(hold_message_octets=256 * 1024)
    driver.start()
    driver.feed(b"DATA\r\n")
    driver.feed_in_reads(dot_stuff(MESSAGE))
    assert driver.last == "250 2.0.0"
    assert driver.messages == [MESSAGE]
    assert driver.peak < 700_000


def test_a_small_message_stays_in_memory() -> None:
    driver = Driver()
    driver.start()
    driver.feed(b"DATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
    assert driver.messages == [b"Subject: s\r\n\r\nhi\r\n"]


def test_spool_message_hands_out_what_is_held() -> None:
    driver = Driver(hold_message_octets=1 << 30)
    driver.start()
    driver.feed(b"DATA\r\n")
    driver.feed_in_reads(dot_stuff(MESSAGE)[:300_000])
    assert not driver.spool
    driver.conn.spool_message()
    driver.feed_in_reads(dot_stuff(MESSAGE)[300_000:])
    assert len(driver.spool) == 0 and driver.messages == [MESSAGE]
    assert driver.peak < 600_000


def test_a_bare_lf_after_data_was_handed_out_refuses_the_message() -> None:
    driver = Driver(hold_message_octets=1000)
    driver.start()
    driver.feed(b"DATA\r\n")
    driver.feed_in_reads(dot_stuff(MESSAGE[:500_000] + b"bare\nlf\r\n" + MESSAGE[:500_000]))
    assert driver.last == "550 5.6.0"
    assert not driver.messages and not driver.spool
    driver.start()
    assert driver.last == "250 2.1.5"  # the session goes on


def test_a_large_bdat_chunk_is_handed_out_as_it_comes() -> None:
    driver = Driver(hold_message_octets=256 * 1024)
    driver.start()
    driver.feed_in_reads(b"BDAT %d LAST\r\n" % len(MESSAGE) + MESSAGE)
    assert driver.messages == [MESSAGE]
    assert driver.peak < 700_000


def test_bdat_chunks_are_merged_across_the_hold_limit() -> None:
    driver = Driver(hold_message_octets=10_000)
    driver.start()
    chunks = [MESSAGE[i : i + 5000] for i in range(0, 200_000, 5000)]
    for chunk in chunks[:-1]:
        driver.feed(b"BDAT %d\r\n" % len(chunk) + chunk)
    driver.feed(b"BDAT %d LAST\r\n" % len(chunks[-1]) + chunks[-1])
    assert driver.messages == [b"".join(chunks)]


def test_a_bdat_0_flood_costs_no_memory_and_ends_the_session() -> None:
    driver = Driver(bdat_max_small_chunks=1000)
    driver.start()
    tracemalloc.start()
    try:
        for _ in range(100):
            driver.feed(b"BDAT 0\r\n" * 1000)
            if driver.conn.is_closed:
                break
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 500_000
    codes = [f"{r.code} {r.status}" for r in driver.replies[3:]]
    assert codes[:1000] == ["250 2.0.0"] * 1000
    assert codes[1000] == "552 5.3.4" and driver.replies[1003] == S.TOO_MANY_CHUNKS
    assert codes[-1] == "421 4.7.0" and driver.conn.is_closed  # max_errors (10)


def test_small_chunks_under_the_cap_make_a_message() -> None:
    driver = Driver(bdat_max_small_chunks=50)
    driver.start()
    for _ in range(50):
        driver.feed(b"BDAT 1\r\nx")
    driver.feed(b"BDAT 0 LAST\r\n")
    assert driver.messages == [b"x" * 50]


def test_a_header_section_too_long_by_bdat_fails_the_transaction() -> None:
    driver = Driver(max_header_octets=10_000)
    driver.start()
    header = b"X: " + b"y" * 90 + b"\r\n"
    driver.feed(b"BDAT %d\r\n" % (len(header) * 200) + header * 200)
    assert driver.replies[-1] == S.HEADER_TOO_BIG
    driver.feed(b"BDAT 4 LAST\r\n\r\nhi")
    assert driver.replies[-1] == S.HEADER_TOO_BIG and not driver.messages


def test_a_header_section_too_long_by_data_is_read_to_its_end() -> None:
    driver = Driver(max_header_octets=10_000)
    driver.start()
    header = b"X: " + b"y" * 90 + b"\r\n"
    driver.feed(b"DATA\r\n" + header * 200 + b"\r\nbody\r\n.\r\nNOOP\r\n")
    assert driver.replies[-2] == S.HEADER_TOO_BIG
    assert driver.last == "250 2.0.0"  # the NOOP


def test_in_message_covers_data_and_the_whole_bdat_transaction() -> None:
    driver = Driver()
    driver.start()
    assert not driver.conn.is_in_message
    driver.feed(b"BDAT 1\r\nx")
    assert driver.conn.is_in_message
    driver.feed(b"BDAT 1 LAST\r\ny")
    assert not driver.conn.is_in_message
    driver.start()
    driver.feed(b"DATA\r\nabc")
    assert driver.conn.is_in_message
    driver.feed(b"\r\n.\r\n")
    assert not driver.conn.is_in_message


def test_the_small_chunk_cap_is_per_session() -> None:
    driver = Driver(bdat_max_small_chunks=10)
    driver.start()
    driver.feed(b"BDAT 0\r\n" * 6 + b"RSET\r\n")
    driver.start()
    driver.feed(b"BDAT 0\r\n" * 4)
    assert driver.last == "250 2.0.0"
    driver.feed(b"BDAT 0\r\n")
    assert driver.replies[-1] == S.TOO_MANY_CHUNKS
    driver.feed(b"RSET\r\n")
    driver.start()
    driver.feed(b"BDAT 0\r\n")
    assert driver.replies[-1] == S.TOO_MANY_CHUNKS  # no new budget
    driver.feed(b"BDAT 5000 LAST\r\n" + b"x" * 5000)
    assert driver.replies[-1] == S.TOO_MANY_CHUNKS  # the failed transaction's LAST
    driver.start()
    driver.feed(b"BDAT 5000 LAST\r\n" + b"x" * 5000)
    assert driver.last == "250 2.0.0"  # large chunks still make messages
