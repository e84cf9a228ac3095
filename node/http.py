"""HTTP plumbing shared by the local API modules: JSON responses, typed errors, body reading.

Every error is JSON ``{"error": code, "detail": text}`` with a 4xx status for bad input; a 500
only for our own bugs (logged, never shown as a traceback).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from protocol.errors import LiberationError, LocalProtocolError

if TYPE_CHECKING:
    from node.daemon import Node

log = logging.getLogger(__name__)

NODE_KEY: web.AppKey[Node] = web.AppKey("node")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Largest request body the API reads (a post is 4 KiB of text; JSON escaping can double it).
MAX_REQUEST_BYTES = 64 * 1024


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def error_response(status: int, code: str, detail: str) -> web.Response:
    return json_response({"error": code, "detail": detail}, status=status)


class ApiInputError(LiberationError):
    """A request the API cannot accept."""

    code = "bad_request"
    status = 400

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


def status_for(exc: LiberationError) -> int:
    """The HTTP status for a typed error that reached the API boundary."""
    from node.engine import NodeBusy
    from storage.errors import StorageError

    if isinstance(exc, ApiInputError):
        return exc.status
    if isinstance(exc, StorageError | NodeBusy):
        return 503
    if isinstance(exc, LocalProtocolError):
        return 409
    return 422


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
        raise
    except LiberationError as exc:
        return error_response(status_for(exc), exc.code, exc.detail)
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the node's log")


async def serve(app: web.Application, host: str, port: int, what: str) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner and the bound port (``port`` 0 picks one).

    A port that cannot be bound stops start-up with one line naming it.
    """
    from node.errors import NodeError

    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise NodeError(f"cannot listen on {what} port {host}:{port}: {exc.strerror}") from None
    sockets = getattr(site._server, "sockets", None) or []
    return runner, (sockets[0].getsockname()[1] if sockets else port)


JSON_BODY: web.RequestKey[dict[str, Any]] = web.RequestKey("json_body", dict)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, validated for size and shape (read once, then kept)."""
    cached = request.get(JSON_BODY)
    if cached is not None:
        return dict(cached)
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        raise ApiInputError(
            f"request body larger than {MAX_REQUEST_BYTES} bytes", code="too_large", status=413
        )
    raw = await request.content.read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        raise ApiInputError(
            f"request body larger than {MAX_REQUEST_BYTES} bytes", code="too_large", status=413
        )
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise ApiInputError("request body is not valid JSON", code="invalid_json") from None
    except RecursionError:
        raise ApiInputError("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiInputError("request body must be a JSON object", code="invalid_json")
    request[JSON_BODY] = body
    return body


@web.middleware
async def schema_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check a JSON body against its operation's schema in the OpenAPI document first."""
    from node.openapi import SchemaViolation, request_schema, validate

    resource = request.match_info.route.resource
    schema = request_schema(resource.canonical, request.method) if resource is not None else None
    if schema is not None and request.body_exists:
        body = await read_json(request)
        try:
            validate(schema, body)
        except SchemaViolation as exc:
            status = 413 if exc.code == "too_large" else 400
            raise ApiInputError(exc.detail, code=exc.code, status=status) from None
    return await handler(request)
