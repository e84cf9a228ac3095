"""Link state for a neighbour that had no network at its HELLO: it dropped the records it was sent
then, so once a record of its own shows it has joined our network, it gets them all again."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from node.router import Router
from protocol.events import ZERO_ID
from protocol.frames import LinkNeighbour, LinkState
from protocol.gossip import FrameIn, PeerUp
from protocol.identity import SigningKey
from protocol.session import PeerInfo

NETWORK = bytes(range(32))
ME = SigningKey.for_label("late/me")
LATE = SigningKey.for_label("late/joiner")
EARLY = SigningKey.for_label("late/member")
OTHER = SigningKey.for_label("late/other")


def record(key: SigningKey, seq: int) -> LinkState:
    neighbours = (LinkNeighbour(ME.public, 1_000, 0),)
    return LinkState.create(key, seq=seq, ts=seq, neighbours=neighbours, network_id=NETWORK)


def peer_up(key: SigningKey, network_id: bytes) -> PeerUp:
    return PeerUp(1, PeerInfo(key.public, network_id, ZERO_ID, "peer", 8471), "10.0.0.2", True)


def sent_to(router: Router, neighbour: bytes) -> list[LinkState]:
    batches = router._outbox.take().get(neighbour, [])
    return [item for batch in batches for item in batch]


async def test_a_neighbour_that_joins_after_its_hello_gets_every_record_again() -> None:
    node: Any = SimpleNamespace(key=ME)
    gossip = SimpleNamespace(active_sessions=list)  # floods reach nobody here
    driver: Any = SimpleNamespace(gossip=gossip, now=0.0)
    router = Router(node, driver)
    known = record(OTHER, 1)
    router.graph.update(known, now=0.0)
    assert router.graph.records() == [known]
    try:
        router._on_peer(peer_up(LATE, ZERO_ID))
        assert sent_to(router, LATE.public) == [known]  # dropped unread: it has no network yet
        router._on_frame(FrameIn(1, LATE.public, record(LATE, 1)))
        assert known in sent_to(router, LATE.public)
        # Once: its next record is flooded as anyone's, with nothing resent.
        router._on_frame(FrameIn(1, LATE.public, record(LATE, 2)))
        assert known not in sent_to(router, LATE.public)

        # A neighbour that had the network at its HELLO got the records once, and that is all.
        router._on_peer(peer_up(EARLY, NETWORK))
        assert known in sent_to(router, EARLY.public)
        router._on_frame(FrameIn(1, EARLY.public, record(EARLY, 1)))
        assert known not in sent_to(router, EARLY.public)
    finally:
        if router._flush is not None:
            router._flush.cancel()
