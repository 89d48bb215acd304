"""The RFC 7208 conformance suite (tests/data/spf/README.md says where it comes from), every case run
against ``postier.mailauth.spf.check_spf`` through a ``RecordLookup`` holding the suite's zone data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from mailauthzone import TIMEOUT, ZoneLookup

from postier.mailauth.spf import check_spf

SUITE = Path(__file__).parent.parent / "data" / "spf" / "rfc7208-tests.yml"


def _values(value: Any) -> list[str]:
    if isinstance(value, list):  # a TXT record of several strings: joined (RFC 7208 §3.3)
        return ["".join(str(v) for v in value)] if value else []
    return [str(value)]


def _zone(data: dict[str, list[Any]]) -> dict[str, Any]:
    """The suite's zone data as ``ZoneLookup`` wants it. As its drivers do, SPF (type 99) records are
    served as TXT where a name has no TXT of its own (RFC 7208 dropped type 99)."""
    zone: dict[str, Any] = {}
    for name, entries in data.items():
        by_type: dict[str, Any] = {}
        has_txt = False
        for entry in entries:
            if entry == TIMEOUT:  # every type not listed times out
                by_type["*"] = TIMEOUT
                continue
            for rdtype, value in entry.items():
                if value == "NONE":  # no record, but no TXT copy of the SPF records either
                    has_txt = True
                elif value == TIMEOUT:
                    by_type[rdtype] = TIMEOUT
                elif rdtype == "MX":
                    by_type.setdefault("MX", []).append(f"{value[0]} {value[1]}")
                else:
                    by_type.setdefault(rdtype, []).extend(_values(value))
        if "SPF" in by_type and "TXT" not in by_type and not has_txt:
            by_type["TXT"] = by_type["SPF"]
        zone[name] = by_type
    return zone


def _cases() -> list[Any]:
    cases = []
    with SUITE.open("rb") as f:
        for scenario in yaml.safe_load_all(f):
            zone = _zone(scenario["zonedata"])
            for name, test in scenario["tests"].items():
                cases.append(pytest.param(zone, test, id=name))
    return cases


CASES = _cases()


def test_the_whole_suite_is_here() -> None:
    assert len(CASES) == 203


@pytest.mark.parametrize(("zone", "test"), CASES)
async def test_rfc7208(zone: dict[str, Any], test: dict[str, Any]) -> None:
    result = await check_spf(
        ZoneLookup(zone), test["host"], sender=test["mailfrom"], helo=test["helo"], receiver="receiver.com"
    )
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert result.result in expected, f"{test.get('description')}: {result}"
    if "explanation" in test and test["explanation"] != "DEFAULT":
        wanted = test["explanation"]
        if ":" in test["host"]:
            # The suite keeps the case of the IPv6 address it was given in %{ir}'s nibbles; RFC 7208
            # §7.3 does not fix their case (and DNS names are case-insensitive): ours are lowercase.
            assert result.explanation is not None
            assert result.explanation.lower() == wanted.lower()
        else:
            assert result.explanation == wanted
