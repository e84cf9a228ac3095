"""The daemon: wires the data directory, store, protocol core and servers together.

Start-up order keeps the path to a healthy status page short (the 500 ms goal): lock, key, store,
replica, status server, ready. Everything that imports heavy libraries (aiortc, zeroconf,
networkx) starts after ``/healthz`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bootstrap.signalling import MAX_SIGNAL_BYTES
from node import __version__
from node.api import build_app
from node.api_ledger import SUBSCRIPTIONS_META
from node.automation import Automation
from node.config import Config
from node.datadir import DataDir, DataDirLock
from node.engine import GossipDriver
from node.errors import NodeError
from node.history import History
from node.http import error_response, serve
from node.keyring import Keyring
from node.metrics import Registry
from node.node_metrics import NodeMetrics
from protocol.amounts import format_amount
from protocol.events import Event
from protocol.frames import Routed
from protocol.gossip import FrameIn, Gossip
from protocol.identity import SigningKey, load_verifier
from protocol.ledger import original_genesis
from protocol.replica import Intent, Plan, Replica
from protocol.session import SessionLimits
from storage.events import EventStore
from storage.store import Store

if TYPE_CHECKING:
    from node.peers import PeerManager
    from node.router import Router

log = logging.getLogger(__name__)

#: Seconds between writes of message spread statistics.
SPREAD_FLUSH_S = 5.0
#: Longest the automation waits to catch up with peers after start-up before it signs anything,
#: and the quiet time after the first exchange with a peer that counts as caught up.
SETTLE_S = 10.0
SETTLE_QUIET_S = 0.5


def _import_mesh_modules(mdns: bool) -> None:
    modules = ["node.peers", "node.router"] + (["zeroconf.asyncio"] if mdns else [])
    for module in modules:
        importlib.import_module(module)
    load_verifier()


class Node:
    """One running liberation-node."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = DataDir(config.node.data_dir)
        self.store = Store(self.data_dir.database)
        self.events = EventStore(self.store)
        self.keyring = Keyring(self.data_dir.keys)
        self.registry = Registry()
        self.key: SigningKey | None = None
        self.replica = Replica(max_clock_skew_ms=int(config.limits.max_clock_skew_s * 1000))
        self.gossip: Gossip | None = None
        self.driver: GossipDriver | None = None
        self.automation: Automation | None = None
        self.peers: PeerManager | None = None
        self.router: Router | None = None
        self.subscriptions: list[str] = list(config.messages.channels)
        self.ready = False
        self.started_monotonic = time.monotonic()
        self.status_port: int | None = None
        self.mesh_port: int | None = None
        self._lock: DataDirLock | None = None
        self.history: History | None = None
        self._forwarded: dict[bytes, int] = {}
        self._status_runner: web.AppRunner | None = None
        self._mesh_runner: web.AppRunner | None = None
        self._background: list[asyncio.Task[None]] = []
        self._network_known = asyncio.Event()
        #: Set once the mesh has started (or failed to): start-up's allocations are done.
        self.mesh_started = asyncio.Event()
        self.metrics = NodeMetrics(self.registry, self)

    @property
    def node_id(self) -> str:
        return self.key.id if self.key else ""

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.started_monotonic = time.monotonic()
        self.data_dir.ensure()
        lock = self.data_dir.lock()
        lock.acquire()
        self._lock = lock
        try:
            self.key, created = self.data_dir.node_key(create=True)
            if created:
                log.info("created node key %s", self.key.id)
            self.keyring.load()
            if str(self.config.node.history_file) not in {"", "."}:
                self.history = History(self.config.node.history_file, self.key.id)
            await self.store.open()
            await self.events.load(self.replica)
            saved = await self.store.get_meta(SUBSCRIPTIONS_META)
            if saved is not None:
                self.subscriptions = list(json.loads(saved))
            self._start_core(self.key)
            await self._start_mesh_server()
            await self._start_status_server()
        except BaseException:
            await self._close_resources()
            raise
        self.ready = True
        log.info(
            "node %s ready: status page http://%s:%d/",
            self.node_id,
            self.config.status.host,
            self.status_port,
        )
        self._background.append(asyncio.create_task(self._genesis_policy(), name="genesis"))
        self._background.append(asyncio.create_task(self._start_mesh(), name="mesh"))
        self._background.append(asyncio.create_task(self._flush_spread(), name="spread"))

    async def _settle(self) -> None:
        """Let the automation sign once this node has caught up with its first peers (or
        SETTLE_S passed, or it has nowhere to find peers)."""
        assert self.automation is not None
        assert self.gossip is not None
        discovery = self.config.discovery
        if discovery.bootstrap or discovery.mdns:
            deadline = time.monotonic() + SETTLE_S
            while time.monotonic() < deadline:
                if self.gossip.by_peer and not self.gossip.sync_progress().syncing:
                    await asyncio.sleep(SETTLE_QUIET_S)  # let the first digests be answered
                    if not self.gossip.sync_progress().syncing:
                        break
                await asyncio.sleep(0.1)
        self.automation.settled.set()

    async def _start_mesh(self) -> None:
        """Start WebRTC, signalling and discovery after the node is ready (heavy imports)."""
        try:
            await self._start_mesh_parts()
        finally:
            self.mesh_started.set()

    async def _start_mesh_parts(self) -> None:
        assert self.driver is not None
        # The imports take hundreds of milliseconds; on the loop they would stall the status
        # server that has just reported ready, so they run in a thread.
        await asyncio.to_thread(_import_mesh_modules, self.config.discovery.mdns)
        from node.peers import PeerManager

        manager = PeerManager(self, self.driver)
        try:
            await manager.start()
        except Exception as exc:
            log.error("the mesh could not start: %s", exc)
            await manager.stop()
            if self.automation is not None:
                self.automation.settled.set()  # alone, then: nothing to catch up with
            return
        self.peers = manager
        self._background.append(asyncio.create_task(self._settle(), name="settle"))
        from node.router import Router

        router = Router(self, self.driver)
        router.start()
        self.router = router
        log.info("mesh port %s:%d", self.config.mesh.host, self.mesh_port)

    def _start_core(self, key: SigningKey) -> None:
        limits = self.config.limits
        self.gossip = Gossip(
            key,
            self.replica,
            rng=random.SystemRandom(),
            name=self.config.node.name,
            mesh_port=self.config.mesh.port,
            limits=SessionLimits(
                max_frame_bytes=limits.max_frame_bytes,
                frames_per_s=limits.peer_frames_per_s,
                frame_burst=limits.peer_frame_burst,
                bytes_per_s=limits.peer_bytes_per_s,
                ping_interval_s=self.config.mesh.keepalive_s,
                dead_after_s=self.config.mesh.dead_after_s,
            ),
            max_peers=self.config.mesh.max_peers,
            adopt_network=self.config.ledger.genesis != "found",
        )
        self.driver = GossipDriver(self.gossip, self.events)
        self.driver.commit_listeners.append(self._on_commit)
        self.driver.start()
        self.metrics.attach(self.driver)
        self.automation = Automation(self.driver, self.keyring)
        self.automation.start()

    async def _start_status_server(self) -> None:
        self._status_runner, self.status_port = await serve(
            build_app(self), self.config.status.host, self.config.status.port, "status"
        )

    async def _start_mesh_server(self) -> None:
        """Bind the mesh (signalling) port before the node reports ready: a port that is taken
        stops start-up, like the status port. Offers get a 503 until WebRTC is up."""
        app = web.Application(client_max_size=MAX_SIGNAL_BYTES)
        app.router.add_post("/signal", self._handle_signal)
        self._mesh_runner, self.mesh_port = await serve(
            app, self.config.mesh.host, self.config.mesh.port, "mesh"
        )
        if self.gossip is not None:
            self.gossip.mesh_port = self.mesh_port

    async def _handle_signal(self, request: web.Request) -> web.StreamResponse:
        if self.peers is None:
            return error_response(503, "starting", "the mesh is starting; retry shortly")
        return await self.peers.handle_signal(request)

    async def stop(self) -> None:
        was_ready, self.ready = self.ready, False
        await self._close_resources()
        if was_ready:
            log.info("node stopped")

    async def _close_resources(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self.router is not None:
            await self.router.stop()
            self.router = None
        if self.peers is not None:
            await self.peers.stop()
            self.peers = None
        if self.automation is not None:
            await self.automation.stop()
            self.automation = None
        if self.driver is not None:
            await self.driver.stop()
            self.driver = None
        for attribute in ("_status_runner", "_mesh_runner"):
            runner = getattr(self, attribute)
            if runner is not None:
                setattr(self, attribute, None)
                await runner.cleanup()
        await self.store.close()
        if self.history is not None:
            self.history.close()
            self.history = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _on_commit(self, plan: Plan) -> None:
        if plan.network_id is not None:
            self._network_known.set()
        forwarded = self.gossip.last_forwarded if self.gossip else {}
        for item in plan.accepted:
            event = item.event
            if event.kind == "post":
                count = forwarded.get(event.id, 0)
                if count:
                    self._forwarded[event.id] = self._forwarded.get(event.id, 0) + count
        if self.history is not None:
            for item in plan.accepted:
                event = item.event
                origin = item.origin.hex() if item.origin else "local"
                self.history.record(
                    "accept",
                    event.id,
                    kind=event.kind,
                    author=event.author.hex(),
                    seq=event.seq,
                    origin=origin,
                )
                if event.id in forwarded:
                    self.history.record("forward", event.id, peers=forwarded[event.id])
            for rejection in plan.rejected:
                if rejection.event is not None:
                    self.history.record(
                        "reject",
                        rejection.event.id,
                        code=rejection.error.code,
                        origin=rejection.origin.hex() if rejection.origin else "local",
                    )

    async def _flush_spread(self) -> None:
        """Write how far each message was forwarded, in batches (statistics, not state)."""
        while True:
            await asyncio.sleep(SPREAD_FLUSH_S)
            counts, self._forwarded = self._forwarded, {}
            try:
                await self.events.note_forwarded(counts)
            except Exception as exc:
                log.debug("spread statistics not written: %s", exc)

    # --- the mesh's genesis ----------------------------------------------------------------------

    async def _genesis_policy(self) -> None:
        mode = self.config.ledger.genesis
        if self.replica.network_id is not None:
            self._network_known.set()
            return
        if mode == "join":
            return
        if mode == "auto":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._network_known.wait(), self.config.ledger.genesis_wait_s
                )
            if self._network_known.is_set():
                return
        try:
            event = await self.found_mesh(self.config.ledger.mesh_name, self.config.ledger.period_s)
            log.info(
                "founded mesh %s (network id %s)", self.config.ledger.mesh_name, event.id.hex()
            )
        except Exception as exc:
            log.error("could not found a mesh: %s", exc)

    async def found_mesh(self, name: str, period_s: int) -> Event:
        """Create a pool key and sign a genesis with it; this node then runs the distributions."""
        if self.replica.network_id is not None:
            raise NodeError("this node already belongs to a mesh")
        pool = self.keyring.create()
        body = original_genesis(name, period_s)
        return await self.publish(Intent(pool, lambda _ledger: body))

    async def publish(self, intent: Intent) -> Event:
        if self.driver is None:
            raise NodeError("the node is not running")
        return await self.driver.publish(intent)

    # --- read side for the status page and API ----------------------------------------------------

    async def status(self) -> dict[str, Any]:
        counts = await self.store.event_counts() if self.ready else {}
        ledger = self.replica.ledger
        summary: dict[str, Any] = {}
        if ledger.genesis is not None and ledger.pool is not None:
            summary = {
                "mesh": ledger.genesis.name,
                "total": format_amount(ledger.total),
                "pool_balance": format_amount(ledger.balance.get(ledger.pool, 0)),
                "accounts": len(ledger.accounts),
                "unclaimed": format_amount(ledger.unclaimed_total()),
                "state_hash": ledger.state_hash().hex(),
            }
        peers = self.gossip.active_sessions() if self.gossip else []
        sync = self.gossip.sync_progress() if self.gossip else None
        return {
            "node_id": self.node_id,
            "name": self.config.node.name,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started_monotonic, 3),
            "ready": self.ready,
            "network_id": self.replica.network_id.hex() if self.replica.network_id else None,
            "peers": len(peers),
            "events": sum(counts.values()),
            "events_by_kind": counts,
            "ledger": summary,
            "storage_error": (
                {
                    "error": self.driver.last_storage_error.code,
                    "detail": self.driver.last_storage_error.detail,
                }
                if self.driver is not None and self.driver.last_storage_error is not None
                else None
            ),
            "sync": {
                "syncing": sync.syncing if sync else False,
                "missing": sync.missing if sync else 0,
                "fetched": sync.fetched if sync else 0,
                "percent": sync.percent if sync else 100.0,
            },
            "status_port": self.status_port,
            "mesh_port": self.mesh_port or self.config.mesh.port,
            "data_dir": str(self.data_dir.path),
        }

    def reach_estimate(self, event_id: bytes) -> int:
        """Nodes estimated to hold an event: this node, the peers known to hold it, and - when
        every peer holds it - the rest of the mesh this node knows of."""
        if self.gossip is None:
            return 1
        peers = {s.peer_id for s in self.gossip.active_sessions() if s.peer_id}
        holders = self.gossip.holders(event_id)
        known = 1 + len(holders)
        if peers and peers <= holders:
            known = max(known, self.known_mesh_size())
        return known

    def topology(self) -> dict[str, Any]:
        """Nodes and links this node knows (its own links until routing knows more)."""
        if self.router is not None:
            return self.router.topology()
        me = self.node_id
        nodes = [{"id": me, "self": True}]
        edges = []
        for session in self.gossip.active_sessions() if self.gossip else []:
            if session.peer_id is None:
                continue
            peer = session.peer_id.hex()
            nodes.append({"id": peer, "self": False})
            rtt = session.rtt_s * 1000 if session.rtt_s is not None else None
            edges.append({"a": me, "b": peer, "latency_ms": rtt, "loss": session.loss})
        return {"nodes": nodes, "edges": edges}

    def next_hop(self, destination: bytes) -> bytes | None:
        """The peer to pass a ROUTED frame for ``destination`` to (None: no route known)."""
        return self.router.next_hop(destination) if self.router is not None else None

    def on_routed(self, frame: Routed, event: FrameIn) -> None:
        """A ROUTED message for this node that is not signalling."""
        if self.router is not None:
            self.router.deliver(frame, event)

    def known_mesh_size(self) -> int:
        """Nodes this node knows of in its mesh (itself and its peers until routing knows more)."""
        peers = len(self.gossip.active_sessions()) if self.gossip else 0
        known = 1 + len(self.router.table) if self.router and self.router.table else 0
        return max(1 + peers, known)

    async def refresh_metrics(self) -> None:
        await self.metrics.refresh()
