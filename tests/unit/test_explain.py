"""``postier explain``: codes in plain English, table-driven."""

from __future__ import annotations

import argparse
import json

import pytest

from postier.cli import explain_cmd
from postier.mail.explain import explain, group_queries, replies_using
from postier.mail.explain_data import BASIC
from postier.mail.explain_enhanced import ENHANCED
from postier.mail.replies import S
from postier.mail.reply import Reply

# (query, outcome, words in the basic meaning, words in the enhanced meaning, source of the first entry)
CASES = [
    ("452", "transient", "storage", None, "RFC 5321"),
    ("421", "transient", "closing", None, "RFC 5321"),
    ("250", "success", "completed", None, "RFC 5321"),
    ("354", "intermediate", "mail input", None, "RFC 5321"),
    ("555", "permanent", "parameters", None, "RFC 5321"),
    ("334", "intermediate", "challenge", None, "RFC 4954"),
    ("538", "permanent", "Encryption required", None, "RFC 4954"),
    ("521", "permanent", "does not accept mail", None, "RFC 7504"),
    ("5.1.1", "permanent", None, "no such user", "RFC 3463 §3.2"),
    ("4.4.1", "transient", None, "No answer", "RFC 3463 §3.5"),
    ("5.1.10", "permanent", None, "null MX", "RFC 7505"),
    ("5.7.27", "permanent", None, "null MX", "RFC 7505"),
    ("5.7.23", "permanent", None, "SPF", "RFC 7372"),
    ("5.7.8", "permanent", None, "credentials", "RFC 4954"),
    ("5.6.7", "permanent", None, "Non-ASCII", "RFC 6531"),
    ("5.1.9", "permanent", None, "non-compliant", "RFC 3886"),
    ("5.7.30", "permanent", None, "REQUIRETLS", "RFC 8689"),
    ("2.1.5", "success", None, "valid", "RFC 3463"),
    ("550 5.7.1", "permanent", "Mailbox unavailable", "not authorized", "RFC 5321"),
    ("451 4.3.0", "transient", "local error", "mail system", "RFC 5321"),
    ("550-5.1.1 The email account does not exist", "permanent", "Mailbox", "no such user", "RFC 5321"),
]


@pytest.mark.parametrize(("query", "outcome", "basic_words", "enhanced_words", "source"), CASES)
def test_known_codes(
    query: str, outcome: str, basic_words: str | None, enhanced_words: str | None, source: str
) -> None:
    expl = explain(query)
    assert expl.outcome == outcome
    assert expl.entries[0].source.startswith(source)
    if basic_words is None:
        assert expl.basic is None
    else:
        assert expl.basic is not None and basic_words in expl.basic.meaning
    if enhanced_words is None:
        assert expl.enhanced is None
    else:
        assert expl.enhanced is not None and enhanced_words in expl.enhanced.meaning
    assert all(e.is_known and e.check for e in expl.entries)
    assert not [n for n in expl.notes if "RFC 5321 but by" not in n]


@pytest.mark.parametrize(
    ("query", "outcome", "meaning_words"),
    [
        ("111", "connection", "Connection refused"),
        ("101", "connection", "unreachable"),
        ("420", "transient", "Timeout"),
        ("422", "transient", "storage"),
        ("431", "transient", "out of memory"),
        ("441", "transient", "not responding"),
        ("442", "transient", "dropped"),
        ("446", "transient", "hop count"),
        ("447", "transient", "timed out"),
        ("449", "transient", "Routing"),
        ("471", "transient", "filter"),
        ("512", "permanent", "DNS"),
        ("523", "permanent", "larger"),
        ("541", "permanent", "anti-spam"),
        ("571", "permanent", "not authorized"),
    ],
)
def test_codes_not_in_any_rfc_are_flagged(query: str, outcome: str, meaning_words: str) -> None:
    expl = explain(query)
    assert expl.outcome == outcome
    assert expl.basic is not None and meaning_words in expl.basic.meaning
    assert not expl.basic.is_rfc
    assert any("Not defined by RFC 5321" in note for note in expl.notes)


def test_codes_of_other_rfcs_say_which() -> None:
    expl = explain("432")
    assert expl.basic is not None and expl.basic.source.startswith("RFC 4954")
    assert expl.notes == ("Not defined by RFC 5321 but by RFC 4954 §6.",)


def test_554_in_greeting() -> None:
    expl = explain("554")
    assert expl.basic is not None and "no SMTP service here" in expl.basic.meaning
    assert "RELAY_DENIED — Relay access denied" in expl.sent_as


@pytest.mark.parametrize(
    ("query", "outcome", "words"),
    [
        ("457", "transient", "mail system"),
        ("523", "permanent", "larger"),
        ("298", "success", "no category"),
        ("5.9.1", "permanent", "subject 9"),
        ("4.7.99", "transient", "security or policy"),
        ("2.3.50", "success", "mail system"),
    ],
)
def test_unknown_well_formed_codes_are_explained_from_digits(query: str, outcome: str, words: str) -> None:
    expl = explain(query)
    assert expl.outcome == outcome
    assert words in expl.entries[0].meaning


def test_unknown_basic_code_is_not_known() -> None:
    expl = explain("457")
    assert expl.basic is not None and not expl.basic.is_known
    assert any("not defined by RFC 5321" in n for n in expl.notes)


