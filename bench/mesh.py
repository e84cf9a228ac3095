"""Mesh benchmark: real in-process meshes of N nodes beside bare aiortc and TCP ceilings.

For each N (default 10 and 20), in one process:
  - formation: node 0 founds the mesh, the others start together, told only node 0's address;
    seconds until every node has its target degree (--target, default 4) and the genesis, and
    keeps them for a second. If that mesh does not form within 20 s, it is reported and formed
    again with each node also told one random earlier node's address (--join spread), so that
    the figures below still come out.
  - dissemination: M posts (default 200) from publishers taken in turn, paced (--rate per second,
    default 5), after a few unmeasured warm-up posts; per post, from the publish call until
    every node has committed it (commit listeners on every driver): p50, p99, max. Beside them:
    hops from each node to the farthest, store commit times (EventStore.commit and commit_now are
    wrapped: a commit precedes every forward), and the process CPU load (one process, 2 cores).
  - duplicates: payload copies received (Session.events_in, every EVENTS frame, replies too)
    against deliveries (events accepted from a peer): (copies - deliveries) / deliveries.
  - the WebRTC ceiling: the mesh graph the nodes formed, rebuilt from bare aiortc peer
    connections (negotiated data channel, no signing, no store) after the nodes stopped; the same
    number of messages of the same size from the same publishers at the same pace, each node
    forwarding a message id once to every other neighbour (a flood): p50, p99 publish -> all.
Once, over one connection between two nodes:
  - ours: pre-signed posts handed to node A (judged, committed, pushed in EVENTS frames) until
    node B has verified and committed them all; also posts authored at A (signing included).
  - the ceilings, with the same payload size (one encoded post) per message: a bare aiortc data
    channel and an asyncio TCP stream on loopback with a 4-byte length prefix; the ratios.
Goals (from the issue): p99 publish -> all under 100 ms at N = 20, within 1.5x the bare aiortc
flood's p99, and at most 2 payload duplicates per delivery.

Run it inside the project's private network namespace (aioice gathers no loopback candidates;
outside one, ICE is pinned to 127.0.0.1 and no traffic leaves loopback):
    bash tests/netns-run.sh .venv/bin/python bench/mesh.py [--sizes 10,20] [--posts M] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import random
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where "protocol" (and "routing")
# would name the bench scripts, not the packages: put the repository there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from node.config import load_config
from node.daemon import Node
from node.runner import freeze_start_up_objects
from node.webrtc import pin_ice_addresses
from protocol.events import ZERO_ID, Event, Post
from protocol.gossip import Gossip
from protocol.identity import SigningKey
from protocol.ledger import Ledger
from protocol.replica import Intent, Plan
from protocol.session import Session
from storage.events import EventStore

IN_NETNS = os.environ.get("LIBERATION_TEST_NETNS") == "1"
CHANNEL = "social"
PRIORITY = 3
GOAL_P99_MS = 100.0
GOAL_FLOOD_RATIO = 1.5
GOAL_DUPLICATES = 2.0
#: Seconds allowed for each phase before the benchmark gives up on it.
FORM_WITHIN_S = 60.0
FOUNDER_ONLY_WITHIN_S = 20.0
#: Seconds the formed mesh must stay formed (a refused connection is up for a moment first).
FORMED_HOLD_S = 1.0
DELIVER_WITHIN_S = 60.0
STOP_WITHIN_S = 15.0
#: Peer connections of the bare flood set up at once.
RAW_CONNECT_CONCURRENCY = 6


# --- helpers -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def ice_addresses() -> tuple[str, ...]:
    return () if IN_NETNS else ("127.0.0.1",)


def host_of(index: int) -> str:
    """Each node signals from its own loopback address (per-address limits apply to IPs)."""
    return f"127.0.1.{10 + index}"


def content_of(tag: str, number: int, size: int) -> str:
    text = f"{tag} {number} "
    return text + "x" * max(0, size - len(text))


def parse_content(content: str) -> tuple[str, int] | None:
    tag, _, rest = content.partition(" ")
    number, _, _ = rest.partition(" ")
    return (tag, int(number)) if number.isdigit() else None


def post_intent(key: SigningKey, content: str) -> Intent:
    body = Post(CHANNEL, PRIORITY, content)

    def make_body(_ledger: Ledger) -> Post:
        return body

    return Intent(key, make_body)


def sample_payload_bytes(content_bytes: int) -> int:
    """Size of one encoded post event with this content (the message size of the ceilings)."""
    key = SigningKey.generate()
    body = Post(CHANNEL, PRIORITY, content_of("bench", 100, content_bytes))
    event = Event.create(key, bytes(32), seq=7, prev=bytes(31) + b"\x01", ts=now_ms(), body=body)
    return len(event.raw)


def now_ms() -> int:
    return int(time.time() * 1000)


async def held_for(
    predicate: Callable[[], bool], hold: float, within: float
) -> tuple[float | None, float | None]:
    """When ``predicate`` first became true, and when it became true to stay true (polled) for
    ``hold`` seconds; None for what did not happen within ``within`` seconds."""
    deadline = time.perf_counter() + within
    first: float | None = None
    since: float | None = None
    while True:
        now = time.perf_counter()
        if predicate():
            first = now if first is None else first
            since = now if since is None else since
            if now - since >= hold:
                return first, since
        else:
            since = None
        if now >= deadline:
            return first, None
        await asyncio.sleep(0.005)


async def wait_for(predicate: Callable[[], bool], within: float, interval: float = 0.01) -> bool:
    deadline = time.perf_counter() + within
    while not predicate():
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


def hops_from(source: int, count: int, edges: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Hop counts from ``source`` to every node it can reach (breadth-first)."""
    neighbours: dict[int, set[int]] = {i: set() for i in range(count)}
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    hops, frontier = {source: 0}, [source]
    while frontier:
        following = []
        for node in frontier:
            for other in neighbours[node]:
                if other not in hops:
                    hops[other] = hops[node] + 1
                    following.append(other)
        frontier = following
    return hops


