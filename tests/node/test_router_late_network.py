"""Link state and a neighbour that had no network at its HELLO: it dropped the records it was sent
then, so once a record of its own shows it has joined our network, it gets them all again. And a
node without a network signs its record as soon as it has one, not at the next refresh."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from node.router import Router
from protocol.events import ZERO_ID
from protocol.frames import LinkNeighbour, LinkState
from protocol.gossip import PeerUp
from protocol.identity import SigningKey
from protocol.session import PeerInfo

NETWORK = bytes(range(32))
ME = SigningKey.for_label("late/me")
LATE = SigningKey.for_label("late/joiner")
EARLY = SigningKey.for_label("late/member")
OTHER = SigningKey.for_label("late/other")


def record(key: SigningKey, seq: int, network_id: bytes = NETWORK) -> LinkState:
    neighbours = (LinkNeighbour(ME.public, 1_000, 0),)
    return LinkState.create(key, seq=seq, ts=seq, neighbours=neighbours, network_id=network_id)


def peer_up(key: SigningKey, network_id: bytes) -> PeerUp:
    return PeerUp(1, PeerInfo(key.public, network_id, ZERO_ID, "peer", 8471), "10.0.0.2", True)


def make_router(network_id: bytes | None, *neighbours: SigningKey) -> Router:
    sessions = [
        SimpleNamespace(peer_id=key.public, base_rtt_s=0.002, loss=0.0) for key in neighbours
    ]
    gossip = SimpleNamespace(
        network_id=network_id, active_sessions=lambda: sessions, wall_ms=lambda now: 1_000
    )
    node: Any = SimpleNamespace(key=ME)
    driver: Any = SimpleNamespace(gossip=gossip, now=0.0)
    return Router(node, driver)


def sent_to(router: Router, neighbour: bytes) -> list[LinkState]:
    batches = router._outbox.take().get(neighbour, [])
    return [item for batch in batches for item in batch]


async def test_a_neighbour_that_joins_after_its_hello_gets_every_record_again() -> None:
    router = make_router(NETWORK)
    known = record(OTHER, 1)
    router.graph.update(known, now=0.0)
    assert router.graph.records() == [known]
    try:
        router._on_peer(peer_up(LATE, ZERO_ID))
        assert sent_to(router, LATE.public) == [known]  # dropped unread: it has no network yet
        # Records of its own without a network, or another's relayed by it, prove nothing.
        router._known(LATE.public, record(LATE, 1, network_id=ZERO_ID))
        router._known(LATE.public, record(EARLY, 1))
        assert known not in sent_to(router, LATE.public)
        # Its own on our network: seen by gossip before any other check, held already or not.
        router._known(LATE.public, record(LATE, 2))
        assert known in sent_to(router, LATE.public)
        router._known(LATE.public, record(LATE, 3))  # once
        assert known not in sent_to(router, LATE.public)

        # A neighbour that had the network at its HELLO got the records once, and that is all.
        router._on_peer(peer_up(EARLY, NETWORK))
        assert known in sent_to(router, EARLY.public)
        router._known(EARLY.public, record(EARLY, 2))
        assert known not in sent_to(router, EARLY.public)
    finally:
        if router._flush is not None:
            router._flush.cancel()


async def test_a_node_signs_its_record_as_soon_as_it_has_a_network() -> None:
    router = make_router(None, EARLY)
    try:
        router._refresh_local(now=100.0)
        assert sent_to(router, EARLY.public) == []  # nothing to sign for yet
        router.gossip.network_id = NETWORK
        router._refresh_local(now=101.0)
        [own] = sent_to(router, EARLY.public)
        assert own.node == ME.public
        assert own.network_id == NETWORK
        assert [n.node for n in own.neighbours] == [EARLY.public]
    finally:
        if router._flush is not None:
            router._flush.cancel()