@pytest.mark.parametrize(
    ("query", "basic_says", "enhanced_says"),
    [
        ("550 4.1.1", "permanent", "transient"),
        ("450 5.2.2", "transient", "permanent"),
        ("250 5.0.0", "success", "permanent"),
    ],
)
def test_mismatched_classes_are_pointed_out(query: str, basic_says: str, enhanced_says: str) -> None:
    expl = explain(query)
    [note] = expl.notes
    assert "class digits disagree" in note
    assert basic_says in note and enhanced_says in note
    # What a sender does follows the basic code.
    assert expl.outcome == basic_says


def test_intermediate_reply_with_enhanced_code() -> None:
    assert any("no enhanced status" in n for n in explain("354 2.0.0").notes)


def test_class_x_matches_any_class() -> None:
    expl = explain("X.1.1")
    assert expl.outcome == "unknown"
    assert expl.enhanced is not None and "no such user" in expl.enhanced.meaning
    assert "UNKNOWN_USER — No such user here" in expl.sent_as


def test_reply_text_is_kept() -> None:
    expl = explain("  250 2.0.0 Ok: queued as 01HX  ")
    assert expl.text == "Ok: queued as 01HX"
    assert "queued(ID) — Ok: queued as ID" in expl.sent_as


@pytest.mark.parametrize(
    "garbage",
    ["", "   ", "hello", "45", "4521", "650", "099", "3.1.1", "5.1", "5.1.1.1", "5.1000.1", "x452", "452x"],
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(ValueError):
        explain(garbage)


def test_452_names_postier_replies() -> None:
    assert explain("452").sent_as == (
        "QUEUE_FULL — Insufficient system storage, try again later",
        "TOO_MANY_RECIPIENTS — Too many recipients",
        "MAILBOX_FULL — Mailbox full, try again later",
    )
    assert [name for name, _ in replies_using(452, "4.5.3")] == ["TOO_MANY_RECIPIENTS"]
    assert [name for name, _ in replies_using(None, "X.5.3")] == ["TOO_MANY_RECIPIENTS"]


CATALOGUE = [(name, value) for name, value in vars(S).items() if isinstance(value, Reply)]


@pytest.mark.parametrize(("name", "reply"), CATALOGUE, ids=[name for name, _ in CATALOGUE])
def test_every_postier_reply_is_explained(name: str, reply: Reply) -> None:
    query = f"{reply.code} {reply.status}" if reply.status else str(reply.code)
    expl = explain(query)
    assert all(e.is_known for e in expl.entries)
    assert expl.basic is not None and expl.basic.is_rfc
    if reply.status is not None:
        assert expl.enhanced is not None and expl.enhanced.is_rfc
    # No complaint about our own replies: at most "defined by RFC 4954, not RFC 5321".
    assert not [n for n in expl.notes if "RFC 5321 but by RFC 4954" not in n]
    assert f"{name} — {reply.text}" in expl.sent_as


def test_tables_cover_the_registries() -> None:
    rfc5321 = {211, 214, 220, 221, 250, 251, 252, 354, 421, 450, 451, 452, 455}
    rfc5321 |= {500, 501, 502, 503, 504, 550, 551, 552, 553, 554, 555}
    rfc4954 = {235, 334, 432, 454, 530, 534, 535, 538}
    assert rfc5321 | rfc4954 <= set(BASIC)
    # IANA registry: X.0.0, X.1.0–10, X.2.0–4, X.3.0–6, X.4.0–7, X.5.0–6, X.6.0–9, X.7.0–30.
    registry = {(0, 0)} | {
        (s, d)
        for s, top in [(1, 10), (2, 4), (3, 6), (4, 7), (5, 6), (6, 9), (7, 30)]
        for d in range(top + 1)
    }
    assert registry == set(ENHANCED)


@pytest.mark.parametrize(
    ("words", "queries"),
    [
        (["452"], ["452"]),
        (["550", "5.7.1"], ["550 5.7.1"]),
        (["550", "5.7.1", "452", "4.5.3"], ["550 5.7.1", "452 4.5.3"]),
        (["5.1.1", "550"], ["5.1.1", "550"]),
        (["452", "421"], ["452", "421"]),
        (["111", "5.1.10"], ["111", "5.1.10"]),
        (["550 5.7.1 Relay access denied", "4.4.1"], ["550 5.7.1 Relay access denied", "4.4.1"]),
    ],
)
def test_group_queries(words: list[str], queries: list[str]) -> None:
    assert group_queries(words) == queries


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="postier")
    explain_cmd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["explain", *argv])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "452")
    assert code == 0 and err == ""
    assert "Insufficient system storage" in out
    assert "tries again later" in out
    assert "Postier sends this as: QUEUE_FULL" in out and "TOO_MANY_RECIPIENTS — Too many recipients" in out
    assert "RFC 5321 §4.2.3" in out
    assert len(out.splitlines()) < 10


def test_cli_mismatch_and_several_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "550", "4.1.1", "5.1.10")
    assert code == 0
    assert "class digits disagree" in out
    assert "null MX" in out
    assert out.count("\n\n") == 1  # two explanations


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "550 5.7.1", "571", "--json")
    assert code == 0
    data = json.loads(out)
    assert [d["query"] for d in data] == ["550 5.7.1", "571"]
    assert data[0]["enhanced"]["source"] == "RFC 3463 §3.8"
    assert any(s.startswith("DMARC_REJECT ") for s in data[0]["postier_sends_as"])
    assert "MILTER_REJECTED — Message content rejected" in data[0]["postier_sends_as"]
    assert data[1]["basic"]["defined_by_rfc"] is False
    assert data[1]["outcome"] == "permanent"


@pytest.mark.parametrize("argv", [["hello"], ["452", "nope"], ["650"], ["3.1.1"]])
def test_cli_garbage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("postier explain: ")
    assert ("not a" in err) or ("class must be" in err)
