"""Feature checks of the policy pipeline that join it to a package ``policy`` may not import
(``mailauth``: SPF, DKIM, DMARC, ARC). The composition root (``app.py``) builds them and hands them to
``policy.build_policy(checks=…)``; they sit above both ``policy`` and ``mailauth`` in the layers."""
