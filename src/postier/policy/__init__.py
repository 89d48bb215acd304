"""The policy pipeline: every accept/refuse decision of the server, as checks asked at each stage.

See ``policy.py`` (the ``Policy`` and the order of checks), ``pipeline.py`` (how a stage runs and how
verdicts combine), ``check.py`` (what a check is), ``verdict.py`` and ``context.py``; docs/policy.md.
"""

from postier.policy.check import Check, Stage
from postier.policy.context import Client, Message, Transaction
from postier.policy.pipeline import Decision, Pipeline
from postier.policy.policy import Directory, Policy, build_policy
from postier.policy.verdict import ACCEPT, Action, Verdict, defer, discard, quarantine, reject, tag

__all__ = [
    "ACCEPT",
    "Action",
    "Check",
    "Client",
    "Decision",
    "Directory",
    "Message",
    "Pipeline",
    "Policy",
    "Stage",
    "Transaction",
    "Verdict",
    "build_policy",
    "defer",
    "discard",
    "quarantine",
    "reject",
    "tag",
]