def connected(count: int, edges: Iterable[tuple[int, int]]) -> bool:
    return len(hops_from(0, count, edges)) == count


class CommitTimer:
    """Times the store commits of plans that store events, on every node (wraps
    `EventStore.commit` and `EventStore.commit_now`)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.samples: list[float] = []
        for node in nodes:
            self._wrap(node.events)

    def _wrap(self, events: EventStore) -> None:
        original = events.commit

        async def commit(plan: Plan, *, now: float | None = None) -> None:
            start = time.perf_counter()
            try:
                await original(plan, now=now)
            finally:
                if plan.accepted:
                    self.samples.append(time.perf_counter() - start)

        original_now = events.commit_now

        def commit_now(plan: Plan, *, now: float | None = None) -> bool:
            start = time.perf_counter()
            committed = False
            try:
                committed = original_now(plan, now=now)
            finally:
                if committed and plan.accepted:
                    self.samples.append(time.perf_counter() - start)
            return committed

        events.commit = commit  # type: ignore[method-assign]
        events.commit_now = commit_now  # type: ignore[method-assign]


# --- real nodes ----------------------------------------------------------------------------------


def free_port(host: str) -> int:
    """A TCP port free on ``host`` a moment ago (the benchmark's namespace has no one else)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def node_config(
    root: Path,
    index: int,
    args: argparse.Namespace,
    bootstrap: tuple[str, ...],
    port: int = 0,
) -> Any:
    return load_config(
        None,
        env={},
        overrides={
            "node": {"data_dir": root / f"node{index}", "name": f"bench{index}"},
            "mesh": {
                "host": host_of(index),
                "port": port,
                "target_peers": args.target,
                "max_peers": args.max_peers,
                "ice_addresses": ice_addresses(),
            },
            "status": {"host": "127.0.0.1", "port": 0},
            "discovery": {"mdns": False, "bootstrap": bootstrap},
            "ledger": {"genesis": "found" if index == 0 else "join"},
        },
    )


def bootstrap_lists(
    size: int, ports: list[int], join: str, rng: random.Random
) -> list[tuple[str, ...]]:
    """What each node is told: node 0's address, and with ``join == "spread"`` also one other
    node's, taken at random among those started before it."""
    founder = f"{host_of(0)}:{ports[0]}"
    lists: list[tuple[str, ...]] = [()]
    for index in range(1, size):
        addresses = [founder]
        if join == "spread" and index > 1:
            other = rng.randrange(1, index)
            addresses.append(f"{host_of(other)}:{ports[other]}")
        lists.append(tuple(addresses))
    return lists


async def start_founder(root: Path, args: argparse.Namespace) -> Node:
    node = Node(node_config(root, 0, args, ()))
    await node.start()
    ok = await wait_for(
        lambda: node.peers is not None and node.replica.network_id is not None, FORM_WITHIN_S
    )
    if not ok:
        await node.stop()
        raise SystemExit("node 0 did not start its mesh or found the genesis")
    return node


async def stop_all(nodes: list[Node]) -> None:
    async def stop(node: Node) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(node.stop(), STOP_WITHIN_S)

    await asyncio.gather(*(stop(node) for node in nodes))


