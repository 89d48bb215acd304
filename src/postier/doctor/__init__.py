"""``postier doctor``: a deliverability audit of our own domains and sending addresses (docs/doctor.md).

Theory of operation. Each check is split the way mailauth/ is: a ``gather_*`` coroutine asks the DNS
(through one ``RecordingLookup``, which keeps every answer for ``--verbose``) or reads a file, and a
pure ``judge_*`` function turns what was gathered into ``Finding`` values: ``ok``, ``warn`` or
``fail``, a one-line reason, and — when something must change — the exact record or setting to
publish. ``diagnose`` runs every gathering concurrently under one deadline. ``zone_snippet`` gives
the complete set of records for a new domain (``postier doctor --records``).
"""
