"""The OpenAPI 3.1 document of the HTTP API, served at ``/v1/openapi.json`` (no key needed) and
validated in CI (tests/unit/api/test_openapi.py). Written by hand beside the routes it describes."""

from __future__ import annotations

from typing import Any

__all__ = ["document"]

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9A-Za-z]{16}$"},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _PROBLEM for code in ("401", "403", *codes)}


_SCHEMAS: dict[str, Any] = {
    "SendRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "from": {
                "type": "string",
                "description": "sender: 'Name <a@b>' or 'a@b' (also the envelope sender)",
            },
            "to": {"type": "array", "items": {"type": "string"}},
            "cc": {"type": "array", "items": {"type": "string"}},
            "bcc": {"type": "array", "items": {"type": "string"}},
            "reply_to": {"type": "string"},
            "subject": {"type": "string"},
            "text": {"type": "string"},
            "html": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "attachments": {"type": "array", "items": _ref("Attachment")},
            "raw": {"type": "string", "description": "a whole RFC 5322 message instead of the fields"},
            "list_unsubscribe": {
                "type": "boolean",
                "description": "RFC 8058 one-click fields (one recipient)",
            },
        },
    },
    "Attachment": {
        "type": "object",
        "required": ["filename", "content"],
        "properties": {
            "filename": {"type": "string"},
            "content": {"type": "string", "contentEncoding": "base64"},
            "content_type": {"type": "string", "default": "application/octet-stream"},
        },
    },
    "Queued": {
        "type": "object",
        "required": ["id", "recipients"],
        "properties": {"id": {"type": "string"}, "recipients": {"type": "integer"}},
    },
    "Summary": {"type": "object", "description": "one message of a listing (as postier queue list --json)"},
    "Message": {
        "type": "object",
        "description": "a message with its recipients: state, attempts, last reply and its explanation",
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "held", "done"]},
            "recipients": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Page": {
        "type": "object",
        "required": ["items", "offset", "limit", "next"],
        "properties": {
            "items": {"type": "array", "items": _ref("Summary")},
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "next": {"type": ["integer", "null"]},
        },
    },
    "Acted": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "action": {"type": "string"},
            "changed": {"type": "integer"},
        },
    },
    "Events": {
        "type": "object",
        "required": ["items", "next", "last"],
        "properties": {
            "items": {"type": "array", "items": {"type": "object"}},
            "next": {"type": ["integer", "null"]},
            "last": {"type": "integer"},
        },
    },
    "Stats": {"type": "object", "description": "as postier queue stats --json"},
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
        },
    },
}


def _paths() -> dict[str, Any]:
    listing_params = [
        {"name": n, "in": "query", "required": False, "schema": s}
        for n, s in (
            ("status", {"type": "string", "enum": ["active", "held", "done"]}),
            ("domain", {"type": "string"}),
            ("since", {"type": "string", "format": "date-time"}),
            ("limit", {"type": "integer", "minimum": 0}),
            ("offset", {"type": "integer", "minimum": 0}),
        )
    ]
    action = {
        "name": "action",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": ["hold", "release", "retry"]},
    }
    return {
        "/v1/messages": {
            "post": {
                "summary": "Send a message (202 once it is durable in the queue). Scope: send.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SendRequest")}},
                },
                "responses": {
                    "202": _json(_ref("Queued"), "queued"),
                    **_errors("400", "413", "415", "422", "503"),
                },
            },
            "get": {
                "summary": "Messages in the queue, oldest first, a page at a time. Scope: read.",
                "parameters": listing_params,
                "responses": {"200": _json(_ref("Page"), "a page"), **_errors("400")},
            },
        },
        "/v1/messages/{id}": {
            "get": {
                "summary": "One message: state, attempts, explained last reply per recipient. Scope: read.",
                "parameters": [_ID],
                "responses": {"200": _json(_ref("Message"), "the message"), **_errors("404")},
            },
            "delete": {
                "summary": "Delete a message from the queue. Scope: admin.",
                "parameters": [_ID],
                "responses": {"200": _json(_ref("Acted"), "done"), **_errors("404")},
            },
        },
        "/v1/messages/{id}/{action}": {
            "post": {
                "summary": "Hold, release or retry (now) a message. Scope: admin.",
                "parameters": [_ID, action],
                "responses": {"200": _json(_ref("Acted"), "done"), **_errors("404")},
            }
        },
        "/v1/events": {
            "get": {
                "summary": "Delivery events, oldest first, after the id given. Scope: read.",
                "parameters": [
                    {"name": n, "in": "query", "required": False, "schema": sch}
                    for n, sch in (
                        ("after", {"type": "integer", "minimum": 0}),
                        ("limit", {"type": "integer", "minimum": 1}),
                        ("type", {"type": "string", "description": "comma-separated event types"}),
                        ("queue_id", {"type": "string"}),
                    )
                ],
                "responses": {"200": _json(_ref("Events"), "a page of events"), **_errors("400", "404")},
            }
        },
        "/v1/suppressions": {
            "get": {
                "summary": "Suppressed addresses, newest first. Scope: read.",
                "responses": {"200": _json({"type": "object"}, "a page"), **_errors("404")},
            }
        },
        "/v1/suppressions/{address}": {
            "parameters": [{"name": "address", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "One suppressed address. Scope: read.",
                "responses": {"200": _json({"type": "object"}, "the entry"), **_errors("404")},
            },
            "put": {
                "summary": "Suppress an address (reason, expires_in_s). Scope: admin.",
                "responses": {
                    "200": _json({"type": "object"}, "updated"),
                    "201": _json({"type": "object"}, "added"),
                    **_errors("404", "422"),
                },
            },
            "delete": {
                "summary": "Send to an address again. Scope: admin.",
                "responses": {"204": {"description": "removed"}, **_errors("404")},
            },
        },
        "/v1/unsubscribe/{token}": {
            "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {
                "summary": "A page with an unsubscribe button (changes nothing). No key.",
                "security": [],
                "responses": {"200": {"description": "HTML page"}, "404": _PROBLEM},
            },
            "post": {
                "summary": "RFC 8058 one-click unsubscribe: suppresses the link's address. No key.",
                "security": [],
                "responses": {"200": {"description": "unsubscribed"}, "404": _PROBLEM},
            },
        },
        "/v1/stats": {
            "get": {
                "summary": "Queue counts by state and by destination and age. Scope: read.",
                "responses": {"200": _json(_ref("Stats"), "the counts"), **_errors()},
            }
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Postier HTTP API", "version": "1", "description": "docs/api.md"},
        "security": [{"apiKey": []}],
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "postier api-key add"}
            },
            "responses": {
                "Problem": {
                    "description": "an error (RFC 9457)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
        },
    }
