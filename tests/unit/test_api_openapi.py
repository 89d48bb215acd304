"""The OpenAPI document is valid OpenAPI 3.1 and describes every /v1 route the API serves (CI's check)."""

from __future__ import annotations

from openapi_spec_validator import validate

from postier.api.openapi import document
from postier.api.web import routes


def test_the_document_is_valid_and_covers_the_v1_routes() -> None:
    doc = document()
    validate(doc)  # type: ignore[arg-type]
    served = {(r.path, m.lower()) for r in routes() if r.path.startswith("/v1/") for m in r.methods or ()}
    documented = {(path, m) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    missing = {(p, m) for p, m in served if m != "head" and p != "/v1/openapi.json"} - documented
    assert not missing
