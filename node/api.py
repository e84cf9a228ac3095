"""The local HTTP surface on the status port: status page, JSON API, health and metrics.

Bound to loopback only (the config refuses anything else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from node import api_ledger, api_stream, page
from node.errors import DirectFailed
from node.http import (
    MAX_REQUEST_BYTES,
    NODE_KEY,
    ApiInputError,
    error_middleware,
    error_response,
    json_response,
    read_json,
    schema_middleware,
)
from protocol.errors import LiberationError
from protocol.events import Event
from protocol.identity import KeyFormatError, parse_key_id
from protocol.limits import MAX_POST_CONTENT_BYTES
from routing.errors import Unreachable

if TYPE_CHECKING:
    from node.daemon import Node
    from node.router import Router
    from routing.routes import Route


#: The page loads only its own script and style, and may not be framed.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


async def handle_index(request: web.Request) -> web.Response:
    return web.Response(
        text=await page.render(request.app[NODE_KEY]),
        content_type="text/html",
        headers=PAGE_HEADERS,
    )


async def handle_status(request: web.Request) -> web.Response:
    return json_response(await request.app[NODE_KEY].status())


async def handle_healthz(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if node.ready:
        return json_response({"status": "ok"})
    return error_response(503, "starting", "the node is starting")


async def handle_metrics(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    await node.refresh_metrics()
    return web.Response(
        text=node.registry.render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def handle_openapi(request: web.Request) -> web.Response:
    from node.openapi import document

    return json_response(document())


async def handle_peers(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    peers = node.peers.status() if node.peers is not None else []
    return json_response({"peers": peers, "target": node.config.mesh.target_peers})


async def handle_topology(request: web.Request) -> web.Response:
    return json_response(request.app[NODE_KEY].topology())


def _route_view(route: Route) -> dict[str, object]:
    return {
        "destination": route.destination.hex(),
        "next_hop": route.next_hop.hex() if route.hop_count else None,
        "path": [hop.hex() for hop in route.path],
        "hops": route.hop_count,
        "latency_ms": round(route.total_latency_ms, 3),
        "reliability": round(route.reliability, 4),
    }


def _router(request: web.Request) -> Router:
    router = request.app[NODE_KEY].router
    if router is None:
        raise ApiInputError("the mesh is not running yet", code="starting", status=503)
    return router


def _node_id(text: str, name: str) -> bytes:
    try:
        return parse_key_id(text)
    except KeyFormatError as exc:
        raise ApiInputError(f"{name}: {exc}", code="invalid_node") from None


async def handle_routes(request: web.Request) -> web.Response:
    routes = sorted(_router(request).all_routes(), key=lambda r: (r.hop_count, r.destination))
    return json_response({"routes": [_route_view(r) for r in routes]})


async def handle_route(request: web.Request) -> web.Response:
    destination = _node_id(request.match_info["node"], "node")
    router = _router(request)
    if destination == router.me:
        return error_response(400, "invalid_node", "that is this node")
    try:
        routes = router.routes(destination)
    except Unreachable:
        return error_response(404, "unreachable", "no route to that node")
    return json_response(
        {"destination": destination.hex(), "routes": [_route_view(r) for r in routes]}
    )


async def handle_send_direct(request: web.Request) -> web.Response:
    body = await read_json(request)
    extra = sorted(set(body) - {"to", "content"})
    if extra:
        raise ApiInputError(f"unknown fields: {', '.join(extra)}", code="unknown_field")
    to = body.get("to")
    content = body.get("content")
    if not isinstance(to, str):
        raise ApiInputError("field 'to' must be a node id", code="invalid_field")
    if not isinstance(content, str) or not content:
        raise ApiInputError("field 'content' must be non-empty text", code="invalid_field")
    if len(content.encode("utf-8")) > MAX_POST_CONTENT_BYTES:
        raise ApiInputError("content is longer than 4096 bytes", code="too_large", status=413)
    destination = _node_id(to, "to")
    try:
        delivery = await _router(request).send_direct(destination, content)
    except DirectFailed as exc:
        return error_response(404, exc.code, exc.detail)
    return json_response(
        {
            "id": delivery.msg_id.hex(),
            "to": destination.hex(),
            "path": [hop.hex() for hop in delivery.route],
            "hops": max(0, len(delivery.route) - 1),
            "attempts": delivery.attempts,
            "rtt_ms": round(delivery.rtt_ms, 3),
        },
        status=201,
    )


async def handle_received_direct(request: web.Request) -> web.Response:
    return json_response({"messages": await _router(request).received()})


async def handle_debug_events(request: web.Request) -> web.Response:
    """Test mode: hand the node signed events as if from nowhere (a fork's halves, say)."""
    node = request.app[NODE_KEY]
    body = await read_json(request)
    raws = body.get("events")
    if not isinstance(raws, list) or not all(isinstance(r, str) for r in raws) or len(raws) > 256:
        raise ApiInputError("'events' must be a list of at most 256 hex strings")
    network = node.replica.network_id
    if network is None or node.gossip is None or node.driver is None:
        raise ApiInputError("no genesis yet", code="no_genesis", status=409)
    events = []
    for raw in raws:
        try:
            event = Event.decode(bytes.fromhex(raw))
            event.check_signature(network)
        except (ValueError, LiberationError) as exc:
            raise ApiInputError(f"not a valid event: {exc}", code="invalid_event") from None
        events.append(event)
    node.gossip.submit_events(events, node.driver.now)
    node.driver.kick()
    return json_response({"submitted": len(events)}, status=202)


def build_app(node: Node) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, schema_middleware], client_max_size=MAX_REQUEST_BYTES
    )
    app[NODE_KEY] = node
    app.router.add_get("/", handle_index)
    app.router.add_get("/api/status", handle_status)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/openapi.json", handle_openapi)
    app.router.add_get("/api/peers", handle_peers)
    app.router.add_get("/api/topology", handle_topology)
    app.router.add_get("/api/routes", handle_routes)
    app.router.add_get("/api/routes/{node}", handle_route)
    app.router.add_post("/api/direct", handle_send_direct)
    app.router.add_get("/api/direct", handle_received_direct)
    if node.config.node.test_mode:
        app.router.add_post("/api/debug/events", handle_debug_events)
    api_ledger.add_routes(app)
    api_stream.add_routes(app)
    return app