def frames_received(nodes: list[Node]) -> Counter[str]:
    total: Counter[str] = Counter()
    for node in nodes:
        if node.gossip is not None:
            total.update(node.gossip.stats.frames_in)
    return total


def degree(node: Node) -> int:
    return len(node.gossip.by_peer) if node.gossip else 0


def mesh_edges(nodes: list[Node]) -> tuple[set[tuple[int, int]], int]:
    """Links both ends list as active, and how many sessions only one end lists (closing)."""
    index = {node.key.public: i for i, node in enumerate(nodes) if node.key}
    listed: set[tuple[int, int]] = set()
    for i, node in enumerate(nodes):
        for peer in node.gossip.by_peer if node.gossip else ():
            j = index.get(peer)
            if j is not None:
                listed.add((i, j))
    both = {(min(i, j), max(i, j)) for i, j in listed if (j, i) in listed}
    return both, len(listed) - 2 * len(both)


class LoadMeter:
    """Process CPU per wall second, and how late the event loop wakes a task sleeping 10 ms
    (every node shares the one loop: its lag is queueing that no real mesh would have)."""

    INTERVAL_S = 0.01

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.INTERVAL_S)
            self.lags.append(max(0.0, time.perf_counter() - start - self.INTERVAL_S))

    async def stop(self) -> tuple[float, float]:
        """CPU seconds per wall second, and the p99 loop lag in seconds."""
        cpu = (time.process_time() - self._cpu) / (time.perf_counter() - self._wall)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return cpu, percentile(self.lags, 99) if self.lags else 0.0


class Deliveries:
    """Commit listeners on every node: when each node committed each tagged post."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.at: dict[tuple[str, int], dict[int, float]] = {}
        #: Posts of each tag that every node has: what the waits poll, in O(1). Polling every
        #: key instead took most of the loop in the throughput run (4,000 keys every 2 ms).
        self.complete: Counter[str] = Counter()
        self.from_peers = [0] * len(nodes)
        for i, node in enumerate(nodes):
            assert node.driver is not None
            node.driver.commit_listeners.append(self._listener(i))

    def _listener(self, index: int) -> Callable[[Plan], None]:
        def on_commit(plan: Plan) -> None:
            when = time.perf_counter()
            for item in plan.accepted:
                if item.origin is not None:
                    self.from_peers[index] += 1
                body = item.event.body
                if isinstance(body, Post):
                    key = parse_content(body.content)
                    if key is not None:
                        arrivals = self.at.setdefault(key, {})
                        if index not in arrivals:
                            arrivals[index] = when
                            if len(arrivals) == len(self.nodes):
                                self.complete[key[0]] += 1

        return on_commit


class SessionCounts:
    """Payload copies received over every session of some nodes from now on, including sessions
    that open and close meanwhile (`Gossip.open_session` is wrapped to see them)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.before: dict[int, int] = {}
        self.sessions: dict[int, Session] = {}
        for node in nodes:
            gossip = node.gossip
            assert gossip is not None
            for session in gossip.sessions.values():
                self.sessions[id(session)] = session
                self.before[id(session)] = session.events_in
            self._wrap(gossip)

    def _wrap(self, gossip: Gossip) -> None:
        original = gossip.open_session

        def open_session(now: float, **kwargs: Any) -> int:
            handle = original(now, **kwargs)
            session = gossip.sessions[handle]
            self.sessions[id(session)] = session
            return handle

        gossip.open_session = open_session  # type: ignore[method-assign]

    def copies(self) -> int:
        return sum(
            session.events_in - self.before.get(key, 0) for key, session in self.sessions.items()
        )


@dataclass
class Flow:
    """Latencies (s) from publish to the last node, per message; messages never delivered."""

    latencies: list[float]
    missing: int
    #: Process CPU seconds per wall second while publishing and delivering (2 cores: up to 2).
    cpu: float = 0.0
    #: p99 event-loop lag (s) meanwhile.
    lag: float = 0.0
    #: Data-channel messages received per delivery (flood only; ours is in MeshResult.frames).
    per_delivery: float = 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")


