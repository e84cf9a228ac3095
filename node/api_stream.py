"""Live updates for the status page: server-sent events, page fragments and the static files.

``GET /api/stream`` (text/event-stream) tells a page *which sections changed*, never what they
now hold: the page fetches ``GET /fragment/{section}`` (server-rendered and escaped by
node/page.py) for each. Changes come from the gossip driver (a committed plan, a peer up or down)
and from a periodic tick (uptime, RTTs, link state, routes). Every burst is coalesced into one
event per ``COALESCE_S``.

Everything is bounded: at most ``MAX_STREAM_CLIENTS`` streams (503 beyond), each with a queue of
``CLIENT_QUEUE_EVENTS``; a client that lets its queue fill, or whose socket does not take an event
within ``WRITE_TIMEOUT_S``, is dropped (it reconnects and gets a full refresh). When the status
server shuts down every stream ends at once, so the node's stop never waits for an open page.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from node import page
from node.http import NODE_KEY, error_response
from protocol.gossip import PeerDown, PeerUp

if TYPE_CHECKING:
    from node.engine import GossipDriver
    from protocol.replica import Plan

log = logging.getLogger(__name__)

#: The bundled stylesheet and script (packaged as node/static/*).
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Live streams open at once; one more gets a 503 (a page falls back to retrying later).
MAX_STREAM_CLIENTS = 16
#: Change events waiting for one client before it counts as not reading and is dropped. Events
#: are already coalesced (one per COALESCE_S), so a healthy client never has more than one or two.
CLIENT_QUEUE_EVENTS = 8
#: Seconds one event may take to reach a client's socket before the client is dropped.
WRITE_TIMEOUT_S = 5.0
#: Seconds changes are gathered into one event (a burst of commits is one refresh).
COALESCE_S = 0.2
#: Seconds between ticks: what changes without an event to tell (uptime, RTTs, link state).
TICK_S = 2.0
#: Milliseconds a browser waits before reconnecting a dropped stream.
RECONNECT_MS = 2_000

#: Sections refreshed by each kind of change.
TICK_SECTIONS = frozenset({"node", "sync", "peers", "topology", "routes"})
PEER_SECTIONS = frozenset({"node", "peers", "topology", "routes"})
COMMIT_SECTIONS = frozenset({"events", "sync"})
KIND_SECTIONS: dict[str, frozenset[str]] = {
    "genesis": frozenset({"node", "ledger"}),
    "enroll": frozenset({"ledger"}),
    "send": frozenset({"ledger"}),
    "claim": frozenset({"ledger"}),
    "post": frozenset({"messages"}),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One coalesced change event: the sections to re-fetch and what caused it."""

    sections: tuple[str, ...]
    reasons: tuple[str, ...]
    seq: int

    def encode(self) -> bytes:
        data = json.dumps({"sections": self.sections, "reasons": self.reasons})
        return f"id: {self.seq}\nevent: change\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class StreamClient:
    """One open stream's queue of changes (None ends the stream)."""

    queue: asyncio.Queue[Change | None] = field(
        default_factory=lambda: asyncio.Queue(CLIENT_QUEUE_EVENTS)
    )
    ended: bool = False
    #: Ended because it did not read: its socket is aborted, not closed politely.
    slow: bool = False

    def offer(self, change: Change) -> bool:
        """Queue ``change``; False (and the client is ended as slow) when its queue is full."""
        if self.ended:
            return False
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.end(slow=True)
            return False
        return True

    def end(self, *, slow: bool = False) -> None:
        """End the stream: drop what is queued and wake the writer with the end marker."""
        if self.ended:
            return
        self.ended, self.slow = True, slow
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def changes(self) -> AsyncIterator[Change]:
        while (change := await self.queue.get()) is not None:
            yield change


