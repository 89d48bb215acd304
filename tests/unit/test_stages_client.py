"""SessionStages.client(): the client as checks see it, a new value when HELO, TLS or AUTH changed."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any, cast

from postier.policy import Client
from postier.server.stages import SessionStages


def test_a_changed_client_keeps_every_other_field() -> None:
    auth = SimpleNamespace(user="alice")
    stages = SessionStages(cast(Any, SimpleNamespace(live=None)), "sid1", cast(Any, auth))
    before = Client(
        sid="sid1",
        ip="192.0.2.7",
        port=40000,
        listener="submission",
        local="127.0.0.1:587",
        is_trusted=True,
        tls=None,
        helo="",
        esmtp=False,
        auth_user=None,
    )
    # Every field set away from its default: a field the copy forgot would come back as its default.
    defaults = Client(sid="", ip="", port=0, listener="")
    changed = {"tls", "helo", "esmtp", "auth_user"}
    for f in dataclasses.fields(Client):
        if f.name not in changed:
            assert getattr(before, f.name) != getattr(defaults, f.name), f.name
    stages._client = before
    stages.helo, stages.esmtp, stages.tls = "mx.example", True, "TLSv1.3 TLS_AES_128_GCM_SHA256"
    after = stages.client()
    assert after == dataclasses.replace(
        before, helo="mx.example", esmtp=True, tls="TLSv1.3 TLS_AES_128_GCM_SHA256", auth_user="alice"
    )
    assert stages.client() is after  # nothing changed since: the same value
