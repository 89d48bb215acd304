"""Render docs/configuration.md from the config structs and their field docstrings.

The page is generated, so it can never drift from the code: a test compares the committed file with
``render()``. Regenerate with ``python -m postier.config.doc > docs/configuration.md``.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json

import msgspec

from postier.config import antispam, model

__all__ = ["render"]

_SECTIONS: list[tuple[str, type[msgspec.Struct], str]] = [
    ("server", model.ServerConfig, "[server]"),
    (
        "listener",
        model.ListenerConfig,
        "[[listener]] (one per socket; default: smtp 127.0.0.1:2525, submission 127.0.0.1:2587)",
    ),
    ("tls", model.TlsConfig, "[tls]"),
    ("queue", model.QueueConfig, "[queue]"),
    ("relay", model.RelayConfig, "[relay]"),
    ("auth", model.AuthConfig, "[auth] (SMTP AUTH on submission listeners)"),
    ("limits", model.LimitsConfig, "[limits] (rate limits)"),
    ("dns", model.DnsConfig, "[dns]"),
    ("delivery", model.DeliveryConfig, "[delivery] (outbound SMTP: TLS, retries, bounces, concurrency)"),
    ("route", model.RouteConfig, "[[route]] (a relay for chosen recipient domains; a transport map)"),
    ("local", model.LocalConfig, "[local] (local domains: recipients, aliases, mailboxes)"),
    ("policy", model.PolicyConfig, "[policy] (the check pipeline: deadlines, client keys)"),
    ("check", model.CheckConfig, "[[check]] (a user check: a Python class; docs/policy.md)"),
    ("metrics", model.MetricsConfig, "[metrics] (Prometheus endpoint)"),
    ("log", model.LogConfig, "[log]"),
    ("dkim", model.DkimConfig, "[dkim] (DKIM signing of outgoing mail: docs/dkim.md)"),
    ("dkim.key", model.DkimKeyConfig, "[[dkim.key]] (a DKIM key kept outside data_dir/dkim)"),
    ("mailauth", model.MailauthConfig, "[mailauth] (SPF, DKIM, DMARC, ARC on arrival: docs/mailauth.md)"),
    ("api", model.ApiConfig, "[api] (HTTP API and dashboard: docs/api.md)"),
    ("suppression", model.SuppressionConfig, "[suppression] (addresses no longer sent to: docs/api.md)"),
    ("webhook", model.WebhookConfig, "[[webhook]] (a receiver of delivery events: docs/api.md)"),
    (
        "antispam",
        antispam.AntispamConfig,
        "[antispam] (DNSBL, pregreet, greylisting, rspamd)",
    ),
    ("antispam.dnsbl", antispam.DnsblZoneConfig, "[[antispam.dnsbl]] (one per DNS block or allow list)"),
    ("milter", antispam.MilterConfig, "[[milter]] (one per milter, asked at the end of data in order)"),
]

_INTRO = """# Configuration

Postier reads one TOML file: `postier serve --config postier.toml`. Without `--config` it runs on the
embedded defaults below. Every key is optional; an unknown key or a value of the wrong type is an error
that names the key (`postier check-config --config FILE` validates a file and prints the effective
settings). Durations are in seconds (`_s`), sizes in octets (`_bytes`).

This page is generated from `src/postier/config/model.py` (`python -m postier.config.doc`); a test
keeps the two equal.

```toml
[server]
hostname = "mx.example.test"
data_dir = "/var/lib/postier"

[[listener]]
address = "0.0.0.0:25"
mode = "smtp"

[[listener]]
address = "0.0.0.0:587"
mode = "submission"

[tls]
cert = "/etc/postier/cert.pem"
key = "/etc/postier/key.pem"

[relay]
local_domains = ["example.test"]
trusted_networks = ["127.0.0.0/8", "::1/128"]
```
"""


def _field_docs(struct: type) -> dict[str, str]:
    """Attribute docstrings: the string literal right after each annotated field."""
    tree = ast.parse(inspect.getsource(struct))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _default(info: msgspec.inspect.Field) -> str:
    if info.required:
        return "(required)"
    value = info.default if info.default is not msgspec.NODEFAULT else info.default_factory()
    return f"`{json.dumps(msgspec.to_builtins(value), ensure_ascii=False)}`"


def render() -> str:
    out = [_INTRO]
    for name, struct, title in _SECTIONS:
        out.append(f"\n## {title}\n\n| key | default | meaning |\n|---|---|---|\n")
        docs = _field_docs(struct)
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            doc = docs.get(field.name, "").replace("|", "\\|")
            out.append(f"| `{name}.{field.encode_name}` | {_default(field)} | {doc} |\n")
    return "".join(out)


if __name__ == "__main__":
    print(render(), end="")
