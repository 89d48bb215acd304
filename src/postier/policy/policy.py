"""The ``Policy``: every accept/refuse decision of a configuration, in one immutable object.

``build_policy`` makes it from the configuration; a reload builds a new one and the server swaps one
reference. A session takes the policy of the moment at connect and again at each MAIL FROM, and keeps
that one to the end of the transaction: a reload never shows it half the old and half the new rules.
Objects that carry counters (rate-limit windows) are reused from the previous policy when their
settings did not change, so a reload does not reset them.

The order of the checks is written here, once (cheap first; docs/flow.md and docs/policy.md):
``sender`` (MAIL) · ``relay``, ``relay-recipients``, ``recipient``, ``rate`` (RCPT) · ``loop`` (DATA)
· then the feature checks the composition root passes in (mail authentication, anti-spam), in the
order given · then the user's ``[[check]]`` tables, in file order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from postier.config.model import Config
from postier.mail.address import Address
from postier.mail.envelope import Recipient
from postier.policy.admission import ConnectionLimits
from postier.policy.basic import LoopCheck, RateCheck, RecipientCheck, Recipients, RelayCheck, SenderCheck
from postier.policy.check import Stage
from postier.policy.context import Client
from postier.policy.hooks import load_check
from postier.policy.pipeline import Pipeline
from postier.policy.ratelimit import RateLimits
from postier.policy.relay import RelayPolicy
from postier.policy.relaydomains import RelayRecipientCheck, load_recipient_lists

__all__ = ["Directory", "Policy", "build_policy"]


class Directory(Recipients, Protocol):
    """The local directory as the policy and the intake use it (``users.directory.LocalDirectory``)."""

    def expand(self, recipients: Iterable[Recipient]) -> tuple[Recipient, ...]: ...


@dataclass(frozen=True, slots=True)
class Policy:
    relay: RelayPolicy
    limits: RateLimits
    connections: ConnectionLimits
    pipeline: Pipeline
    rate: RateCheck
    directory: Directory | None = None

    def client(self, *, sid: str, ip: str, port: int, listener: str, local: str, tls: str | None) -> Client:
        """The client as the checks see it at connect."""
        return Client(sid, ip, port, listener, local, self.relay.is_trusted(ip), tls)

    def is_rate_limited(self, client_ip: str) -> bool:
        """Per-IP connection and message limits apply (trusted networks are exempt unless configured)."""
        return not (self.limits.exempt_trusted and self.relay.is_trusted(client_ip))

    def expand(self, recipients: tuple[Recipient, ...]) -> tuple[Recipient, ...]:
        """The final recipients: aliases, catch-all, sub-addresses and postmaster resolved."""
        return recipients if self.directory is None else self.directory.expand(recipients)

    def queued(self, client: Client) -> None:
        """A message of ``client`` was queued: count it against the hourly limits."""
        self.rate.count(client)


def build_policy(
    config: Config,
    *,
    directory: Directory | None = None,
    sender_rule: Callable[[str, Address | None], bool] | None = None,
    checks: Sequence[object] = (),
    previous: Policy | None = None,
) -> Policy:
    """The policy of ``config``. ``checks``: the feature checks built by the composition root, asked
    after the built-in ones; ``previous``: the running policy, whose counters are kept when unchanged."""
    rc = config.relay
    relay = RelayPolicy.build(rc.local_domains, rc.trusted_networks, rc.relay_domains)
    limits = _limits(config, previous)
    rate = RateCheck(limits)
    builtin: list[object] = []
    if sender_rule is not None:
        builtin.append(SenderCheck(sender_rule))
    builtin.append(RelayCheck(relay, directory))
    if rc.relay_recipients:
        builtin.append(RelayRecipientCheck(load_recipient_lists(rc.relay_recipients)))
    if directory is not None:
        builtin.append(RecipientCheck(directory))
    builtin += [rate, LoopCheck()]
    users = [load_check(c.module, c.options, key=f"check[{i}].module") for i, c in enumerate(config.checks)]
    p = config.policy
    timeouts = {
        Stage.CONNECT: p.connect_timeout_s,
        Stage.HELO: p.helo_timeout_s,
        Stage.MAIL: p.mail_timeout_s,
        Stage.RCPT: p.rcpt_timeout_s,
        Stage.DATA: p.data_timeout_s,
    }
    s = config.server
    connections = ConnectionLimits(
        s.max_connections, s.max_connections_per_ip, p.ipv6_prefix, limits.connections_per_ip
    )
    pipeline = Pipeline([*builtin, *checks, *users], timeouts_s=timeouts)
    return Policy(relay, limits, connections, pipeline, rate, directory)


def _limits(config: Config, previous: Policy | None) -> RateLimits:
    lc = config.limits
    limits = RateLimits.build(
        connections_per_minute_per_ip=lc.connections_per_minute_per_ip,
        messages_per_hour_per_ip=lc.messages_per_hour_per_ip,
        messages_per_hour_per_user=lc.messages_per_hour_per_user,
        exempt_trusted=lc.exempt_trusted_networks,
    )
    if previous is not None and _same_limits(previous.limits, limits):
        return previous.limits  # keep the counters
    return limits


def _same_limits(a: RateLimits, b: RateLimits) -> bool:
    def shape(limits: RateLimits) -> tuple[object, ...]:
        windows = (limits.connections_per_ip, limits.messages_per_ip, limits.messages_per_user)
        return (*((w.limit, w.window_s) if w else None for w in windows), limits.exempt_trusted)

    return shape(a) == shape(b)