async def publish_posts(
    nodes: list[Node], deliveries: Deliveries, tag: str, count: int, rate: float, size: int
) -> Flow:
    """Publish ``count`` posts paced at ``rate``/s from nodes in turn; wait until delivered."""
    started: dict[int, float] = {}
    tasks: list[asyncio.Task[Event]] = []
    meter = LoadMeter()
    begin = time.perf_counter()
    for k in range(count):
        delay = begin + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        node = nodes[k % len(nodes)]
        assert node.key is not None
        started[k] = time.perf_counter()
        tasks.append(
            asyncio.create_task(node.publish(post_intent(node.key, content_of(tag, k, size))))
        )
    await wait_for(lambda: deliveries.complete[tag] >= count, DELIVER_WITHIN_S)
    cpu, lag = await meter.stop()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            print(f"  a publish failed: {result!r}")
    latencies = []
    missing = 0
    for k in range(count):
        arrivals = deliveries.at.get((tag, k), {})
        if len(arrivals) == len(nodes):
            latencies.append(max(arrivals.values()) - started[k])
        else:
            missing += 1
    return Flow(latencies, missing, cpu, lag)


# --- bare aiortc ---------------------------------------------------------------------------------


class RawPair:
    """Two bare RTCPeerConnections joined by one negotiated data channel each side."""

    def __init__(self) -> None:
        config = RTCConfiguration(iceServers=[])
        self.pcs = (RTCPeerConnection(config), RTCPeerConnection(config))
        self.channels: tuple[RTCDataChannel, RTCDataChannel] = (
            self.pcs[0].createDataChannel("bench", negotiated=True, id=0, ordered=True),
            self.pcs[1].createDataChannel("bench", negotiated=True, id=0, ordered=True),
        )
        self.opened = (asyncio.Event(), asyncio.Event())
        for channel, opened in zip(self.channels, self.opened, strict=True):
            channel.on("open", opened.set)

    async def connect(self, within: float = 30.0) -> None:
        offerer, answerer = self.pcs
        await offerer.setLocalDescription(await offerer.createOffer())
        assert offerer.localDescription is not None
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert answerer.localDescription is not None
        await offerer.setRemoteDescription(answerer.localDescription)
        await asyncio.wait_for(asyncio.gather(self.opened[0].wait(), self.opened[1].wait()), within)

    async def close(self) -> None:
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await pc.close()


async def connect_pairs(count: int) -> list[RawPair]:
    gate = asyncio.Semaphore(RAW_CONNECT_CONCURRENCY)
    pairs = [RawPair() for _ in range(count)]

    async def connect(pair: RawPair) -> None:
        async with gate:
            await pair.connect()

    try:
        await asyncio.gather(*(connect(pair) for pair in pairs))
    except BaseException:
        await asyncio.gather(*(pair.close() for pair in pairs))
        raise
    return pairs


class RawFlood:
    """The mesh graph over bare data channels; every node forwards a message id once."""

    def __init__(self, count: int, edges: list[tuple[int, int]], pairs: list[RawPair]) -> None:
        self.count = count
        self.links: list[list[tuple[int, RTCDataChannel]]] = [[] for _ in range(count)]
        self.seen: list[set[int]] = [set() for _ in range(count)]
        self.at: dict[int, list[float]] = {}
        #: Messages that every node has (as `Deliveries.complete`).
        self.complete = 0
        self.copies = 0
        for (a, b), pair in zip(edges, pairs, strict=True):
            self.links[a].append((b, pair.channels[0]))
            self.links[b].append((a, pair.channels[1]))
            pair.channels[0].on("message", self._handler(a, b))
            pair.channels[1].on("message", self._handler(b, a))

    def _handler(self, me: int, sender: int) -> Callable[[Any], None]:
        def on_message(data: Any) -> None:
            self.copies += 1
            (number,) = struct.unpack_from(">I", data)
            self._take(me, number, data, sender)

        return on_message

    def _take(self, me: int, number: int, data: bytes, sender: int | None) -> None:
        if number in self.seen[me]:
            return
        self.seen[me].add(number)
        arrivals = self.at.setdefault(number, [])
        arrivals.append(time.perf_counter())
        if len(arrivals) == self.count:
            self.complete += 1
        for other, channel in self.links[me]:
            if other != sender:
                channel.send(data)

    def publish(self, node: int, number: int, size: int) -> float:
        data = struct.pack(">I", number) + bytes(max(0, size - 4))
        started = time.perf_counter()
        self._take(node, number, data, None)
        return started

    def everywhere(self, number: int) -> bool:
        return len(self.at.get(number, ())) == self.count


