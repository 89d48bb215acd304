"""TLS that cannot be stripped: MTA-STS (RFC 8461), DANE (RFC 7672), and the plan that picks, per
MX host, which one applies (``plan``: DANE > MTA-STS > ``delivery.tls_policy`` > ``delivery.tls``)."""
