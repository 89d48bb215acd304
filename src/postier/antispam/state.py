"""What the anti-spam checks keep across reloads, owned by the application (app.py).

A reload builds new checks from the new configuration, but two things must outlive it: the
greylisting store (``data_dir/greylist.sqlite``, opened the first time a configuration turns
greylisting on, then kept) and the pregreet memory of clients that passed.
"""

from __future__ import annotations

import time
from pathlib import Path

from postier.antispam.assemble import antispam_checks
from postier.antispam.dnsbl import ZoneResolver
from postier.antispam.greylist import GreylistSettings, GreylistStore
from postier.antispam.pregreet import Pregreet, PregreetPasses
from postier.config.model import Config

__all__ = ["AntispamState"]


class AntispamState:
    def __init__(self, data_dir: Path, config: Config) -> None:
        self.data_dir = data_dir
        self.greylist: GreylistStore | None = None
        self.pregreet = PregreetPasses(config.antispam.pregreet_pass_ttl_s)

    def checks(self, config: Config, resolver: ZoneResolver) -> list[object]:
        """The anti-spam checks of ``config`` (antispam/assemble.py), over the kept state."""
        a = config.antispam
        if a.greylist and self.greylist is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.greylist = GreylistStore(self.data_dir / "greylist.sqlite")
        self.pregreet.ttl_s = a.pregreet_pass_ttl_s
        return antispam_checks(config, resolver=resolver, greylist=self.greylist)

    def pregreet_test(self, config: Config) -> Pregreet | None:
        """What the sessions of ``config`` run before the greeting (None: no pregreet test)."""
        delay = config.antispam.pregreet_s
        return Pregreet(delay, self.pregreet) if delay > 0 else None

    def purge(self, config: Config) -> None:
        """Forget expired greylisting triplets (with the queue's retention run)."""
        if self.greylist is not None:
            a = config.antispam
            expiry = GreylistSettings(retry_window_s=a.greylist_retry_window_s, ttl_s=a.greylist_ttl_s)
            self.greylist.purge(time.time(), expiry)

    def close(self) -> None:
        if self.greylist is not None:
            self.greylist.close()