async def raw_flood(
    count: int, edges: list[tuple[int, int]], messages: int, rate: float, size: int
) -> tuple[Flow, float]:
    """The same graph over bare aiortc; returns the flow and the seconds its set-up took."""
    pin_ice_addresses(ice_addresses())
    start = time.perf_counter()
    pairs = await connect_pairs(len(edges))
    setup_s = time.perf_counter() - start
    freeze_start_up_objects()  # the same collector set-up as our nodes had
    try:
        flood = RawFlood(count, edges, pairs)
        started: dict[int, float] = {}
        meter = LoadMeter()
        begin = time.perf_counter()
        for k in range(messages):
            delay = begin + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            started[k] = flood.publish(k % count, k, size)
        await wait_for(lambda: flood.complete >= messages, DELIVER_WITHIN_S)
        cpu, lag = await meter.stop()
        latencies = [max(flood.at[k]) - started[k] for k in range(messages) if flood.everywhere(k)]
        per_delivery = flood.copies / (messages * (count - 1))
        return Flow(latencies, messages - len(latencies), cpu, lag, per_delivery), setup_s
    finally:
        await asyncio.gather(*(pair.close() for pair in pairs))
        gc.unfreeze()


# --- one mesh size -------------------------------------------------------------------------------


@dataclass
class MeshResult:
    size: int
    join: str
    formed_s: float | None = None
    #: When every node first had its degree and the genesis (it may not have lasted).
    first_formed_s: float | None = None
    edges: list[tuple[int, int]] = field(default_factory=list)
    ours: Flow | None = None
    flood: Flow | None = None
    flood_setup_s: float = 0.0
    copies: int = 0
    deliveries: int = 0
    wants: int = 0
    #: Seconds each store commit of events took, on every node, while disseminating.
    commits: list[float] = field(default_factory=list)
    #: Sessions only one end listed as active when the graph was recorded.
    one_sided: int = 0
    #: WebRTC connections dialled (by every node) while disseminating: churn.
    dials: int = 0
    #: Frames every node received while disseminating, by frame type.
    frames: Counter[str] = field(default_factory=Counter)
    graph_changed: bool = False
    note: str = ""

    def farthest(self) -> list[int]:
        """Hops from each node to the node farthest from it (its eccentricity)."""
        return [max(hops_from(i, self.size, self.edges).values()) for i in range(self.size)]

    @property
    def duplicates(self) -> float:
        if not self.deliveries:
            return float("nan")
        return (self.copies - self.deliveries) / self.deliveries

    def degrees(self) -> list[int]:
        counts = [0] * self.size
        for a, b in self.edges:
            counts[a] += 1
            counts[b] += 1
        return counts


async def run_mesh(
    size: int, args: argparse.Namespace, payload: int, join: str, form_within: float
) -> MeshResult:
    result = MeshResult(size, join)
    root = Path(tempfile.mkdtemp(prefix=f"ln-bench-mesh{size}-"))
    nodes: list[Node] = []
    try:
        founder = await start_founder(root, args)
        nodes.append(founder)
        assert founder.mesh_port is not None
        ports = [founder.mesh_port, *(free_port(host_of(i)) for i in range(1, size))]
        lists = bootstrap_lists(size, ports, join, random.Random(args.seed + size))
        start = time.perf_counter()
        joiners = [Node(node_config(root, i, args, lists[i], ports[i])) for i in range(1, size)]
        nodes.extend(joiners)
        await asyncio.gather(*(node.start() for node in joiners))

        def formed() -> bool:
            return all(
                node.replica.network_id is not None and degree(node) >= args.target
                for node in nodes
            )

        first, since = await held_for(formed, FORMED_HOLD_S, form_within)
        result.first_formed_s = None if first is None else first - start
        if since is not None:
            result.formed_s = since - start
        else:
            result.note = (
                f"not formed (for {FORMED_HOLD_S:g} s running) in {form_within:.0f} s; "
                f"degrees {[degree(n) for n in nodes]}"
            )
        edges, result.one_sided = mesh_edges(nodes)
        result.edges = sorted(edges)
        if not connected(size, result.edges) or any(n.replica.network_id is None for n in nodes):
            result.note += "; the mesh is not connected: no dissemination"
            return result
        freeze_start_up_objects()  # as `liberation-node run` does once its mesh has started
        deliveries = Deliveries(nodes)
        timer = CommitTimer(nodes)
        if args.warmup:
            await publish_posts(nodes, deliveries, "warm", args.warmup, args.rate, args.content)
        counts = SessionCounts(nodes)
        timer.samples.clear()
        from_peers = sum(deliveries.from_peers)
        wants = sum(node.gossip.stats.wants_sent for node in nodes if node.gossip)
        dials = sum(node.peers.dials for node in nodes if node.peers)
        frames = frames_received(nodes)
        result.ours = await publish_posts(
            nodes, deliveries, "bench", args.posts, args.rate, args.content
        )
        await asyncio.sleep(0.2)  # late copies (the last posts' duplicates) still count
        result.copies = counts.copies()
        result.commits = list(timer.samples)
        result.deliveries = sum(deliveries.from_peers) - from_peers
        result.wants = sum(node.gossip.stats.wants_sent for node in nodes if node.gossip) - wants
        result.dials = sum(node.peers.dials for node in nodes if node.peers) - dials
        result.frames = frames_received(nodes) - frames
        result.graph_changed = sorted(mesh_edges(nodes)[0]) != result.edges
    finally:
        await stop_all(nodes)
        gc.unfreeze()
        shutil.rmtree(root, ignore_errors=True)
    result.flood, result.flood_setup_s = await raw_flood(
        size, result.edges, args.posts, args.rate, payload
    )
    return result


