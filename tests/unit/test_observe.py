"""The mail log: one line per event, stable field order, hostile values cannot forge lines."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from postier.observe import (
    EVENTS,
    JsonFormatter,
    KvFormatter,
    fields,
    format_kv,
    get_logger,
    mail_event,
    setup_logging,
)

KV_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warning|error|critical) \S")


def _installed(fmt: str) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = setup_logging("debug", fmt, stream)  # type: ignore[arg-type]
    yield stream
    for h in root.handlers[:]:
        if type(h) is type(handler):
            root.removeHandler(h)
    root.setLevel(level)


@pytest.fixture
def kv_log() -> Iterator[io.StringIO]:
    yield from _installed("kv")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    yield from _installed("json")


KV_PAIR = re.compile(r'([a-z][a-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|[^\s"]+)(?: |$)')


def _keys(body: str) -> list[str]:
    """Parse a kv body strictly: every character must belong to one key=value pair."""
    keys, pos = [], 0
    while pos < len(body):
        m = KV_PAIR.match(body, pos)
        assert m, f"unparsable at {pos}: {body[pos:]!r}"
        keys.append(m.group(1))
        pos = m.end()
    return keys


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def _body(line: str) -> str:
    """The line without timestamp and level."""
    return line.split(" ", 2)[2]


def test_queued_event_kv_line(kv_log: io.StringIO) -> None:
    mail_event("queued", size=312, id="Q1", sid="s1", from_="<a@example.test>", nrcpt=1)
    [line] = _lines(kv_log)
    assert KV_LINE.match(line)
    assert " info " in line
    assert _body(line) == "event=queued sid=s1 id=Q1 size=312 from=<a@example.test> nrcpt=1"


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("<a@example.test>", "<a@example.test>"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', r'"say \"hi\""'),
        ("a=b", '"a=b"'),
        ("back\\slash", r'"back\\slash"'),
        ("evil\r\nevent=queued id=FAKE", r'"evil\r\nevent=queued id=FAKE"'),
        ("tab\there", r'"tab\there"'),
        ("nul\x00", r'"nul\x00"'),
        ("esc\x1b[31m", r'"esc\x1b[31m"'),
        ("nel\x85", r'"nel\x85"'),
        ("line\u2028sep", r'"line\u2028sep"'),
        ("bidi\u202eevil", r'"bidi\u202eevil"'),
        ("josé@exämple.test", "josé@exämple.test"),
        ("日本@例え.テスト", "日本@例え.テスト"),
        (True, "true"),
        (3.5, "3.5"),
    ],
)
def test_value_escaping(value: object, rendered: str) -> None:
    assert format_kv({"k": value}) == f"k={rendered}"


def test_none_values_are_left_out() -> None:
    assert format_kv({"a": 1, "b": None, "c": "x"}) == "a=1 c=x"


HOSTILE = [
    "mx.example.test\r\n2026-01-01T00:00:00.000Z info event=queued id=FORGED",
    "a\nb",
    "a\rb",
    '"; event=queued',
    "x\u2028y\u2029z\x85",
    "bidi \u202eevil\u2066 astral \U000e0041",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_value_stays_on_one_line(kv_log: io.StringIO, hostile: str) -> None:
    mail_event("helo", sid="s1", name=hostile)
    text = kv_log.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "\r" not in text and "\u2028" not in text and "\x85" not in text
    assert _keys(_body(text.rstrip("\n"))) == ["event", "sid", "name"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_value_in_json(json_log: io.StringIO, hostile: str) -> None:
    mail_event("helo", sid="s1", name=hostile)
    [line] = json_log.getvalue().split("\n")[:-1]
    assert json.loads(line)["name"] == hostile
    # Issue 14, finding 12: no character that a reader could take for a line end (or that reorders the
    # text) stays raw, while printable non-ASCII text does.
    assert line.isprintable(), line
    assert all(ch not in line for ch in "\u2028\u2029\x85\u202e")


def test_json_keeps_printable_non_ascii(json_log: io.StringIO) -> None:
    mail_event("helo", sid="s1", name="café ☃ \U0001f600")
    assert "café ☃ \U0001f600" in json_log.getvalue()


def test_json_line_and_field_order(json_log: io.StringIO) -> None:
    mail_event(
        "delivery",
        rcpt="<b@example.test>",
        id="Q1",
        result="deferred",
        reply="451 4.4.1 No answer",
        attempt=3,
        tls=True,
    )
    [line] = _lines(json_log)
    obj = json.loads(line)
    assert list(obj) == ["ts", "level", "event", "id", "rcpt", "result", "reply", "attempt", "tls"]
    assert obj["level"] == "info"
    assert obj["attempt"] == 3 and obj["tls"] is True
    assert obj["reply"] == "451 4.4.1 No answer"


def test_kv_field_order_event_sid_id_then_as_given(kv_log: io.StringIO) -> None:
    mail_event("reject", reply="550 5.1.1 No such user here", stage="rcpt", id="Q9", sid="s7")
    [line] = _lines(kv_log)
    assert _body(line) == 'event=reject sid=s7 id=Q9 reply="550 5.1.1 No such user here" stage=rcpt'


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_documented_event_writes_one_line(kv_log: io.StringIO, event: str) -> None:
    mail_event(event, sid="s1")
    [line] = _lines(kv_log)
    assert _body(line).startswith(f"event={event} ")


@pytest.mark.parametrize(
    ("event", "kwargs"),
    [
        ("sent", {}),  # not in the fixed vocabulary
        ("queued", {"Bad": 1}),
        ("queued", {"event": "x"}),
        ("queued", {"ts": "x"}),
    ],
)
def test_programming_errors_are_refused(event: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        mail_event(event, **kwargs)


def test_plain_logger_kv(kv_log: io.StringIO) -> None:
    log = get_logger("server")
    assert log.name == "postier.server"
    log.warning("listener stopped on %s", "127.0.0.1:2525", extra=fields(sid="s1"))
    [line] = _lines(kv_log)
    assert KV_LINE.match(line)
    assert _body(line) == 'logger=postier.server msg="listener stopped on 127.0.0.1:2525" sid=s1'


def test_exception_traceback_is_one_line(kv_log: io.StringIO, json_log: io.StringIO) -> None:
    log = get_logger("postier.server.session")
    try:
        raise RuntimeError("boom\nline two")
    except RuntimeError:
        log.exception("session failed", extra=fields(sid="s3"))
    # json_log replaced kv_log's handler: only the JSON stream receives the record.
    assert kv_log.getvalue() == ""
    [line] = _lines(json_log)
    obj = json.loads(line)
    assert obj["level"] == "error" and obj["sid"] == "s3"
    assert "RuntimeError: boom" in obj["exc"]


def test_kv_exception_escaped() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KvFormatter())
    log = logging.getLogger("postier.test.kvexc")
    log.propagate = False
    log.addHandler(handler)
    try:
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert 'exc="Traceback (most recent call last):\\n' in text


def test_level_filters(kv_log: io.StringIO) -> None:
    setup_logging("warning", "kv", kv_log)
    mail_event("connect", sid="s1")
    get_logger("x").info("hidden")
    get_logger("x").error("shown")
    [line] = _lines(kv_log)
    assert " error " in line


@pytest.mark.parametrize(("level", "fmt"), [("loud", "kv"), ("info", "xml")])
def test_setup_logging_refuses_bad_arguments(level: str, fmt: str) -> None:
    with pytest.raises(ValueError):
        setup_logging(level, fmt, io.StringIO())  # type: ignore[arg-type]


def test_json_formatter_for_plain_message() -> None:
    record = logging.LogRecord("postier.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    obj = json.loads(JsonFormatter().format(record))
    assert obj == {"ts": obj["ts"], "level": "info", "logger": "postier.x", "msg": "hello you"}
    assert obj["ts"].endswith("Z")


@pytest.mark.parametrize(
    ("created", "stamp"),
    [
        (1764398420.0, "2025-11-29T06:40:20.000Z"),
        (1764398420.1234, "2025-11-29T06:40:20.123Z"),
        (1764398420.1239, "2025-11-29T06:40:20.123Z"),  # cut to the millisecond, never rounded up
        (1764398420.9999996, "2025-11-29T06:40:21.000Z"),  # to the microsecond first, as datetime
        (1764398421.5, "2025-11-29T06:40:21.500Z"),
        (1764398420.5, "2025-11-29T06:40:20.500Z"),  # back to an earlier second: not a stale cache
    ],
)
def test_kv_timestamp_is_utc_to_the_millisecond(created: float, stamp: str) -> None:
    record = logging.LogRecord("postier.test", logging.INFO, "", 0, "text", None, None)
    record.created = created
    assert KvFormatter().format(record).startswith(f"{stamp} info ")
    assert json.loads(JsonFormatter().format(record))["ts"] == stamp


def test_worker_index_on_every_line_with_several_workers(kv_log: io.StringIO) -> None:
    from postier.observe.logs import set_worker

    set_worker(1)
    try:
        mail_event("queued", sid="s1", id="Q1", size=3, nrcpt=1)
        get_logger("postier.test").warning("plain")
        kv = _lines(kv_log)
        record = logging.LogRecord("postier.x", logging.INFO, "", 0, "m", None, None)
        json_line = JsonFormatter().format(record)
    finally:
        set_worker(None)
    assert [_keys(_body(line))[0] for line in kv] == ["worker", "worker"]
    assert kv[0].split(" ", 3)[2:3] == ["worker=1"] and "event=queued sid=s1 id=Q1" in kv[0]
    assert list(json.loads(json_line))[:3] == ["ts", "level", "worker"]
    mail_event("queued", sid="s2", id="Q2", size=3, nrcpt=1)  # one process again: nothing added
    assert "worker=" not in _lines(kv_log)[-1]
