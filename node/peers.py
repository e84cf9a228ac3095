"""The peer manager: turns addresses into WebRTC connections and keeps the mesh at its degree.

Where peers come from: bootstrap addresses (config or ``--bootstrap``), mDNS records on the LAN,
and peer exchange (PEERS frames from connected peers). Each address has a backoff with jitter.
While the node has fewer than ``target_peers`` peers, due addresses are dialled: an offer signed
with the node key goes to the address's ``POST /signal`` (first contact), or - for a node we heard
of from a peer - inside a ROUTED frame through that peer, so once inside the mesh a node needs no
signalling server. The answer must be signed by the node we meant to reach (an mDNS record or a
peer's claim is only a hint), then the data channel opens and the gossip HELLO binds the DTLS
fingerprints to the node key.

Inbound offers come the same two ways and pass `SignalGate` (signature, freshness, replay, mesh)
plus per-address rate and connection limits before any WebRTC work is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

from bootstrap.addresses import Address, AddressBook, Via
from bootstrap.mdns import MdnsDiscovery, MdnsPeer
from bootstrap.signalling import (
    CONTENT_TYPE,
    MAX_SIGNAL_BYTES,
    SignalCheck,
    SignalGate,
    SignalRefused,
)
from node.config import parse_host_port
from node.engine import GossipDriver
from node.http import error_response
from node.webrtc import CONNECT_TIMEOUT_S, RtcPeer, ice_configuration, pin_ice_addresses
from protocol.errors import CloseReason
from protocol.events import ZERO_ID
from protocol.frames import PeerAddress, Peers, Routed, Signal, encode_frame
from protocol.gossip import FrameIn, PeerDown, PeerUp, Penalised
from protocol.identity import parse_key_id, short_id
from protocol.limits import MAX_ROUTED_TTL, NONCE_BYTES
from protocol.session import TokenBucket

if TYPE_CHECKING:
    from node.daemon import Node

log = logging.getLogger(__name__)

#: Dial attempts in flight at once.
MAX_CONCURRENT_DIALS = 4
#: Inbound offers being answered at once (each holds a half-open RTCPeerConnection).
MAX_PENDING_INBOUND = 32
#: Signalling requests per second (and burst) from one IP address.
SIGNAL_RATE_PER_S = 2.0
SIGNAL_BURST = 10
#: IP addresses whose signalling rate is tracked (oldest forgotten first).
MAX_TRACKED_SOURCES = 4_096
#: Refusals of a mesh offer that are said to its sender: those of an offer that is its own and
#: current. A stale, replayed or misaddressed copy (a relay may resend one) gets no answer.
SAID_REFUSALS = frozenset(
    {"already_connected", "banned", "not_allowed", "shutting_down", "bad_sdp", "busy"}
)
#: Seconds between peer-exchange announcements to every peer, and the least between two to one
#: peer (a node below its target degree exchanges this often).
PEER_EXCHANGE_INTERVAL_S = 30.0
PEER_EXCHANGE_MIN_S = 3.0
#: Seconds a lower-priority dialler waits for the other side (the lower node id) to dial first.
MDNS_YIELD_S = 3.0
#: Reasons a peer gives for ending a fresh session that count as a failed dial.
REFUSALS = frozenset(
    {
        CloseReason.TOO_MANY_PEERS,
        CloseReason.BANNED,
        CloseReason.WRONG_NETWORK,
        CloseReason.HANDSHAKE_FAILED,
        CloseReason.INCOMPATIBLE_VERSION,
    }
)
#: Seconds between maintenance rounds when nothing wakes the manager earlier.
MAINTENANCE_INTERVAL_S = 1.0
#: Seconds an HTTP signalling request may take.
SIGNAL_HTTP_TIMEOUT_S = 10.0


@dataclass
class Connection:
    """One WebRTC connection, from the first offer until it closes."""

    rtc: RtcPeer
    address: str
    via: Via
    outbound: bool
    started: float
    remote_ip: str = ""
    expected: bytes | None = None
    handle: int | None = None
    node_id: bytes | None = None
    connected_at: float | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    #: The address book entry dialled (outbound): credited when the session comes up.
    entry: Address | None = None


class RtcLink:
    """The driver's view of a connection: send bytes, close."""

    def __init__(self, manager: PeerManager, connection: Connection) -> None:
        self.manager = manager
        self.connection = connection
        self.address = connection.address

    def send(self, data: bytes) -> None:
        self.connection.rtc.send(data)

    def close(self) -> None:
        self.manager.close_connection(self.connection)