# --- one connection: throughput ------------------------------------------------------------------


@dataclass
class Throughput:
    relay: float = 0.0
    authored: float = 0.0
    aiortc: float = 0.0
    tcp: float = 0.0
    events_per_frame: float = 0.0
    note: str = ""


async def two_nodes(root: Path, args: argparse.Namespace) -> list[Node]:
    pair_args = argparse.Namespace(**{**vars(args), "target": 1})
    founder = await start_founder(root, pair_args)
    assert founder.mesh_port is not None
    other = Node(node_config(root, 1, pair_args, (f"{host_of(0)}:{founder.mesh_port}",)))
    await other.start()
    nodes = [founder, other]
    if not await wait_for(lambda: all(degree(n) == 1 for n in nodes), FORM_WITHIN_S):
        await stop_all(nodes)
        raise SystemExit("two nodes did not connect")
    return nodes


async def ours_throughput(args: argparse.Namespace, result: Throughput) -> None:
    root = Path(tempfile.mkdtemp(prefix="ln-bench-pair-"))
    nodes = await two_nodes(root, args)
    try:
        a, b = nodes
        assert a.gossip is not None
        assert a.driver is not None
        assert b.gossip is not None
        network = a.replica.network_id
        assert network is not None
        deliveries = Deliveries(nodes)
        # Relay path: events signed beforehand by another author, handed to A as if loaded.
        author = SigningKey.generate()
        events: list[Event] = []
        prev, ts = ZERO_ID, now_ms()
        for k in range(args.tput_events):
            body = Post(CHANNEL, PRIORITY, content_of("relay", k, args.content))
            event = Event.create(author, network, seq=k + 1, prev=prev, ts=ts, body=body)
            events.append(event)
            prev = event.id
        sessions = SessionCounts([b])
        frames_before = b.gossip.stats.frames_in.get("Events", 0)
        start = time.perf_counter()
        a.gossip.submit_events(events, a.driver.now)
        a.driver.kick()
        done = await wait_for(
            lambda: deliveries.complete["relay"] >= args.tput_events, DELIVER_WITHIN_S, 0.002
        )
        if done:
            last = max(deliveries.at[("relay", k)][1] for k in range(args.tput_events))
            result.relay = args.tput_events / (last - start)
        frames = b.gossip.stats.frames_in.get("Events", 0) - frames_before
        result.events_per_frame = sessions.copies() / frames if frames else 0.0
        if not done:
            result.note = "relay: not every event arrived in time"
        # Authored path: intents at A (signing included), without waiting for each commit.
        assert a.key is not None
        count = args.tput_events // 2
        start = time.perf_counter()
        for k in range(count):
            a.driver.submit(post_intent(a.key, content_of("authored", k, args.content)))
        done = await wait_for(
            lambda: deliveries.complete["authored"] >= count, DELIVER_WITHIN_S, 0.002
        )
        if done:
            last = max(deliveries.at[("authored", k)][1] for k in range(count))
            result.authored = count / (last - start)
    finally:
        await stop_all(nodes)
        shutil.rmtree(root, ignore_errors=True)


async def aiortc_throughput(messages: int, size: int) -> float:
    pin_ice_addresses(ice_addresses())
    (pair,) = await connect_pairs(1)
    try:
        received = 0
        done = asyncio.Event()

        def on_message(_data: Any) -> None:
            nonlocal received
            received += 1
            if received == messages:
                done.set()

        pair.channels[1].on("message", on_message)
        payload = bytes(size)
        start = time.perf_counter()
        for _ in range(messages):
            pair.channels[0].send(payload)
        await asyncio.wait_for(done.wait(), DELIVER_WITHIN_S)
        return messages / (time.perf_counter() - start)
    finally:
        await pair.close()