class ChangeFeed:
    """Fans the node's changes out to the open streams, coalesced and bounded."""

    def __init__(
        self,
        *,
        max_clients: int = MAX_STREAM_CLIENTS,
        coalesce_s: float = COALESCE_S,
        tick_s: float = TICK_S,
    ) -> None:
        self.max_clients = max_clients
        self.coalesce_s = coalesce_s
        self.tick_s = tick_s
        self.clients: set[StreamClient] = set()
        self.closed = False
        self.sent = 0
        self.dropped = 0
        self._pending: set[str] = set()
        self._reasons: set[str] = set()
        self._flush: asyncio.TimerHandle | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._driver: GossipDriver | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, driver: GossipDriver | None) -> None:
        """Listen to ``driver`` (None: a node without a core; ticks only) and start ticking."""
        if driver is not None:
            driver.commit_listeners.append(self.on_commit)
            driver.peer_listeners.append(self.on_peer)
            self._driver = driver
        self._ticker = asyncio.create_task(self._tick(), name="status-stream-tick")

    async def close(self) -> None:
        """End every stream and stop listening; the feed takes no client after this."""
        self.closed = True
        driver, self._driver = self._driver, None
        if driver is not None:
            with contextlib.suppress(ValueError):
                driver.commit_listeners.remove(self.on_commit)
            with contextlib.suppress(ValueError):
                driver.peer_listeners.remove(self.on_peer)
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for client in list(self.clients):
            client.end()

    # --- clients ---------------------------------------------------------------------------------

    def join(self) -> StreamClient | None:
        """A new client, or None when the feed is full or closed."""
        if self.closed or len(self.clients) >= self.max_clients:
            return None
        client = StreamClient()
        self.clients.add(client)
        return client

    def leave(self, client: StreamClient) -> None:
        self.clients.discard(client)

    # --- changes ---------------------------------------------------------------------------------

    def changed(self, sections: frozenset[str] | set[str], reason: str) -> None:
        """Note that ``sections`` changed; one event goes out per COALESCE_S at most."""
        if self.closed or not self.clients:
            return
        self._pending |= sections
        self._reasons.add(reason)
        if self._flush is None:
            loop = asyncio.get_running_loop()
            self._flush = loop.call_later(self.coalesce_s, self._send)

    def on_commit(self, plan: Plan) -> None:
        if self.closed or not self.clients:
            return  # every commit passes here, on the path of each relayed event
        sections = set(COMMIT_SECTIONS)
        for incoming in plan.accepted:
            sections |= KIND_SECTIONS.get(incoming.event.kind, frozenset())
        if plan.network_id is not None:
            sections |= {"node", "ledger"}
        if plan.forks or plan.rebuild:
            sections |= {"ledger", "messages"}
        self.changed(sections, "commit")

    def on_peer(self, event: PeerUp | PeerDown) -> None:
        self.changed(PEER_SECTIONS, "peer_up" if isinstance(event, PeerUp) else "peer_down")

    def _send(self) -> None:
        self._flush = None
        if not self._pending:
            return
        order = {name: i for i, name in enumerate(page.SECTIONS)}
        self.sent += 1
        change = Change(
            tuple(sorted(self._pending, key=lambda s: order.get(s, len(order)))),
            tuple(sorted(self._reasons)),
            self.sent,
        )
        self._pending.clear()
        self._reasons.clear()
        for client in list(self.clients):
            if not client.offer(change):
                self.leave(client)
                self.dropped += 1
                log.info("status stream dropped: the client is not reading")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.changed(TICK_SECTIONS, "tick")


FEED_KEY: web.AppKey[ChangeFeed] = web.AppKey("change_feed", ChangeFeed)


async def handle_stream(request: web.Request) -> web.StreamResponse:
    feed = request.app[FEED_KEY]
    client = feed.join()
    if client is None:
        return error_response(
            503, "too_many_streams", f"at most {feed.max_clients} live streams at once"
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        hello = json.dumps({"sections": page.SECTIONS})
        await _write(response, f"retry: {RECONNECT_MS}\nevent: hello\ndata: {hello}\n\n".encode())
        async for change in client.changes():
            await _write(response, change.encode())
        if not client.slow:
            await asyncio.wait_for(response.write_eof(), WRITE_TIMEOUT_S)
            return response
    except (ConnectionError, TimeoutError):
        pass  # gone, or not reading
    finally:
        feed.leave(client)
    # Abort, so that aiohttp does not wait on a socket that is not being read.
    if request.transport is not None:
        request.transport.abort()
    return response


async def _write(response: web.StreamResponse, data: bytes) -> None:
    await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)


async def handle_fragment(request: web.Request) -> web.Response:
    html = await page.render_fragment(request.app[NODE_KEY], request.match_info["section"])
    if html is None:
        raise web.HTTPNotFound(text="no such section", content_type="text/plain")
    return web.Response(
        text=html,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


async def _start_feed(app: web.Application) -> None:
    app[FEED_KEY].start(app[NODE_KEY].driver)


async def _close_feed(app: web.Application) -> None:
    await app[FEED_KEY].close()


def add_routes(app: web.Application) -> None:
    """Register the stream, the fragments and the static files, and the feed's lifecycle."""
    app[FEED_KEY] = ChangeFeed()
    app.router.add_get("/api/stream", handle_stream)
    app.router.add_get("/fragment/{section}", handle_fragment)
    app.router.add_static("/static/", STATIC_DIR, name="static")
    app.on_startup.append(_start_feed)
    app.on_shutdown.append(_close_feed)
