"""A deterministic simulator: many nodes' real protocol cores on a simulated network.

Every node runs the real `Gossip`, `Replica` and ledger; only the shell is simulated: a virtual
clock, an in-memory store (`MemoryStore`, committed = durable) and links that model WebRTC data
channels, which are reliable and ordered: a lost packet is retransmitted after a timeout, so loss
shows up as delay and head-of-line blocking, never as a missing frame. Links can be cut
(partitions, crashes) and re-dialled. One seeded `random.Random` drives everything, so a run
replays exactly from its seed; `trace_digest` fingerprints every delivered frame to prove it.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial

from protocol import events as events_module
from protocol.errors import CloseReason
from protocol.events import Body, Claim, Enroll, Event, Genesis, Post, Send
from protocol.gossip import (
    CloseTransport,
    FrameIn,
    Gossip,
    Lookup,
    PeerDown,
    PeerUp,
    Penalised,
    Rebuild,
    ServeIds,
    ServeRange,
    StorePlan,
)
from protocol.identity import SigningKey, verify
from protocol.ledger import Ledger
from protocol.memstore import MemoryStore
from protocol.replica import Incoming, Intent, Replica
from protocol.session import SessionLimits

#: Wall clock of virtual time 0, in milliseconds (2026-01-01T00:00:00Z).
EPOCH_MS = 1_767_225_600_000
#: Frames for the shell each simulated node keeps, for tests to look at.
SHELL_FRAMES_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class LinkModel:
    """Timing of every link: one-way delay range in seconds, per-packet loss, retransmit timeout."""

    delay_min: float = 0.002
    delay_max: float = 0.010
    loss: float = 0.0
    rto: float = 0.05


@contextmanager
def cached_verification() -> Iterator[None]:
    """Verify each (key, signature, message) once for the whole simulation.

    Every simulated node verifies the same bytes; the answer cannot differ, so computing it once
    keeps a 100-node run fast without changing any outcome.
    """
    memo = lru_cache(maxsize=1 << 18)(verify)
    original = events_module.verify  # type: ignore[attr-defined]
    events_module.verify = memo  # type: ignore[attr-defined]
    try:
        yield
    finally:
        events_module.verify = original  # type: ignore[attr-defined]


@dataclass
class SimNode:
    index: int
    key: SigningKey
    store: MemoryStore
    replica: Replica
    gossip: Gossip
    alive: bool = True
    paused: bool = False
    backlog: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: Account keys this node holds: it claims sends to them automatically.
    held: dict[bytes, SigningKey] = field(default_factory=dict)
    handle_to_peer: dict[int, int] = field(default_factory=dict)
    peer_to_handle: dict[int, int] = field(default_factory=dict)
    timer_generation: int = 0
    timer_at: float | None = None
    events_in_closed: int = 0
    deliveries: int = 0
    penalties: list[Penalised] = field(default_factory=list)
    #: Signed frames and PEERS handed to the shell (the last SHELL_FRAMES_KEPT).
    shell_frames: deque[FrameIn] = field(default_factory=lambda: deque(maxlen=SHELL_FRAMES_KEPT))
    intents: list[Intent] = field(default_factory=list)

    def events_received(self) -> int:
        live = sum(s.events_in for s in self.gossip.sessions.values())
        return self.events_in_closed + live


@dataclass
class _Link:
    up: bool = False
    conn: int = 0
    last_delivery: dict[int, float] = field(default_factory=dict)


class Simulation:
    def __init__(
        self,
        size: int,
        seed: int,
        *,
        link: LinkModel | None = None,
        anti_entropy_interval_s: float = 5.0,
        lazy_want_delay_s: float = 0.1,
        max_peers: int = 16,
        redial_s: float = 0.5,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.link = link or LinkModel()
        self.now = 0.0
        self.anti_entropy_interval_s = anti_entropy_interval_s
        self.lazy_want_delay_s = lazy_want_delay_s
        self.max_peers = max_peers
        self.redial_s = redial_s
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = 0
        self._trace = hashlib.sha256()
        self.frames_delivered = 0
        self.links: dict[tuple[int, int], _Link] = {}
        self.edges: set[tuple[int, int]] = set()
        self.partition_of: dict[int, int] = {}
        self.nodes = [self._make_node(i, MemoryStore()) for i in range(size)]

    # --- nodes -----------------------------------------------------------------------------------

    def _make_node(self, index: int, store: MemoryStore) -> SimNode:
        key = SigningKey.for_label(f"sim-{self.seed}-node-{index}")
        replica = Replica()
        store.load(replica)
        gossip = Gossip(
            key,
            replica,
            rng=random.Random(self.rng.getrandbits(64)),
            name=f"n{index}",
            limits=SessionLimits(),
            max_peers=self.max_peers,
            anti_entropy_interval_s=self.anti_entropy_interval_s,
            lazy_want_delay_s=self.lazy_want_delay_s,
            wall_offset_ms=EPOCH_MS,
        )
        return SimNode(index, key, store, replica, gossip)

    def pause(self, index: int) -> None:
        """Stop a node like SIGSTOP: it keeps its connections but processes nothing."""
        self.nodes[index].paused = True

    def resume(self, index: int) -> None:
        node = self.nodes[index]
        node.paused = False
        backlog, node.backlog = node.backlog, []
        for src, conn, data in backlog:
            self._deliver(src, index, conn, data)
        if node.alive:
            node.gossip.handle_timer(self.now)
            self._pump(node)

    def deliver_raw(self, src: int, dst: int, data: bytes) -> None:
        """Deliver bytes to ``dst`` as if ``src``'s session sent them (hostile input in tests)."""
        link = self.links.get((min(src, dst), max(src, dst)))
        if link is not None and link.up:
            self._deliver(src, dst, link.conn, data)

    def crash(self, index: int) -> None:
        """Kill a node: its memory is gone, its store (everything committed) stays."""
        node = self.nodes[index]
        if not node.alive:
            return
        for peer in list(node.peer_to_handle):
            self._drop_link(index, peer)
        node.alive = False

    def restart(self, index: int) -> None:
        old = self.nodes[index]
        if old.alive:
            return
        node = self._make_node(index, old.store)
        node.held = old.held
        node.events_in_closed = old.events_received()
        node.deliveries = old.deliveries
        self.nodes[index] = node
        for a, b in sorted(self.edges):
            if index in (a, b):
                self._redial(a, b)

    # --- topology --------------------------------------------------------------------------------

    def connect(self, a: int, b: int) -> None:
        """Add an edge; it stays dialled (re-dialled after failures) while both ends are up."""
        edge = (min(a, b), max(a, b))
        self.edges.add(edge)
        self._dial(*edge)

    def random_topology(self, degree: int) -> None:
        """A connected random graph: a ring for connectivity plus random chords up to ``degree``."""
        size = len(self.nodes)
        for i in range(size):
            self.connect(i, (i + 1) % size)
        for i in range(size):
            while sum(1 for e in self.edges if i in e) < degree:
                j = self.rng.randrange(size)
                if j != i and (min(i, j), max(i, j)) not in self.edges:
                    self.connect(i, j)

    def partition(self, groups: list[list[int]]) -> None:
        """Cut every link between different groups (nodes not listed form their own group)."""
        self.partition_of = {i: g for g, members in enumerate(groups) for i in members}
        for a, b in sorted(self.links):
            if self.links[(a, b)].up and not self._reachable(a, b):
                self._drop_link(a, b)

    def heal(self) -> None:
        self.partition_of = {}
        for a, b in sorted(self.edges):
            self._redial(a, b)

    def _redial(self, a: int, b: int) -> None:
        self._schedule(self.now + self.redial_s, partial(self._dial, a, b))

    def _reachable(self, a: int, b: int) -> bool:
        if not self.partition_of:
            return True
        return self.partition_of.get(a, -1 - a) == self.partition_of.get(b, -1 - b)

    def _dial(self, a: int, b: int) -> None:
        edge = (min(a, b), max(a, b))
        link = self.links.setdefault(edge, _Link())
        node_a, node_b = self.nodes[a], self.nodes[b]
        if link.up or not (node_a.alive and node_b.alive) or not self._reachable(a, b):
            return
        if edge not in self.edges:
            return
        link.up = True
        link.conn += 1
        link.last_delivery = {}
        fp_a, fp_b = f"sha-256 {a}:{link.conn}", f"sha-256 {b}:{link.conn}"
        handle_a = node_a.gossip.open_session(
            self.now,
            outbound=True,
            address=f"sim:{b}",
            local_fingerprint=fp_a,
            remote_fingerprint=fp_b,
        )
        handle_b = node_b.gossip.open_session(
            self.now,
            outbound=False,
            address=f"sim:{a}",
            local_fingerprint=fp_b,
            remote_fingerprint=fp_a,
        )
        node_a.handle_to_peer[handle_a] = b
        node_a.peer_to_handle[b] = handle_a
        node_b.handle_to_peer[handle_b] = a
        node_b.peer_to_handle[a] = handle_b
        self._pump(node_a)
        self._pump(node_b)

    def _drop_link(self, a: int, b: int, *, redial: bool = False) -> None:
        edge = (min(a, b), max(a, b))
        link = self.links.get(edge)
        if link is None or not link.up:
            return
        link.up = False
        for me, other in ((a, b), (b, a)):
            node = self.nodes[me]
            handle = node.peer_to_handle.pop(other, None)
            if handle is None:
                continue
            node.handle_to_peer.pop(handle, None)
            session = node.gossip.sessions.get(handle)
            if session is not None:
                node.events_in_closed += session.events_in
            if node.alive:
                node.gossip.session_closed(handle, self.now)
                self._pump(node)
        if redial:
            self._redial(a, b)

    # --- the event loop --------------------------------------------------------------------------

    def _schedule(self, at: float, action: Callable[[], None]) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (at, self._counter, action))

    def _send(self, src: int, dst: int, data: bytes) -> None:
        edge = (min(src, dst), max(src, dst))
        link = self.links.get(edge)
        if link is None or not link.up:
            return
        delay = self.rng.uniform(self.link.delay_min, self.link.delay_max)
        while self.link.loss and self.rng.random() < self.link.loss:
            delay += self.link.rto
        at = max(self.now + delay, link.last_delivery.get(src, 0.0))
        link.last_delivery[src] = at
        conn = link.conn
        self._schedule(at, lambda: self._deliver(src, dst, conn, data))

    def _deliver(self, src: int, dst: int, conn: int, data: bytes) -> None:
        link = self.links.get((min(src, dst), max(src, dst)))
        node = self.nodes[dst]
        if link is None or not link.up or link.conn != conn or not node.alive:
            return
        if node.paused:
            node.backlog.append((src, conn, data))
            return
        handle = node.peer_to_handle.get(src)
        if handle is None:
            return
        self.frames_delivered += 1
        self._trace.update(f"{self.now:.9f} {src} {dst} {len(data)} ".encode())
        self._trace.update(data)
        node.gossip.receive(handle, data, self.now)
        self._pump(node)

    def _pump(self, node: SimNode) -> None:
        """Do everything the node's gossip asked for, until it asks for nothing more."""
        gossip = node.gossip
        while node.alive:
            frames = gossip.frames_to_send()
            for handle, data in frames:
                peer = node.handle_to_peer.get(handle)
                if peer is not None:
                    self._send(node.index, peer, data)
            effect = gossip.next_effect()
            if effect is None and not frames:
                break
            if effect is not None:
                self._apply(node, effect)
        self._arm_timer(node)

    def _apply(self, node: SimNode, effect: object) -> None:
        gossip, store = node.gossip, node.store
        if isinstance(effect, StorePlan):
            store.commit(effect.plan)
            node.deliveries += sum(1 for item in effect.plan.accepted if item.origin is not None)
            gossip.plan_committed(effect.plan, self.now)
            self._auto_claim(node, effect.plan.accepted)
        elif isinstance(effect, Lookup):
            gossip.lookup_done(store.lookup(effect.items), self.now)
        elif isinstance(effect, ServeRange):
            gossip.serve(
                effect.handle, store.range(effect.author, effect.start, effect.stop), self.now
            )
        elif isinstance(effect, ServeIds):
            gossip.serve(effect.handle, store.by_ids(effect.ids), self.now)
        elif isinstance(effect, Rebuild):
            store.rebuild(node.replica)
            gossip.rebuild_committed(self.now)
        elif isinstance(effect, CloseTransport):
            peer = node.handle_to_peer.get(effect.handle)
            if peer is not None:
                self._drop_link(node.index, peer, redial=True)
        elif isinstance(effect, Penalised):
            node.penalties.append(effect)
        elif isinstance(effect, FrameIn):
            node.shell_frames.append(effect)
        elif isinstance(effect, PeerUp | PeerDown):
            pass

    def _arm_timer(self, node: SimNode) -> None:
        at = node.gossip.get_timer()
        if at is None or (node.timer_at is not None and node.timer_at <= at):
            return
        node.timer_generation += 1
        generation = node.timer_generation
        node.timer_at = at
        index = node.index

        def fire() -> None:
            current = self.nodes[index]
            if current is not node or not node.alive or node.timer_generation != generation:
                return
            if node.paused:
                node.timer_at = None
                return
            node.timer_at = None
            node.gossip.handle_timer(max(self.now, at))
            self._pump(node)

        self._schedule(max(at, self.now), fire)

    def run_until(self, condition: Callable[[], bool], *, max_time: float) -> bool:
        """Advance virtual time until ``condition()`` holds (True) or ``max_time`` passes."""
        while self._queue:
            if condition():
                return True
            at, _, action = heapq.heappop(self._queue)
            if at > max_time:
                heapq.heappush(self._queue, (at, 0, action))
                self.now = max_time
                return condition()
            self.now = max(self.now, at)
            action()
        return condition()

    def run_for(self, seconds: float) -> None:
        self.run_until(lambda: False, max_time=self.now + seconds)

    # --- authoring -------------------------------------------------------------------------------

    def author(self, index: int, key: SigningKey, make_body: Callable[[Ledger], Body]) -> Intent:
        node = self.nodes[index]
        intent = Intent(key, make_body)
        node.intents.append(intent)
        node.gossip.publish(intent, self.now)
        self._pump(node)
        return intent

    def post(
        self, index: int, content: str, *, channel: str = "social", priority: int = 3
    ) -> Intent:
        node = self.nodes[index]
        return self.author(index, node.key, lambda _: Post(channel, priority, content))

    def found(self, index: int, pool: SigningKey, genesis: Genesis) -> Intent:
        return self.author(index, pool, lambda _: genesis)

    def enroll(self, index: int, account: SigningKey, name: str = "") -> Intent:
        node = self.nodes[index]
        node.held[account.public] = account
        return self.author(index, account, lambda _: Enroll(name, node.key.public))

    def transfer(self, index: int, sender: SigningKey, to: bytes, amount: int) -> Intent:
        return self.author(index, sender, lambda _: Send(to, amount, "transfer", ""))

    def inject(self, index: int, event: Event) -> None:
        """Hand a node an event from nowhere (for example one branch of a fork)."""
        node = self.nodes[index]
        node.gossip.submit_events([event], self.now)
        self._pump(node)

    def _auto_claim(self, node: SimNode, accepted: list[Incoming]) -> None:
        for item in accepted:
            body = item.event.body
            if isinstance(body, Send) and body.to in node.held:
                send = item.event
                key = node.held[body.to]
                claim = Claim(send.id, send.author, send.seq, body.amount)
                intent = Intent(key, _constant(claim))
                node.intents.append(intent)
                node.gossip.publish(intent, self.now)

    # --- observation -----------------------------------------------------------------------------

    def alive(self) -> list[SimNode]:
        return [node for node in self.nodes if node.alive]

    def converged(self) -> bool:
        """Every live node has the same event set, ledger state hash and forks."""
        nodes = self.alive()
        if not nodes:
            return True
        first = nodes[0]
        ids = first.store.log.keys()
        state = first.replica.ledger.state_hash()
        forks = {(a, p.seq) for a, p in first.store.forks.items()}
        for node in nodes[1:]:
            if node.store.log.keys() != ids:
                return False
            if node.replica.ledger.state_hash() != state:
                return False
            if {(a, p.seq) for a, p in node.store.forks.items()} != forks:
                return False
        return True

    def have_all(self, event_ids: set[bytes]) -> bool:
        return all(event_ids <= node.store.log.keys() for node in self.alive())

    def trace_digest(self) -> str:
        return self._trace.hexdigest()

    def duplicates_per_delivery(self) -> float:
        copies = sum(node.events_received() for node in self.nodes)
        deliveries = sum(node.deliveries for node in self.nodes)
        return (copies - deliveries) / deliveries if deliveries else 0.0


def _constant(body: Body) -> Callable[[Ledger], Body]:
    def make(_ledger: Ledger) -> Body:
        return body

    return make


__all__ = ["CloseReason", "LinkModel", "SimNode", "Simulation", "cached_verification"]