async def tcp_throughput(messages: int, size: int) -> float:
    finished: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count = 0
        try:
            while count < messages:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                await reader.readexactly(length)
                count += 1
            finished.set_result(time.perf_counter())
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = struct.pack(">I", size) + bytes(size)
        start = time.perf_counter()
        for k in range(messages):
            writer.write(frame)
            if k % 256 == 255:
                await writer.drain()
        await writer.drain()
        end = await asyncio.wait_for(finished, DELIVER_WITHIN_S)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return messages / (end - start)
    finally:
        server.close()
        await server.wait_closed()


# --- report --------------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".1f") -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def report(
    results: list[MeshResult], tput: Throughput | None, args: argparse.Namespace, payload: int
) -> None:
    print()
    print(
        f"mesh: target degree {args.target}, max {args.max_peers}, joining via {args.join}; "
        f"{args.posts} posts "
        f"({args.warmup} warm-up first) at {args.rate:g}/s from every node in turn; "
        f"post {payload} bytes encoded"
    )
    print(f"network: {'private namespace (veth host candidates)' if IN_NETNS else 'loopback only'}")
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        "(other work on the machine skews every figure)"
    )
    width = 16
    header = f"{'':38}" + "".join(f"{'N = ' + str(r.size):>{width}}" for r in results)
    print(header + "   goal")

    def row(label: str, values: Iterable[str], goal: str = "") -> None:
        print(
            f"{label:38}"
            + "".join(f"{v:>{width}}" for v in values)
            + (f"   {goal}" if goal else "")
        )

    row(
        "formation: all at degree + genesis (s)",
        [
            fmt(r.formed_s, ".2f")
            if r.formed_s is not None
            else f"({fmt(r.first_formed_s, '.2f')}, lost)"
            for r in results
        ],
        "(lost: not for 1 s running)",
    )
    row(
        "bare aiortc: connecting every link (s)",
        [fmt(r.flood_setup_s, ".2f") if r.flood else "-" for r in results],
    )
    row(
        "links / mean degree / max degree",
        [
            f"{len(r.edges)}/{2 * len(r.edges) / r.size:.1f}/{max(r.degrees(), default=0)}"
            for r in results
        ],
    )
    row(
        "hops to the farthest node: mean / max",
        [
            f"{sum(f) / len(f):.1f}/{max(f)}" if connected(r.size, r.edges) else "-"
            for f, r in ((r.farthest(), r) for r in results)
        ],
    )
    row(
        "ours: store commit p50 / p99 (ms)",
        [
            f"{percentile(r.commits, 50) * 1000:.1f}/{percentile(r.commits, 99) * 1000:.1f}"
            if r.commits
            else "-"
            for r in results
        ],
    )
    row("ours: publish -> all p50 (ms)", [fmt(r.ours.p(50) if r.ours else None) for r in results])
    row(
        "ours: publish -> all p99 (ms)",
        [fmt(r.ours.p(99) if r.ours else None) for r in results],
        f"< {GOAL_P99_MS:.0f} ms at N = 20",
    )
    row("ours: publish -> all max (ms)", [fmt(r.ours.p(100) if r.ours else None) for r in results])
    row("bare aiortc flood: p50 (ms)", [fmt(r.flood.p(50) if r.flood else None) for r in results])
    row("bare aiortc flood: p99 (ms)", [fmt(r.flood.p(99) if r.flood else None) for r in results])
    row(
        "p99 ours / bare flood",
        [fmt(r.ours.p(99) / r.flood.p(99) if r.ours and r.flood else None, ".2f") for r in results],
        f"<= {GOAL_FLOOD_RATIO}",
    )
    row(
        "payload duplicates per delivery",
        [fmt(r.duplicates, ".2f") for r in results],
        f"<= {GOAL_DUPLICATES:.0f}",
    )
    row(
        "  (copies / deliveries / WANTs)", [f"{r.copies}/{r.deliveries}/{r.wants}" for r in results]
    )
    row(
        "CPU while disseminating (ours / flood)",
        [
            fmt(r.ours.cpu if r.ours else None, ".0%")
            + "/"
            + fmt(r.flood.cpu if r.flood else None, ".0%")
            for r in results
        ],
        "(2 cores: 200% at most)",
    )
    row(
        "data-channel msgs in per delivery (ours / flood)",
        [
            (f"{sum(r.frames.values()) / r.deliveries:.1f}" if r.deliveries else "-")
            + "/"
            + fmt(r.flood.per_delivery if r.flood else None)
            for r in results
        ],
    )
    row(
        "WebRTC dials while disseminating",
        [str(r.dials) if r.ours else "-" for r in results],
        "(0 in a settled mesh)",
    )
    row(
        "event-loop lag p99 (ms) (ours / flood)",
        [
            fmt(r.ours.lag * 1000 if r.ours else None)
            + "/"
            + fmt(r.flood.lag * 1000 if r.flood else None)
            for r in results
        ],
        "(one loop for all nodes)",
    )
    row(
        "undelivered (ours / flood)",
        [
            f"{r.ours.missing if r.ours else '-'}/{r.flood.missing if r.flood else '-'}"
            for r in results
        ],
    )
    for r in results:
        if r.note or r.graph_changed or r.one_sided:
            extra = " (the graph changed during dissemination)" if r.graph_changed else ""
            if r.one_sided:
                extra += f" ({r.one_sided} sessions listed by one end only, left out)"
            print(f"note N = {r.size}: {r.note}{extra}")
    for r in results:
        if r.frames:
            mix = ", ".join(f"{name} {count}" for name, count in r.frames.most_common())
            print(f"frames received at N = {r.size} while disseminating: {mix}")
    if tput is None:
        return
    print()
    print(
        f"one connection, {payload}-byte posts ({args.tput_events} events ours, "
        f"{args.tput_msgs} messages ceilings)"
    )
    print(
        f"  ours, relayed (A: judge, commit, push; B: verify, commit): {tput.relay:9.0f} events/s"
        f"   ({tput.events_per_frame:.1f} events per EVENTS frame)"
    )
    print(
        f"  ours, authored at A (signing included)                  : {tput.authored:9.0f} events/s"
    )
    print(f"  bare aiortc data channel                                : {tput.aiortc:9.0f} msgs/s")
    print(f"  asyncio TCP on loopback, 4-byte length prefix (ceiling) : {tput.tcp:9.0f} msgs/s")
    if tput.tcp:
        print(
            f"  ratios: ours/TCP {tput.relay / tput.tcp:.3f}"
            f"   aiortc/TCP {tput.aiortc / tput.tcp:.3f}"
            f"   ours/aiortc {tput.relay / tput.aiortc:.3f}"
        )
    if tput.note:
        print(f"  note: {tput.note}")


