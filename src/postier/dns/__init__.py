"""DNS for Postier: the ``Resolver`` protocol, its dnspython implementation with a TTL cache, typed
errors, and the pure MX routing decisions of RFC 5321 §5.1 and RFC 7505."""

from postier.dns.cache import AnswerCache, Clock
from postier.dns.errors import DnsError, NoData, NxDomain, TemporaryDnsError
from postier.dns.mx import (
    DNS_TEMPORARY_FAILURE,
    MX_LOOP,
    NO_SUCH_DOMAIN,
    NULL_MX,
    MxPlan,
    drop_self,
    mx_targets,
    resolve_mx,
    select_mx,
)
from postier.dns.resolver import MxRecord, Resolver, SecureAnswer, SecureResolver
from postier.dns.stub import DnsPythonResolver

__all__ = [
    "DNS_TEMPORARY_FAILURE",
    "MX_LOOP",
    "NO_SUCH_DOMAIN",
    "NULL_MX",
    "AnswerCache",
    "Clock",
    "DnsError",
    "DnsPythonResolver",
    "MxPlan",
    "MxRecord",
    "NoData",
    "NxDomain",
    "Resolver",
    "SecureAnswer",
    "SecureResolver",
    "TemporaryDnsError",
    "drop_self",
    "mx_targets",
    "resolve_mx",
    "select_mx",
]
