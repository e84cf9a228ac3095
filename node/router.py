"""The node's routing: signed link state in and out, the route table, and direct messages.

Link state: every node signs its neighbour list with the RTT and loss measured by the session
keep-alives (`protocol.frames.LinkState`, seq = wall-clock milliseconds so it keeps growing across
restarts) when its neighbours change and every ``LINK_STATE_REFRESH_S``; records are flooded to
every peer, paced and batched by `routing.flood.FloodOutbox`, and a record older than one already
merged stops there. `routing.MeshGraph` merges
them (a link counts only when both ends list it) and `routing.RouteTable` computes the routes,
recomputed once per burst of changes (`routing.RecomputeSchedule`) and written to SQLite.

Direct messages travel hop by hop in ROUTED frames signed by their source; the destination stores
the message and sends an acknowledgement back the same way. The sender waits for it and, after a
timeout, retries over an alternate path that avoids the first hop it used; when no route is left
the error is immediate ("unreachable"), never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from node.engine import GossipDriver
from node.errors import DirectFailed
from protocol import codec
from protocol.codec import CborValue
from protocol.errors import DecodeError, LiberationError
from protocol.events import ZERO_ID
from protocol.frames import LinkNeighbour, LinkState, LinkStates, Routed
from protocol.gossip import FrameIn, PeerDown, PeerUp
from protocol.identity import short_id
from protocol.limits import MAX_POST_CONTENT_BYTES, MAX_ROUTED_TTL, NONCE_BYTES
from routing.errors import MeshFull, Unreachable
from routing.flood import PACING_S, FloodOutbox
from routing.graph import MeshGraph
from routing.routes import Route, RouteTable
from routing.schedule import RecomputeSchedule

if TYPE_CHECKING:
    from node.daemon import Node

log = logging.getLogger(__name__)

#: Rows of routes and links written on the event loop at most (~2.5 ms here); more go to the
#: store's writer thread.
SMALL_TABLE_ROWS = 400
#: Seconds between link-state refreshes when nothing changes; records live 3 refreshes. Each
#: refresh comes after 75-100% of it at random, so that nodes started together do not flood
#: their records all at once for ever after. Every record is flooded to every node over every
#: link, so the refresh is rare (as OSPF's): a node that dies or leaves is cut off at once by
#: its neighbours' new records (routes need both ends of a link), not by the expiry of its own.
LINK_STATE_REFRESH_S = 300.0
LINK_STATE_REFRESH_JITTER = 0.25
LINK_STATE_MAX_AGE_S = 900.0
#: Between refreshes, a neighbour's RTT must more than quadruple (plus this slack) or its loss
#: rise this much before a new record is signed, and not sooner than 1-2x METRIC_MIN_INTERVAL_S
#: (at random) after the last one. A loaded node sees every RTT rise at once; re-flooding on that
#: would load every node more, and make their RTTs rise in turn; and nodes that formed a mesh
#: together see their RTTs settle together: the random wait keeps them from re-flooding at once.
RTT_FACTOR = 4
RTT_SLACK_US = 20_000
LOSS_SLACK_PERMILLE = 100
METRIC_MIN_INTERVAL_S = 10.0
#: Seconds between checks for the first RTT of a link whose record went out without one, and
#: between checks of the links' metrics otherwise.
UNMEASURED_CHECK_S = 0.5
METRIC_CHECK_S = 1.0
#: Least seconds between two writes of the route table to SQLite.
ROUTES_WRITE_INTERVAL_S = 10.0
#: Least seconds between two link-state records of this node (a flapping link cannot flood).
LINK_STATE_MIN_INTERVAL_S = 0.2
#: Seconds the sender of a direct message waits for its acknowledgement before retrying, and
#: the attempts it makes (the first over the best route, then alternates).
ACK_TIMEOUT_S = 2.0
DIRECT_ATTEMPTS = 3
#: Message ids remembered against duplicates (a retry that crossed its acknowledgement).
SEEN_DIRECT = 4_096
#: Direct messages kept for GET /api/direct.
MAX_KEPT_DIRECT = 10_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """A direct message that reached its destination."""

    msg_id: bytes
    route: tuple[bytes, ...]
    attempts: int
    rtt_ms: float


def quantise_rtt_us(rtt_us: int) -> int:
    """Round an RTT to two significant digits: small jitter does not change the signed record."""
    if rtt_us < 100:
        return max(rtt_us, 1)
    step = int(10 ** (len(str(rtt_us)) - 2))
    return (rtt_us + step // 2) // step * step


class Router:
    def __init__(self, node: Node, driver: GossipDriver) -> None:
        assert node.key is not None
        self.node = node
        self.driver = driver
        self.gossip = driver.gossip
        self.key = node.key
        self.me = node.key.public
        self.graph = MeshGraph(self.me, max_age_s=LINK_STATE_MAX_AGE_S)
        self.schedule = RecomputeSchedule()
        self.table: RouteTable | None = None
        self.recomputes = 0
        self._seq = 0
        self._last_sent: dict[bytes, LinkNeighbour] | None = None
        #: Neighbours of the last record whose RTT was not measured yet (a placeholder).
        self._unmeasured: frozenset[bytes] = frozenset()
        self._persisted_at = -1e9
        self._last_sent_at = -1e9
        self._rng = random.Random()
        self._refresh_after = LINK_STATE_REFRESH_S
        self._metric_after = METRIC_MIN_INTERVAL_S
        self._pending: dict[bytes, asyncio.Future[tuple[bytes, ...]]] = {}
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._outbox = FloodOutbox()
        self._flush: asyncio.TimerHandle | None = None
        #: Neighbours whose HELLO named no network: they dropped the records we sent them then.
        self._without_network: set[bytes] = set()

    def start(self) -> None:
        self.driver.peer_listeners.append(self._on_peer)
        self.driver.frame_listeners.append(self._on_frame)
        self.gossip.link_state_known = self._known
        self._task = asyncio.create_task(self._run(), name="router")

    async def stop(self) -> None:
        self.gossip.link_state_known = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._writes):
            with contextlib.suppress(Exception):
                await task
        for future in self._pending.values():
            if not future.done():
                future.cancel()

    # --- link state ------------------------------------------------------------------------------

    def _neighbours(self) -> tuple[tuple[LinkNeighbour, ...], frozenset[bytes]]:
        """This node's links, and the neighbours whose RTT is not measured yet."""
        out = []
        unmeasured = []
        for session in self.gossip.active_sessions():
            if session.peer_id is None:
                continue
            base_rtt_s = session.base_rtt_s
            if base_rtt_s is None:
                unmeasured.append(session.peer_id)
            rtt_us = int(base_rtt_s * 1_000_000) if base_rtt_s is not None else 1_000
            loss = round(session.loss * 1000)
            out.append(LinkNeighbour(session.peer_id, quantise_rtt_us(rtt_us), min(loss, 1000)))
        return tuple(sorted(out, key=lambda n: n.node)), frozenset(unmeasured)

    def _refresh_local(self, now: float) -> None:
        neighbours, unmeasured = self._neighbours()
        if self.graph.set_local_links(neighbours):
            self.schedule.changed(now)
        since = now - self._last_sent_at
        due = since >= self._refresh_after
        if not due and since >= LINK_STATE_MIN_INTERVAL_S:
            # A record signed before the first pong of a new link carries a placeholder RTT:
            # complete it as soon as the RTT is known, which is still while the mesh forms.
            due = (
                self._topology_changed(neighbours)
                or bool(self._unmeasured - unmeasured)
                or (since >= self._metric_after and self._metrics_changed(neighbours))
            )
        if due and self._announce(neighbours, now):
            self._last_sent = {n.node: n for n in neighbours}
            self._unmeasured = unmeasured
            self._last_sent_at = now
            jitter = LINK_STATE_REFRESH_JITTER * self._rng.random()
            self._refresh_after = LINK_STATE_REFRESH_S * (1 - jitter)
            self._metric_after = METRIC_MIN_INTERVAL_S * (1 + self._rng.random())

    def _topology_changed(self, neighbours: tuple[LinkNeighbour, ...]) -> bool:
        last = self._last_sent
        return last is None or {n.node for n in neighbours} != last.keys()

    def _metrics_changed(self, neighbours: tuple[LinkNeighbour, ...]) -> bool:
        """A link far worse than we last signed: jitter alone must not re-sign and re-flood the
        record every keep-alive. Only worse: a link that got better leaves routes that avoid it
        a little too much until the next refresh, while one that got worse draws routes that
        now cost far more. And RTTs measured while a mesh forms run high, then all fall
        together once it has formed; that must not re-flood every record at once."""
        last = self._last_sent or {}
        for neighbour in neighbours:
            before = last.get(neighbour.node)
            if before is None:
                return True
            if neighbour.rtt_us > RTT_FACTOR * before.rtt_us + RTT_SLACK_US:
                return True
            if neighbour.loss_permille - before.loss_permille > LOSS_SLACK_PERMILLE:
                return True
        return False

    def _announce(self, neighbours: tuple[LinkNeighbour, ...], now: float) -> bool:
        """Sign and flood this node's record; False without a network (nothing to sign for: the
        record goes out as soon as the node has one)."""
        network = self.gossip.network_id
        if network is None:
            return False
        wall_ms = self.gossip.wall_ms(now)
        self._seq = max(self._seq + 1, wall_ms)
        record = LinkState.create(
            self.key, seq=self._seq, ts=wall_ms, neighbours=neighbours, network_id=network
        )
        self._flood(record, except_node=None)
        return True

    def _flood(self, record: LinkState, except_node: bytes | None) -> None:
        """Queue ``record`` for every neighbour but ``except_node``; sent after PACING_S."""
        neighbours = [
            session.peer_id
            for session in self.gossip.active_sessions()
            if session.peer_id is not None and session.peer_id != except_node
        ]
        self._outbox.queue(record, neighbours)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush is None and self._outbox:
            self._flush = asyncio.get_running_loop().call_later(PACING_S, self._send_outbox)

    def _send_outbox(self) -> None:
        self._flush = None
        for neighbour, batches in self._outbox.take().items():
            for batch in batches:
                self.gossip.send_to(neighbour, batch[0] if len(batch) == 1 else LinkStates(batch))
        self.driver.kick()

    def _on_peer(self, event: PeerUp | PeerDown) -> None:
        self._wake.set()
        if isinstance(event, PeerUp):
            if event.peer.network_id == ZERO_ID:
                self._without_network.add(event.peer.node_id)
            self._send_records(event.peer.node_id)
        elif event.node_id is not None:
            self._outbox.forget(event.node_id)
            self._without_network.discard(event.node_id)

    def _send_records(self, neighbour: bytes) -> None:
        """Tell a newcomer what we know, so that it can route at once."""
        for record in self.graph.records():
            self._outbox.queue(record, [neighbour])
        self._schedule_flush()

    def _known(self, sender: bytes | None, record: LinkState) -> bool:
        """Whether gossip may drop ``record`` unchecked: it changes nothing here. Every record a
        neighbour sends passes here first, even one we hold already."""
        if sender is not None:
            self._outbox.held_by(sender, record)
            if (
                record.node == sender
                and sender in self._without_network
                and record.network_id == self.gossip.network_id
            ):
                # A record of its own on our network: the neighbour has joined it since its
                # HELLO, and dropped what we sent it before unread. It gets everything again,
                # once (a forged record gets it that too, and then costs it its penalty).
                self._without_network.discard(sender)
                self._send_records(sender)
        return record.node == self.me or not self.graph.is_newer(record)

    def _on_frame(self, event: FrameIn) -> None:
        frame = event.frame
        if not isinstance(frame, LinkState) or frame.node == self.me:
            return
        if not self.graph.is_newer(frame):
            return
        now = self.driver.now
        try:
            changed = self.graph.update(frame, now)
        except MeshFull:
            return
        if changed:
            self.schedule.changed(now)
            self._wake.set()
        self._flood(frame, except_node=event.node_id)

    # --- recomputing -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            now = self.driver.now
            try:
                self._refresh_local(now)
                for _node in self.graph.expire(now):
                    self.schedule.changed(now)
                if self.schedule.due(now) or self.table is None:
                    self._recompute(now)
            except Exception:
                log.exception("routing step failed")
            deadlines = (self.schedule.deadline(), self.graph.next_expiry())
            check_in = UNMEASURED_CHECK_S if self._unmeasured else METRIC_CHECK_S
            waits = [now + check_in, *(d for d in deadlines if d is not None)]
            delay = max(0.01, min(waits) - now)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def _recompute(self, now: float) -> None:
        self.table = RouteTable(self.graph.topology(), self.me)
        self.recomputes += 1
        # The stored routes are for reading (the original mesh_routes table); write them at
        # most every ROUTES_WRITE_INTERVAL_S so they never compete with event commits.
        if now - self._persisted_at >= ROUTES_WRITE_INTERVAL_S:
            self._persisted_at = now
            self._persist(self.table)

    def _persist(self, table: RouteTable) -> None:
        rows = []
        computed_at = time.time()
        for destination in table:
            route = table.route(destination)
            path: CborValue = list(route.path)
            rows.append(
                (
                    destination,
                    0,
                    codec.encode(path),
                    route.hop_count,
                    route.total_latency_ms,
                    route.reliability,
                    computed_at,
                )
            )
        links = [
            (link.a, link.b, link.latency_ms, link.loss_permille / 1000, computed_at)
            for link in table.topology.links()
        ]

        def replace_tables(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM routes")
            db.executemany(
                "INSERT INTO routes (destination, rank, path, hop_count, "
                "total_latency_ms, reliability, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("DELETE FROM connections")
            db.executemany(
                "INSERT INTO connections (a, b, latency_ms, loss, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                links,
            )

        async def write() -> None:
            try:
                # Derived data, recomputed after any restart: no fsync (it would hold the store's
                # write lock for the length of one and delay event commits behind it). A big
                # mesh's tables go to the writer's thread rather than stall the loop.
                if len(rows) + len(links) <= SMALL_TABLE_ROWS:
                    await self.node.store.run_small(replace_tables)
                else:
                    await self.node.store.run(replace_tables, durable=False)
            except LiberationError as exc:  # routes are derived state: the next recompute retries
                log.warning("routes not stored: %s", exc.detail, exc_info=True)

        task = asyncio.create_task(write(), name="store routes")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def next_hop(self, destination: bytes) -> bytes | None:
        table = self.table
        if table is None or destination not in table:
            return None
        try:
            hop = table.next_hop(destination)
        except (Unreachable, ValueError):
            return None
        return hop if hop in self.gossip.by_peer else None

    def routes(self, destination: bytes) -> list[Route]:
        table = self.table
        if table is None or destination not in table:
            raise Unreachable(destination, "no route to that node")
        return table.routes(destination)

    def all_routes(self) -> list[Route]:
        table = self.table
        return [] if table is None else [table.route(d) for d in table]

    # --- direct messages -------------------------------------------------------------------------

    async def send_direct(self, destination: bytes, content: str) -> Delivery:
        """Deliver ``content`` to ``destination`` and wait for its acknowledgement."""
        if destination == self.me:
            raise DirectFailed("that is this node")
        if len(content.encode("utf-8")) > MAX_POST_CONTENT_BYTES:
            raise DirectFailed("a direct message is at most 4 KiB")
        network = self.gossip.network_id
        if network is None:
            raise DirectFailed("this node has no mesh yet")
        msg_id = os.urandom(NONCE_BYTES)
        payload = codec.encode([content, self.gossip.wall_ms(self.driver.now)])
        frame = Routed.create(
            self.key,
            network_id=network,
            dst=destination,
            ttl=MAX_ROUTED_TTL,
            msg_id=msg_id,
            kind="direct",
            payload=payload,
        )
        avoid: set[bytes] = set()
        started = time.perf_counter()
        for attempt in range(1, DIRECT_ATTEMPTS + 1):
            first_hop = self._first_hop(destination, avoid)
            if first_hop is None:
                raise DirectFailed(
                    f"no route to {short_id(destination)}"
                    + (" after the first attempts failed" if avoid else "")
                )
            future: asyncio.Future[tuple[bytes, ...]] = asyncio.get_running_loop().create_future()
            self._pending[msg_id] = future
            try:
                self.gossip.send_to(first_hop, frame)
                self.driver.kick()
                path = await asyncio.wait_for(asyncio.shield(future), ACK_TIMEOUT_S)
            except TimeoutError:
                log.info(
                    "no acknowledgement from %s via %s; trying another path",
                    short_id(destination),
                    short_id(first_hop),
                )
                avoid.add(first_hop)
                continue
            finally:
                self._pending.pop(msg_id, None)
            return Delivery(msg_id, path, attempt, (time.perf_counter() - started) * 1000)
        raise DirectFailed(
            f"{short_id(destination)} did not acknowledge after {DIRECT_ATTEMPTS} attempts"
        )

    def _first_hop(self, destination: bytes, avoid: set[bytes]) -> bytes | None:
        """The peer to hand the message to: an alternate that avoids the first hops that failed
        when there is one, else the best route of the current table (it may have changed since:
        link state keeps flowing while we wait)."""
        if destination in self.gossip.by_peer and destination not in avoid:
            return destination
        table = self.table
        if table is None or destination not in table:
            return None
        route: Route | None = None
        if avoid:
            with contextlib.suppress(Unreachable, ValueError):
                route = table.alternate_avoiding(
                    destination, links=[(self.me, hop) for hop in avoid]
                )
        if route is None:
            try:
                route = table.route(destination)
            except (Unreachable, ValueError):
                return None
        hop = route.next_hop
        return hop if hop in self.gossip.by_peer else None

    def deliver(self, frame: Routed, event: FrameIn) -> None:
        """A ROUTED direct message or acknowledgement addressed to this node."""
        if frame.kind == "ack":
            future = self._pending.get(frame.msg_id)
            if future is not None and not future.done():
                future.set_result(_path_of(frame.payload))
            return
        if frame.kind != "direct":
            return
        try:
            decoded = codec.decode(frame.payload)
        except DecodeError:
            return
        if not isinstance(decoded, list) or len(decoded) != 2:
            return
        content, sent_ts = decoded
        if (
            not isinstance(content, str)
            or not isinstance(sent_ts, int)
            or isinstance(sent_ts, bool)
        ):
            return
        path = (*frame.path, self.me)
        fresh = frame.msg_id not in self._seen
        if fresh:
            self._seen[frame.msg_id] = None
            while len(self._seen) > SEEN_DIRECT:
                self._seen.popitem(last=False)
        task = asyncio.create_task(
            self._receive_direct(frame, content, sent_ts, path, store=fresh), name="direct"
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _receive_direct(
        self, frame: Routed, content: str, sent_ts: int, path: tuple[bytes, ...], *, store: bool
    ) -> None:
        """Store a direct message, then acknowledge it (every copy: a retry may be waiting)."""
        if store:
            try:
                async with self.node.store.transaction() as db:
                    await db.execute(
                        "INSERT OR IGNORE INTO direct_messages "
                        "(msg_id, src, content, sent_ts, received_at, path, hops) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            frame.msg_id,
                            frame.src,
                            content,
                            sent_ts,
                            time.time(),
                            codec.encode(list(path)),
                            len(path) - 1,
                        ),
                    )
            except LiberationError as exc:
                log.warning("direct message not stored, so not acknowledged: %s", exc.detail)
                self._seen.pop(frame.msg_id, None)
                return
        ack = Routed.create(
            self.key,
            network_id=self.gossip.network_id or ZERO_ID,
            dst=frame.src,
            ttl=MAX_ROUTED_TTL,
            msg_id=frame.msg_id,
            kind="ack",
            payload=codec.encode([list(path)]),
        )
        if self.node.peers is not None:
            self.node.peers.forward(ack)

    async def received(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.node.store.fetchall(
            "SELECT msg_id, src, content, sent_ts, received_at, hops FROM direct_messages "
            "ORDER BY received_at DESC LIMIT ?",
            (limit,),
        )
        return [
            {
                "id": bytes(r[0]).hex(),
                "from": bytes(r[1]).hex(),
                "content": str(r[2]),
                "sent_ts": int(r[3]),
                "received_at": float(r[4]),
                "hops": int(r[5]),
            }
            for r in rows
        ]

    def topology(self) -> dict[str, Any]:
        topology = self.graph.topology().component_of(self.me)
        me = self.me.hex()
        nodes = [{"id": n.hex(), "self": n == self.me} for n in topology.nodes()]
        if not any(n["self"] for n in nodes):
            nodes.insert(0, {"id": me, "self": True})
        edges = [
            {
                "a": link.a.hex(),
                "b": link.b.hex(),
                "latency_ms": round(link.latency_ms, 3),
                "loss": link.loss_permille / 1000,
            }
            for link in topology.links()
        ]
        return {"nodes": nodes, "edges": edges}


def _path_of(payload: bytes) -> tuple[bytes, ...]:
    try:
        decoded = codec.decode(payload)
    except DecodeError:
        return ()
    if not isinstance(decoded, list) or len(decoded) != 1 or not isinstance(decoded[0], list):
        return ()
    return tuple(hop for hop in decoded[0] if isinstance(hop, bytes))
