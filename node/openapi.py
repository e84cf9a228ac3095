"""The API described in OpenAPI 3.1, and request bodies validated against it.

The document is the single description of every endpoint (served at GET /api/openapi.json).
A middleware checks each JSON request body against its operation's schema before the handler
runs, so a malformed body is refused the same way everywhere: 400 with the code of the field that
failed (``x-error-code`` on its schema: ``invalid_amount``, ``invalid_channel``...), or
``unknown_field`` / ``missing_field``. Handlers still check what a schema cannot express (an
amount of zero, text length in bytes). The validator covers the JSON Schema subset used here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from node import __version__
from protocol.limits import (
    MAX_CHANNEL_BYTES,
    MAX_MEMO_BYTES,
    MAX_NAME_BYTES,
    MAX_POST_CONTENT_BYTES,
)

Schema = dict[str, Any]

HEX_ID = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
ACCOUNT_ID: Schema = {**HEX_ID, "x-error-code": "invalid_account", "description": "account id"}
NODE_ID: Schema = {**HEX_ID, "x-error-code": "invalid_node", "description": "node id"}
AMOUNT: Schema = {
    "type": ["string", "integer"],
    "pattern": r"^(0|[1-9][0-9]{0,18})(\.[0-9]{1,2})?$",
    "minimum": 1,
    "x-error-code": "invalid_amount",
    "description": 'decimal amount with at most two decimals, e.g. "12.34"',
}
CHANNEL: Schema = {
    "type": "string",
    "pattern": f"^[a-z0-9][a-z0-9_-]{{0,{MAX_CHANNEL_BYTES - 1}}}$",
    "x-error-code": "invalid_channel",
}
ERROR: Schema = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
}


def _obj(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


def _out(properties: dict[str, Schema], required: list[str]) -> Schema:
    """A response object: these fields at least (responses may grow new fields)."""
    return {"type": "object", "properties": properties, "required": required}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "bad input",
        403: "not allowed",
        404: "not found",
        409: "conflict with the node's state",
        413: "too large",
        422: "a protocol or ledger rule refused it",
        503: "not ready, busy or storage unavailable",
    }
    return {str(s): _json(ERROR, meaning[s]) for s in statuses}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
NULLABLE_NUMBER = {"type": ["number", "null"]}

ACCOUNT_VIEW = _out(
    {
        "id": HEX_ID,
        "name": STRING,
        "balance": STRING,
        "received": STRING,
        "sent": STRING,
        "held": BOOLEAN,
        "pool": BOOLEAN,
    },
    ["id", "name", "balance", "held"],
)
ROUTE_VIEW = _out(
    {
        "destination": HEX_ID,
        "path": {"type": "array", "items": HEX_ID},
        "hops": INTEGER,
        "latency_ms": NUMBER,
        "reliability": NUMBER,
    },
    ["destination", "path", "hops", "latency_ms", "reliability"],
)


def _operations() -> dict[str, dict[str, Any]]:
    account_param = [
        {"name": "account", "in": "path", "required": True, "schema": HEX_ID, "example": ""}
    ]
    node_param = [{"name": "node", "in": "path", "required": True, "schema": HEX_ID}]
    limit_param = {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
    }
    return {
        "/": {
            "get": {
                "summary": "The status page (HTML, live-updating).",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/api/stream": {
            "get": {
                "summary": "Live updates (server-sent events): which page sections changed.",
                "responses": {
                    "200": {
                        "description": "an event stream: `hello`, then `change` events",
                        "content": {"text/event-stream": {}},
                    },
                    **_errors(503),
                },
            }
        },
        "/fragment/{section}": {
            "get": {
                "summary": "One section of the status page as HTML (for live updates).",
                "parameters": [
                    {
                        "name": "section",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "enum": [
                                "node",
                                "events",
                                "routes",
                                "sync",
                                "peers",
                                "topology",
                                "messages",
                                "ledger",
                            ],
                        },
                        "example": "node",
                    }
                ],
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {}}},
                    "404": {"description": "no such section"},
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "200 once the node is ready, 503 while it starts.",
                "responses": {
                    "200": _json(_out({"status": STRING}, ["status"]), "ready"),
                    **_errors(503),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format).",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
            }
        },
        "/api/status": {
            "get": {
                "summary": "Node status: id, version, uptime, peers, events, ledger, catch-up.",
                "responses": {
                    "200": _json(
                        _out(
                            {
                                "node_id": STRING,
                                "version": STRING,
                                "uptime_s": NUMBER,
                                "peers": INTEGER,
                                "events": INTEGER,
                                "events_by_kind": {"type": "object"},
                                "network_id": {"type": ["string", "null"]},
                                "ledger": {"type": "object"},
                                "sync": _out(
                                    {
                                        "syncing": BOOLEAN,
                                        "missing": INTEGER,
                                        "fetched": INTEGER,
                                        "percent": NUMBER,
                                    },
                                    ["syncing", "missing", "fetched", "percent"],
                                ),
                            },
                            ["node_id", "version", "uptime_s", "peers", "events", "sync"],
                        ),
                        "status",
                    )
                },
            }
        },
        "/api/peers": {
            "get": {
                "summary": "Connected peers: how found, RTT, score, traffic.",
                "responses": {
                    "200": _json(
                        _out(
                            {
                                "peers": {
                                    "type": "array",
                                    "items": _out(
                                        {
                                            "id": HEX_ID,
                                            "address": STRING,
                                            "via": STRING,
                                            "rtt_ms": NULLABLE_NUMBER,
                                            "score": NUMBER,
                                            "bytes_in": INTEGER,
                                            "bytes_out": INTEGER,
                                            "connected_since": NULLABLE_NUMBER,
                                        },
                                        ["id", "address", "via", "rtt_ms", "score"],
                                    ),
                                },
                                "target": INTEGER,
                            },
                            ["peers"],
                        ),
                        "peers",
                    )
                },
            }
        },
        "/api/topology": {
            "get": {
                "summary": "The part of the mesh this node reaches (from signed link state).",
                "responses": {
                    "200": _json(
                        _out(
                            {
                                "nodes": {"type": "array", "items": _out({"id": HEX_ID}, ["id"])},
                                "edges": {"type": "array"},
                            },
                            ["nodes", "edges"],
                        ),
                        "topology",
                    )
                },
            }
        },
        "/api/routes": {
            "get": {
                "summary": "The route table: best route to every reachable node.",
                "responses": {
                    "200": _json(
                        _out({"routes": {"type": "array", "items": ROUTE_VIEW}}, ["routes"]),
                        "routes",
                    ),
                    **_errors(503),
                },
            }
        },
        "/api/routes/{node}": {
            "get": {
                "summary": "Routes (best first, then alternates) to one node.",
                "parameters": node_param,
                "responses": {
                    "200": _json(
                        _out(
                            {
                                "destination": HEX_ID,
                                "routes": {"type": "array", "items": ROUTE_VIEW},
                            },
                            ["destination", "routes"],
                        ),
                        "routes",
                    ),
                    **_errors(400, 404, 503),
                },
            }
        },
        "/api/direct": {
            "post": {
                "summary": "Send a direct message hop by hop; 201 once acknowledged.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {
                                    "to": NODE_ID,
                                    "content": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": MAX_POST_CONTENT_BYTES,
                                    },
                                },
                                ["to", "content"],
                            ),
                            "example": {"to": "", "content": "hello"},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _out(
                            {
                                "id": STRING,
                                "to": HEX_ID,
                                "path": {"type": "array", "items": HEX_ID},
                                "hops": INTEGER,
                                "attempts": INTEGER,
                                "rtt_ms": NUMBER,
                            },
                            ["id", "to", "path", "hops", "attempts"],
                        ),
                        "delivered and acknowledged",
                    ),
                    **_errors(400, 404, 413, 503),
                },
            },
            "get": {
                "summary": "Direct messages this node received.",
                "responses": {
                    "200": _json(
                        _out({"messages": {"type": "array"}}, ["messages"]), "received messages"
                    ),
                    **_errors(503),
                },
            },
        },
        "/api/accounts": {
            "post": {
                "summary": "Create and enrol an account held by this node.",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {"name": {"type": "string", "maxLength": MAX_NAME_BYTES}}
                            ),
                            "example": {"name": "alice"},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _out({"account": HEX_ID, "event": HEX_ID, "name": STRING}, ["account"]),
                        "enrolled",
                    ),
                    **_errors(400, 409, 413, 503),
                },
            },
            "get": {
                "summary": "Enrolled accounts with balances.",
                "parameters": [limit_param, {"name": "held", "in": "query", "schema": STRING}],
                "responses": {
                    "200": _json(
                        _out(
                            {
                                "accounts": {"type": "array", "items": ACCOUNT_VIEW},
                                "total": INTEGER,
                            },
                            ["accounts", "total"],
                        ),
                        "accounts",
                    ),
                    **_errors(400),
                },
            },
        },
        "/api/accounts/{account}": {
            "get": {
                "summary": "One account: balance, totals and history.",
                "parameters": [*account_param, limit_param],
                "responses": {
                    "200": _json(
                        {**ACCOUNT_VIEW, "required": [*ACCOUNT_VIEW["required"], "history"]},
                        "the account",
                    ),
                    **_errors(400, 404),
                },
            }
        },
        "/api/transfers": {
            "post": {
                "summary": "Send an amount from an account held here; 201 once committed.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {
                                    "from": ACCOUNT_ID,
                                    "to": ACCOUNT_ID,
                                    "amount": AMOUNT,
                                    "memo": {"type": "string", "maxLength": MAX_MEMO_BYTES},
                                },
                                ["from", "to", "amount"],
                            ),
                            "example": {"from": "", "to": "", "amount": "12.34"},
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _out(
                            {"id": HEX_ID, "from": HEX_ID, "to": HEX_ID, "amount": STRING},
                            ["id", "from", "to", "amount"],
                        ),
                        "committed",
                    ),
                    **_errors(400, 403, 404, 409, 413, 422, 503),
                },
            }
        },
        "/api/ledger": {
            "get": {
                "summary": "Ledger summary: state hash, totals, pool, unclaimed, recent transfers.",
                "responses": {
                    "200": _json(
                        _out(
                            {"state_hash": STRING, "genesis": {"type": ["object", "null"]}},
                            ["state_hash", "genesis"],
                        ),
                        "ledger",
                    )
                },
            }
        },
        "/api/messages": {
            "post": {
                "summary": "Broadcast a message; 201 once committed.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {
                                    "content": {
                                        "type": "string",
                                        "minLength": 1,
                                        "maxLength": MAX_POST_CONTENT_BYTES,
                                    },
                                    "channel": CHANNEL,
                                    "priority": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 5,
                                        "x-error-code": "invalid_priority",
                                    },
                                },
                                ["content"],
                            ),
                            "example": {
                                "content": "hello mesh",
                                "channel": "social",
                                "priority": 3,
                            },
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        _out({"id": HEX_ID, "channel": STRING, "priority": INTEGER}, ["id"]),
                        "committed",
                    ),
                    **_errors(400, 409, 413, 503),
                },
            },
            "get": {
                "summary": "Messages, newest first, optionally of one channel, with reach.",
                "parameters": [limit_param, {"name": "channel", "in": "query", "schema": CHANNEL}],
                "responses": {
                    "200": _json(_out({"messages": {"type": "array"}}, ["messages"]), "messages"),
                    **_errors(400),
                },
            },
        },
        "/api/debug/events": {
            "post": {
                "summary": "Test mode only ([node] test_mode): submit signed events, else 404.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {
                                    "events": {
                                        "type": "array",
                                        "maxItems": 256,
                                        "items": {"type": "string", "pattern": "^([0-9a-f]{2})+$"},
                                    }
                                },
                                ["events"],
                            ),
                            "example": {"events": []},
                        }
                    },
                },
                "responses": {
                    "202": _json(_out({"submitted": INTEGER}, ["submitted"]), "submitted"),
                    **_errors(400, 404, 409, 413),
                },
            }
        },
        "/api/subscriptions": {
            "get": {
                "summary": "Channels this node subscribes to.",
                "responses": {
                    "200": _json(
                        _out({"channels": {"type": "array", "items": STRING}}, ["channels"]),
                        "subscriptions",
                    )
                },
            },
            "put": {
                "summary": "Replace the channel subscriptions (kept across restarts).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": _obj(
                                {"channels": {"type": "array", "items": CHANNEL, "maxItems": 64}},
                                ["channels"],
                            ),
                            "example": {"channels": ["billboard", "social"]},
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        _out({"channels": {"type": "array", "items": STRING}}, ["channels"]),
                        "subscriptions",
                    ),
                    **_errors(400, 413),
                },
            },
        },
    }


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document of the local API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "liberation-node local API",
            "version": __version__,
            "description": (
                "Served on the status port, loopback only. Errors are JSON "
                '{"error": code, "detail": text}.'
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8470"}],
        "paths": _operations(),
    }


def add_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    """Describe an endpoint registered outside this module (live updates, fragments)."""
    document()["paths"].setdefault(path, {})[method] = operation


def request_schema(path: str, method: str) -> Schema | None:
    """The JSON body schema of an operation (by its route pattern), if it takes one."""
    operation = document()["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    body = operation.get("requestBody")
    if body is None:
        return None
    schema: Schema = body["content"]["application/json"]["schema"]
    return schema


# --- validation --------------------------------------------------------------------------------


class SchemaViolation(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=64)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def validate(schema: Schema, value: Any, where: str = "body") -> None:
    """Raise SchemaViolation (with the failing field's code) unless ``value`` fits ``schema``."""
    code = schema.get("x-error-code", "invalid_field")
    types = schema.get("type")
    if types is not None:
        allowed = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in allowed):
            raise SchemaViolation(code, f"{where} must be {' or '.join(allowed)}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise SchemaViolation(code, f"{where} must not be empty")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaViolation("too_large", f"{where} is longer than {schema['maxLength']}")
        if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
            raise SchemaViolation(code, f"{where} is not in the expected form")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaViolation(code, f"{where} must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaViolation(code, f"{where} must be at most {schema['maximum']}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaViolation(code, f"{where} must be one of {schema['enum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaViolation("too_large", f"{where} has more than {schema['maxItems']} items")
        item_schema = schema.get("items")
        if item_schema is not None:
            for index, item in enumerate(value):
                validate(item_schema, item, f"{where}[{index}]")
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(properties))
            if extra:
                raise SchemaViolation("unknown_field", f"unknown fields: {', '.join(extra)}")
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaViolation("missing_field", f"field {name!r} is required")
        for name, sub in properties.items():
            if name in value:
                validate(sub, value[name], f"field {name!r}")


__all__ = [
    "MAX_CHANNEL_BYTES",
    "SchemaViolation",
    "add_operation",
    "document",
    "request_schema",
    "validate",
]
