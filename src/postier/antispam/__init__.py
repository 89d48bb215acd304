"""Anti-spam checks of the policy pipeline (docs/antispam.md), cheapest first:

- ``dnsbl.py``: DNS block and allow lists, looked up at connect, refused at RCPT (554 5.7.1);
- ``pregreet.py``: the pregreet test, run by the session before the greeting's last line;
- ``greylist.py``: greylisting at RCPT (451 4.7.1), triplets in SQLite beside the queue;
- ``rspamd.py``: rspamd over HTTP (``/checkv2``) at the end of data;
- ``milter/``: the Sendmail milter protocol v6 (OpenDKIM, rspamd's proxy, spamass-milter …), end of data.

``antispam_checks`` builds the checks of a configuration; ``AntispamState`` (``state.py``) is what
the composition root (app.py) keeps across reloads (the greylisting store, the pregreet memory).
"""

from postier.antispam.assemble import antispam_checks
from postier.antispam.greylist import GreylistStore
from postier.antispam.pregreet import Pregreet, PregreetPasses
from postier.antispam.state import AntispamState

__all__ = ["AntispamState", "GreylistStore", "Pregreet", "PregreetPasses", "antispam_checks"]