def quiet_closing_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """aiortc leaves tasks that fail with ConnectionError when a connection closes under them
    (hundreds per run here); report everything else as usual."""
    if isinstance(context.get("exception"), ConnectionError):
        return
    loop.default_exception_handler(context)


async def amain(args: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_exception_handler(quiet_closing_errors)
    payload = sample_payload_bytes(args.content)
    results: list[MeshResult] = []
    for size in args.sizes:
        started = time.perf_counter()
        print(f"N = {size}: forming, disseminating, then the bare flood ...", flush=True)
        fallback = args.join == "founder" and not args.no_fallback
        within = FOUNDER_ONLY_WITHIN_S if fallback else FORM_WITHIN_S
        result = await run_mesh(size, args, payload, args.join, within)
        if result.formed_s is None and fallback:
            print(f"N = {size}: {result.note}", flush=True)
            print(f"N = {size}: again, each node also told one random earlier node", flush=True)
            failed = f"told only node 0's address: {result.note}"
            result = await run_mesh(size, args, payload, "spread", FORM_WITHIN_S)
            result.note = (
                f"{failed}\n  figures above: each node also told one random earlier node"
                + (f"; {result.note}" if result.note else "")
            )
        results.append(result)
        print(f"N = {size}: done in {time.perf_counter() - started:.1f} s", flush=True)
    tput: Throughput | None = None
    if not args.no_throughput:
        print("one connection: throughput ...", flush=True)
        tput = Throughput()
        await ours_throughput(args, tput)
        tput.aiortc = await aiortc_throughput(args.tput_msgs, payload)
        tput.tcp = await tcp_throughput(args.tput_msgs, payload)
    report(results, tput, args, payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,20", help="mesh sizes, comma-separated")
    parser.add_argument("--target", type=int, default=4, help="target degree of every node")
    parser.add_argument("--max-peers", type=int, default=12)
    parser.add_argument(
        "--join",
        choices=("founder", "spread"),
        default="founder",
        help="founder: every node is told node 0's address only; spread: also one random "
        "earlier node's",
    )
    parser.add_argument("--seed", type=int, default=1, help="for --join spread")
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="with --join founder, do not retry a mesh that did not form with --join spread",
    )
    parser.add_argument("--posts", type=int, default=200, help="measured posts per mesh")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured posts first")
    parser.add_argument("--rate", type=float, default=5.0, help="posts per second")
    parser.add_argument("--content", type=int, default=200, help="post content bytes")
    parser.add_argument("--tput-events", type=int, default=4_000)
    parser.add_argument("--tput-msgs", type=int, default=40_000)
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if any(size < 2 or size > 200 for size in args.sizes):
        parser.error("mesh sizes are 2..200")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