class PeerManager:
    def __init__(self, node: Node, driver: GossipDriver) -> None:
        config = node.config
        self.node = node
        self.driver = driver
        self.gossip = driver.gossip
        assert node.key is not None
        self.key = node.key
        self.rng = random.SystemRandom()
        self.book = AddressBook(self.rng)
        self.gate = SignalGate()
        self.ice = ice_configuration(
            config.mesh.ice_servers, config.mesh.ice_username, config.mesh.ice_credential
        )
        self.target = config.mesh.target_peers
        self.allow = {parse_key_id(n) for n in config.mesh.allow_peers}
        self.per_address = config.limits.max_connections_per_address
        self.connections: dict[int, Connection] = {}  # by id(connection)
        self.by_handle: dict[int, Connection] = {}
        self._dialling: set[tuple[str, int]] = set()
        self._dialling_nodes: set[bytes] = set()
        #: Offers sent over the mesh, by session: the node asked, and where its answer goes.
        self._answers: dict[bytes, tuple[bytes, asyncio.Future[Signal]]] = {}
        #: Backward learning: for a ROUTED frame's source, the peer it last arrived from. A reply
        #: follows it back when no route is known (a relayed offer's answer, above all).
        self._came_from: dict[bytes, bytes] = {}
        #: When PEERS was last sent to each peer (peer exchange is rate-limited per peer).
        self._exchanged: dict[bytes, float] = {}
        self._sources: dict[str, TokenBucket] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._client: ClientSession | None = None
        self._mdns: MdnsDiscovery | None = None
        self._next_exchange = 0.0
        #: Makes the WebRTC connections (tests swap in a misbehaving one).
        self.rtc_factory: type[RtcPeer] = RtcPeer
        #: Every connection made and not yet closed, so that stop() can wait for their closes.
        self._made: weakref.WeakSet[RtcPeer] = weakref.WeakSet()
        self._stopping = False
        self.dials = 0
        self.dial_failures = 0

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.node.config
        pin_ice_addresses(config.mesh.ice_addresses)
        connector = TCPConnector(
            local_addr=(config.mesh.host, 0) if _is_specific(config.mesh.host) else None,
            limit=MAX_CONCURRENT_DIALS * 2,
        )
        self._client = ClientSession(
            connector=connector, timeout=ClientTimeout(total=SIGNAL_HTTP_TIMEOUT_S)
        )
        now = self.driver.now
        for text in config.discovery.bootstrap:
            host, port = parse_host_port(text)
            self.book.add(host, port, Via.BOOTSTRAP, now)
        self.driver.peer_listeners.append(self._on_peer)
        self.driver.frame_listeners.append(self._on_frame)
        self.gossip.referrals = self._referrals
        self.driver.penalty_listeners.append(self._on_penalty)
        if config.discovery.mdns:
            self._mdns = MdnsDiscovery(
                self.key.public,
                self.node.mesh_port or config.mesh.port,
                interfaces=config.discovery.interfaces,
                on_peer=self._on_mdns_peer,
                network_id=self.node.replica.network_id,
            )
            try:
                await self._mdns.start()
            except Exception as exc:  # no multicast here: the mesh still works without it
                log.warning("mDNS is not available: %s", exc)
                self._mdns = None
        self._maintenance = asyncio.create_task(self._maintain(), name="peer-maintenance")

    async def stop(self) -> None:
        self._stopping = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._mdns is not None:
            await self._mdns.stop()
        await asyncio.gather(
            *(c.rtc.close() for c in list(self.connections.values())), return_exceptions=True
        )
        self.connections.clear()
        # Connections closed earlier may still be closing: let every close finish.
        await asyncio.gather(*(rtc.close() for rtc in list(self._made)), return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _new_rtc(self) -> RtcPeer:
        rtc = self.rtc_factory(self.ice)
        self._made.add(rtc)
        return rtc

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        if self._stopping:  # stop() has already cancelled and awaited its tasks
            task.cancel()
            return task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- maintenance -----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            try:
                self._round()
            except Exception:
                log.exception("peer maintenance failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), MAINTENANCE_INTERVAL_S)

    def wake(self) -> None:
        self._wake.set()

    def _round(self) -> None:
        now = self.driver.now
        connected = set(self.gossip.by_peer)
        below_target = len(connected) < self.target
        if connected and (now >= self._next_exchange or below_target):
            if now >= self._next_exchange:
                self._next_exchange = now + PEER_EXCHANGE_INTERVAL_S
            for node_id in connected:
                self._send_peers(node_id, now)
        wanted = self.target - len(connected) - len(self._dialling)
        for entry in self.book.due(now):
            if wanted <= 0 or len(self._dialling) >= MAX_CONCURRENT_DIALS:
                break
            if not self._worth_dialling(entry, connected, now):
                continue
            wanted -= 1
            self._dialling.add(entry.key)
            if entry.node_id is not None:
                self._dialling_nodes.add(entry.node_id)
            self._spawn(self._dial(entry), f"dial {entry}")

    def _worth_dialling(self, entry: Address, connected: set[bytes], now: float) -> bool:
        if entry.key in self._dialling:
            return False
        node_id = entry.node_id
        if node_id is not None:
            if node_id == self.key.public or node_id in connected:
                return False
            if node_id in self._dialling_nodes or self.gossip.is_banned(node_id, now):
                return False
            if self.allow and node_id not in self.allow:
                return False
            # Both sides see each other's mDNS record: let the lower node id dial first.
            if (
                entry.via is Via.MDNS
                and self.key.public > node_id
                and now - entry.first_seen < MDNS_YIELD_S
            ):
                return False
        return True

    # --- dialling --------------------------------------------------------------------------------

    async def _dial(self, entry: Address) -> None:
        self.dials += 1
        connection = Connection(
            self._new_rtc(),
            str(entry),
            entry.via,
            True,
            self.driver.now,
            remote_ip=entry.host,
            expected=entry.node_id,
        )
        self.connections[id(connection)] = connection
        try:
            introducer = entry.introducer
            if (
                entry.via is Via.MESH
                and entry.node_id is not None
                and introducer is not None
                and introducer in self.gossip.by_peer
            ):
                answer = await asyncio.wait_for(
                    self._offer_via_mesh(connection, entry.node_id, introducer), CONNECT_TIMEOUT_S
                )
            else:
                answer = await asyncio.wait_for(
                    self._offer_via_http(connection, entry), CONNECT_TIMEOUT_S
                )
            await asyncio.wait_for(connection.rtc.opened.wait(), CONNECT_TIMEOUT_S)
            connection.node_id = answer.sender
            connection.entry = entry
            entry.node_id = entry.node_id or answer.sender
            self._attach(connection)  # the backoff resets only once the handshake succeeds
        except (SignalRefused, TimeoutError, ClientError, OSError, ValueError) as exc:
            self.dial_failures += 1
            delay = self.book.failed(entry, self.driver.now)
            log.info(
                "dialling %s failed %d times (%s); next try in %.0f s",
                entry,
                entry.failures,
                _reason(exc),
                delay,
            )
            await self._discard(connection)
        except asyncio.CancelledError:
            await self._discard(connection)
            raise
        finally:
            self._dialling.discard(entry.key)
            if entry.node_id is not None:
                self._dialling_nodes.discard(entry.node_id)
            self.wake()

    def _offer(self, recipient: bytes | None, sdp: str) -> Signal:
        return self._signal(recipient or ZERO_ID, self.rng.randbytes(NONCE_BYTES), "offer", sdp)

    def _signal(self, recipient: bytes, session: bytes, kind: str, sdp: str) -> Signal:
        return Signal.create(
            self.key,
            recipient=recipient,
            ts=self._now_ms(),
            session=session,
            kind=kind,
            sdp=sdp,
            network_id=self.gossip.network_id or ZERO_ID,
        )

    async def _offer_via_http(self, connection: Connection, entry: Address) -> Signal:
        offer = self._offer(entry.node_id, await connection.rtc.offer())
        assert self._client is not None
        url = f"http://{_url_host(entry.host)}:{entry.port}/signal"
        async with self._client.post(
            url, data=encode_frame(offer), headers={"Content-Type": CONTENT_TYPE}
        ) as response:
            body = await response.content.read(MAX_SIGNAL_BYTES + 1)
            if response.status != 200:
                raise SignalRefused(
                    f"the peer refused the offer: HTTP {response.status} {body[:200]!r}"
                )
        return await self._take_answer(connection, offer, body)

    async def _offer_via_mesh(self, connection: Connection, target: bytes, relay: bytes) -> Signal:
        offer = self._offer(target, await connection.rtc.offer())
        future: asyncio.Future[Signal] = asyncio.get_running_loop().create_future()
        self._answers[offer.session] = (target, future)
        try:
            routed = self._routed_to(target, offer.session, encode_frame(offer))
            if not self.gossip.send_to(relay, routed):
                raise SignalRefused("the relay is gone")
            self.driver.kick()
            answer = await future
        finally:
            self._answers.pop(offer.session, None)
        return await self._take_answer(connection, offer, encode_frame(answer))

    async def _take_answer(self, connection: Connection, offer: Signal, body: bytes) -> Signal:
        answer = self.gate.parse(body)
        self.gate.check(answer, self._me(), self._now_ms(), kind="answer")
        if answer.session != offer.session:
            raise SignalRefused("the answer is for another offer")
        if connection.expected is not None and answer.sender != connection.expected:
            raise SignalRefused(
                f"expected node {short_id(connection.expected)} but {short_id(answer.sender)} "
                "answered (a false mDNS record or peer claim)"
            )
        if self.allow and answer.sender not in self.allow:
            raise SignalRefused("the node that answered is not in allow_peers")
        if answer.sender in self.gossip.by_peer:
            raise SignalRefused("already connected to that node")
        await connection.rtc.accept(answer.sdp)
        return answer

    # --- answering -------------------------------------------------------------------------------

    async def handle_signal(self, request: web.Request) -> web.StreamResponse:
        """POST /signal on the mesh port (the node's server hands requests here)."""
        remote = request.remote or "?"
        try:
            self._rate_check(remote)
            if request.content_length is not None and request.content_length > MAX_SIGNAL_BYTES:
                raise SignalRefused("signal too large", code="too_large", status=413)
            body = await request.content.read(MAX_SIGNAL_BYTES + 1)
            offer = self.gate.parse(body)
            answer = await self._answer(offer, remote, Via.INBOUND, remote_ip=remote)
        except SignalRefused as exc:
            return error_response(exc.status, exc.code, exc.detail)
        return web.Response(body=encode_frame(answer), content_type=CONTENT_TYPE)

    def _rate_check(self, remote: str) -> None:
        now = self.driver.now
        bucket = self._sources.get(remote)
        if bucket is None:
            if len(self._sources) >= MAX_TRACKED_SOURCES:
                del self._sources[next(iter(self._sources))]
            bucket = self._sources[remote] = TokenBucket(SIGNAL_RATE_PER_S, SIGNAL_BURST, now)
        if not bucket.take(1, now):
            raise SignalRefused("too many signalling requests", code="rate_limited", status=429)
        from_here = sum(1 for c in self.connections.values() if c.remote_ip == remote)
        if from_here >= self.per_address:
            raise SignalRefused(
                "too many connections from this address", code="too_many_connections", status=429
            )
        if sum(1 for c in self.connections.values() if c.handle is None) >= MAX_PENDING_INBOUND:
            raise SignalRefused("too many connections being set up", code="busy", status=503)

    async def _answer(self, offer: Signal, remote: str, via: Via, *, remote_ip: str = "") -> Signal:
        # Authentic and fresh first: only the offer's own sender hears a refusal over the mesh.
        self.gate.check(offer, self._me(), self._now_ms(), kind="offer")
        if self._stopping:
            raise SignalRefused("shutting down", code="shutting_down", status=503)
        sender = offer.sender
        now = self.driver.now
        if self.gossip.is_banned(sender, now):
            raise SignalRefused("banned", code="banned", status=403)
        if self.allow and sender not in self.allow:
            raise SignalRefused("not in this node's allow_peers", code="not_allowed", status=403)
        if sender in self.gossip.by_peer:
            raise SignalRefused("already connected", code="already_connected", status=409)
        connection = Connection(self._new_rtc(), remote, via, False, now, remote_ip=remote_ip)
        connection.expected = sender
        self.connections[id(connection)] = connection
        try:
            answer_sdp = await connection.rtc.answer(offer.sdp)
        except Exception as exc:  # aiortc raises many kinds on a hostile SDP
            await self._discard(connection)
            raise SignalRefused(f"unusable offer SDP: {_reason(exc)}", code="bad_sdp") from None
        if self.stopping:  # stop() began during the answer
            await self._discard(connection)
            raise SignalRefused("shutting down", code="shutting_down", status=503)
        answer = self._signal(sender, offer.session, "answer", answer_sdp)
        task = self._spawn(self._await_inbound(connection), f"inbound {short_id(sender)}")
        connection.tasks.add(task)
        return answer

    async def _await_inbound(self, connection: Connection) -> None:
        try:
            await asyncio.wait_for(connection.rtc.opened.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            log.info("inbound connection from %s did not open", connection.address)
            await self._discard(connection)
            return
        connection.node_id = connection.expected
        self._attach(connection)

    # --- connections -----------------------------------------------------------------------------

    def _attach(self, connection: Connection) -> None:
        rtc = connection.rtc
        if rtc.closed.is_set():
            self.connections.pop(id(connection), None)
            return
        handle = self.driver.attach(
            RtcLink(self, connection),
            outbound=connection.outbound,
            local_fingerprint=rtc.local_fingerprint,
            remote_fingerprint=rtc.remote_fingerprint,
        )
        connection.handle = handle
        connection.connected_at = time.time()
        self.by_handle[handle] = connection
        rtc.on_close = lambda: self._closed(connection)
        rtc.set_message_handler(lambda data: self.driver.receive(handle, data))

    def _closed(self, connection: Connection) -> None:
        self.connections.pop(id(connection), None)
        if connection.handle is not None:
            self.by_handle.pop(connection.handle, None)
            self.driver.detached(connection.handle)
        self.wake()

    def close_connection(self, connection: Connection) -> None:
        self._spawn(self._discard(connection), "close")

    async def _discard(self, connection: Connection) -> None:
        self.connections.pop(id(connection), None)
        await connection.rtc.close()

    # --- events from the gossip engine -----------------------------------------------------------

    def _on_peer(self, event: PeerUp | PeerDown) -> None:
        connection = self.by_handle.get(event.handle)
        if isinstance(event, PeerDown):
            entry = connection.entry if connection is not None else None
            if entry is not None and event.reason in REFUSALS:
                # A refused handshake is a failed dial: back off instead of redialling at once.
                delay = self.book.failed(entry, self.driver.now)
                log.info(
                    "%s refused us (%s); next try in %.0f s",
                    entry,
                    event.reason.name.lower(),
                    delay,
                )
        if isinstance(event, PeerUp):
            peer = event.peer
            if connection is not None and connection.entry is not None:
                self.book.succeeded(connection.entry, peer.node_id, self.driver.now)
            if (
                connection is not None
                and not connection.outbound
                and connection.remote_ip
                and peer.mesh_port
            ):
                self.book.add(
                    connection.remote_ip,
                    peer.mesh_port,
                    Via.INBOUND,
                    self.driver.now,
                    node_id=peer.node_id,
                )
            self._send_peers(peer.node_id, self.driver.now, force=True)
            if self._mdns is not None and self.gossip.network_id is not None:
                self._spawn(self._mdns.update_network(self.gossip.network_id), "mdns update")
        self.wake()

    def _on_penalty(self, penalty: Penalised) -> None:
        who = short_id(penalty.node_id) if penalty.node_id else f"#{penalty.handle}"
        log.info("penalised %s (-%g): %s: %s", who, penalty.points, penalty.code, penalty.detail)

    def _referrals(self, to: bytes) -> Peers | None:
        """Addresses of our peers, for a node we turn away because we are full."""
        known = self._known_addresses(exclude=to)
        return Peers(tuple(known[:64])) if known else None

    def _known_addresses(self, exclude: bytes) -> list[PeerAddress]:
        known: list[PeerAddress] = []
        for node_id in self.gossip.by_peer:
            if node_id == exclude:
                continue
            for entry in self.book.for_node(node_id):
                known.append(PeerAddress(node_id, entry.host[:64], entry.port))
                break
        return known

    def _send_peers(self, to: bytes, now: float, *, force: bool = False) -> None:
        """Tell a peer the mesh addresses of our other peers (at most every few seconds)."""
        if not force and now - self._exchanged.get(to, -1e9) < PEER_EXCHANGE_MIN_S:
            return
        self._exchanged[to] = now
        known = self._known_addresses(exclude=to)
        if known:
            self.gossip.send_to(to, Peers(tuple(known[:64])))
            self.driver.kick()

    def _on_frame(self, event: FrameIn) -> None:
        frame = event.frame
        now = self.driver.now
        if isinstance(frame, Peers):
            if event.node_id is not None:
                self._send_peers(event.node_id, now)  # an exchange: answer with ours
            for peer in frame.peers:
                if peer.node != self.key.public:
                    self.book.add(
                        peer.host,
                        peer.port,
                        Via.MESH,
                        now,
                        node_id=peer.node,
                        introducer=event.node_id,
                    )
            self.wake()
        elif isinstance(frame, Routed):
            self._on_routed(frame, event)

    def _on_routed(self, frame: Routed, event: FrameIn) -> None:
        if event.node_id is not None and frame.src != self.key.public:
            if len(self._came_from) >= MAX_TRACKED_SOURCES:
                del self._came_from[next(iter(self._came_from))]
            self._came_from[frame.src] = event.node_id
        if frame.dst != self.key.public:
            self.forward(frame)
            return
        if frame.kind != "signal":
            self.node.on_routed(frame, event)
            return
        try:
            signal = self.gate.parse(frame.payload)
        except SignalRefused:
            return
        if signal.sender != frame.src:
            return  # the ROUTED signer must be the signal's sender
        if signal.kind == "answer":
            pending = self._answers.get(signal.session)
            if pending is not None and not pending[1].done():
                pending[1].set_result(signal)
        elif signal.kind == "refusal":
            self._refused(signal)
        else:
            self._spawn(self._answer_routed(signal, frame), "routed offer")

    async def _answer_routed(self, offer: Signal, frame: Routed) -> None:
        try:
            answer = await self._answer(offer, f"mesh:{short_id(offer.sender)}", Via.MESH)
        except SignalRefused as exc:
            log.info(
                "refused an offer over the mesh from %s: %s", short_id(offer.sender), exc.detail
            )
            if exc.code in SAID_REFUSALS:  # the dialler tries elsewhere now, not after its timeout
                refusal = self._signal(offer.sender, offer.session, "refusal", exc.code)
                self.forward(self._routed_to(frame.src, offer.session, encode_frame(refusal)))
            return
        self.forward(self._routed_to(frame.src, offer.session, encode_frame(answer)))

    def _refused(self, refusal: Signal) -> None:
        """The node we sent an offer over the mesh refused it: the dial fails now, not after
        CONNECT_TIMEOUT_S, and the dialler tries another address."""
        pending = self._answers.get(refusal.session)
        if pending is None or pending[0] != refusal.sender or pending[1].done():
            return
        try:
            self.gate.check(refusal, self._me(), self._now_ms(), kind="refusal")
        except SignalRefused:
            return
        code = refusal.sdp  # a refusal's code, checked when it was decoded
        pending[1].set_exception(SignalRefused(f"refused over the mesh: {code}", code=code))

    def _routed_to(self, dst: bytes, session: bytes, signal: bytes) -> Routed:
        return Routed.create(
            self.key,
            network_id=self.gossip.network_id or ZERO_ID,
            dst=dst,
            ttl=MAX_ROUTED_TTL,
            msg_id=session,
            kind="signal",
            payload=signal,
        )

    def forward(self, frame: Routed) -> bool:
        """Pass a ROUTED frame one hop on: to the destination if it is a peer, else the next hop."""
        me = self.key.public
        if frame.src != me:
            if frame.ttl == 0 or me in frame.path:
                return False
            frame = Routed(
                frame.src,
                frame.dst,
                frame.ttl - 1,
                (*frame.path, me),
                frame.msg_id,
                frame.kind,
                frame.payload,
                frame.network_id,
                frame.sig,
            )
        if frame.dst in self.gossip.by_peer:
            next_hop: bytes | None = frame.dst
        else:
            next_hop = self.node.next_hop(frame.dst) or self._came_from.get(frame.dst)
        if next_hop is None or next_hop in frame.path or next_hop not in self.gossip.by_peer:
            return False
        sent = self.gossip.send_to(next_hop, frame)
        self.driver.kick()
        return sent

    # --- mDNS ------------------------------------------------------------------------------------

    def _on_mdns_peer(self, peer: MdnsPeer) -> None:
        network = self.gossip.network_id
        if peer.network_id is not None and network is not None and peer.network_id != network:
            return  # another mesh on the same LAN
        now = self.driver.now
        for address in peer.addresses[:2]:
            self.book.add(address, peer.port, Via.MDNS, now, node_id=peer.node_id)
        self.wake()

    # --- helpers ---------------------------------------------------------------------------------

    def _me(self) -> SignalCheck:
        return SignalCheck(self.key.public, self.gossip.network_id)

    def _now_ms(self) -> int:
        return self.gossip.wall_ms(self.driver.now)

    def status(self) -> list[dict[str, Any]]:
        """Connected peers, for GET /api/peers."""
        out: list[dict[str, Any]] = []
        for session in self.gossip.active_sessions():
            connection = self.by_handle.get(session.handle)
            peer = session.peer
            assert peer is not None
            out.append(
                {
                    "id": peer.node_id.hex(),
                    "name": peer.name,
                    "address": connection.address if connection else session.address,
                    "via": connection.via.value if connection else "unknown",
                    "outbound": session.outbound,
                    "rtt_ms": round(session.rtt_s * 1000, 3) if session.rtt_s is not None else None,
                    "loss": round(session.loss, 3),
                    "score": round(session.current_score(self.driver.now), 2),
                    "bytes_in": session.bytes_in,
                    "bytes_out": session.bytes_out,
                    "events_in": session.events_in,
                    "events_out": session.events_out,
                    "eager": session.eager,
                    "connected_since": connection.connected_at if connection else None,
                }
            )
        return sorted(out, key=lambda p: p["id"])


def _is_specific(host: str) -> bool:
    return host not in ("0.0.0.0", "::", "")  # noqa: S104 - comparing, not binding


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return str(text)[:200]
