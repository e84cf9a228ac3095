"""Live updates for the status page (server-sent events)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register the live-update endpoints (none yet)."""
