"""The anti-spam checks of one configuration, in the order the pipeline asks them (cheap first)."""

from __future__ import annotations

import time
from collections.abc import Callable

from postier.antispam.dnsbl import DnsblCheck, Zone, ZoneResolver
from postier.antispam.greylist import GreylistCheck, GreylistSettings, GreylistStore
from postier.antispam.milter.check import MilterCheck
from postier.antispam.rspamd import RspamdCheck
from postier.config.model import Config

__all__ = ["antispam_checks"]


def antispam_checks(
    config: Config,
    *,
    resolver: ZoneResolver,
    greylist: GreylistStore | None,
    clock: Callable[[], float] = time.time,
) -> list[object]:
    """``dnsbl`` (connect, RCPT) · ``greylist`` (RCPT) · ``rspamd`` then each ``[[milter]]`` (data).
    ``greylist``: the application's store (None when greylisting is off)."""
    a, hostname = config.antispam, config.server.hostname
    checks: list[object] = []
    dnsbl = None
    if a.dnsbl:
        zones = (Zone(z.zone.strip(".").lower(), z.weight, frozenset(z.codes)) for z in a.dnsbl)
        dnsbl = DnsblCheck(resolver, zones, threshold=a.dnsbl_threshold, timeout_s=a.dnsbl_timeout_s)
        checks.append(dnsbl)
    if a.greylist and greylist is not None:
        settings = GreylistSettings(
            delay_s=a.greylist_delay_s,
            retry_window_s=a.greylist_retry_window_s,
            ttl_s=a.greylist_ttl_s,
            auto_allow=a.greylist_auto_allow,
            ipv4_prefix=a.greylist_ipv4_prefix,
            ipv6_prefix=a.greylist_ipv6_prefix,
        )
        checks.append(
            GreylistCheck(
                greylist,
                settings,
                clock=clock,
                standing=dnsbl.standing if dnsbl is not None else None,
                exempt_networks=a.greylist_exempt_networks,
                exempt_spf_domains=a.greylist_exempt_spf_domains,
            )
        )
    if a.rspamd_url:
        checks.append(
            RspamdCheck(
                a.rspamd_url,
                hostname=hostname,
                timeout_s=a.rspamd_timeout_s,
                failure=a.rspamd_failure,
                scan_ours=a.rspamd_scan_ours,
                max_bytes=a.rspamd_max_bytes,
            )
        )
    for m in config.milters:
        checks.append(
            MilterCheck(
                m.address,
                hostname=hostname,
                name=m.name,
                connect_timeout_s=m.connect_timeout_s,
                timeout_s=m.timeout_s,
                failure=m.failure,
                scan_ours=m.scan_ours,
            )
        )
    return checks
