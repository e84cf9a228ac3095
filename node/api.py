"""The local HTTP surface on the status port: status page, JSON API, health and metrics.

Bound to loopback only (the config refuses anything else).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from node import api_ledger, page
from node.http import MAX_REQUEST_BYTES, NODE_KEY, error_middleware, error_response, json_response

if TYPE_CHECKING:
    from node.daemon import Node


async def handle_index(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return web.Response(text=page.render(await node.status()), content_type="text/html")


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


async def handle_peers(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    peers = node.peers.status() if node.peers is not None else []
    return json_response({"peers": peers, "target": node.config.mesh.target_peers})


async def handle_topology(request: web.Request) -> web.Response:
    return json_response(request.app[NODE_KEY].topology())


def build_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[NODE_KEY] = node
    app.router.add_get("/", handle_index)
    app.router.add_get("/api/status", handle_status)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/peers", handle_peers)
    app.router.add_get("/api/topology", handle_topology)
    api_ledger.add_routes(app)
    return app
