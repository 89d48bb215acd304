"""Feature checks of the policy pipeline that join it to a package ``policy`` may not import
(``mailauth``: SPF, DKIM, DMARC, ARC). The composition root (``app.py``) builds them and hands them to
``policy.build_policy(checks=…)``; they sit above both ``policy`` and ``mailauth`` in the layers."""

from postier.checks.mailauth import MailauthCheck, Observation

__all__ = ["MailauthCheck", "Observation"]
