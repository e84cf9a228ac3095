"""Real meshes: WebRTC data channels, signalling, mDNS, peer exchange, failures and rejoining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest

from bootstrap.addresses import Via
from node.daemon import Node
from node.webrtc import RtcPeer
from protocol.errors import CloseReason
from protocol.events import Post
from protocol.gossip import PeerDown
from protocol.replica import Intent
from tests.conftest import wait_until
from tests.mesh.harness import (
    DEAD_AFTER_S,
    ProcessNode,
    loopback,
    mesh_address,
    peer_ids,
    running,
    start_node,
)


async def post(node: Node, content: str) -> bytes:
    assert node.key is not None
    body = Post("social", 3, content)
    event = await node.publish(Intent(node.key, lambda _ledger: body))
    return event.id


def has(node: Node, event_id: bytes) -> bool:
    return node.replica.knows(event_id)


async def test_three_nodes_find_each_other_by_mdns(tmp_path: Path) -> None:
    nodes = []
    for index in range(3):
        nodes.append(
            await start_node(
                tmp_path,
                index,
                discovery={"mdns": True, "interfaces": (loopback(index),)},
                mesh={"target_peers": 2},
            )
        )
    async with running(nodes):
        ids = {node.key.public for node in nodes if node.key}
        await wait_until(
            lambda: all(peer_ids(n) == ids - {n.key.public} for n in nodes if n.key),
            within=30,
            what="a full mesh from mDNS alone",
        )
        for node in nodes:
            assert {p["via"] for p in node.peers.status()} <= {"mdns", "inbound"}  # type: ignore[union-attr]
        event = await post(nodes[2], "found you")
        await wait_until(lambda: all(has(n, event) for n in nodes), what="the post everywhere")


@pytest.mark.slow
async def test_ten_nodes_from_one_bootstrap_address(tmp_path: Path) -> None:
    """9 in-process nodes and one process node, all told only node 0's address."""
    first = await start_node(tmp_path, 0, mesh={"target_peers": 3})
    bootstrap = (mesh_address(first, 0),)
    nodes = [first]
    victim = ProcessNode(tmp_path, 10, discovery={"bootstrap": bootstrap}, mesh={"target_peers": 3})
    try:
        async with running(nodes):
            for index in range(1, 9):
                nodes.append(
                    await start_node(
                        tmp_path,
                        index,
                        discovery={"bootstrap": bootstrap},
                        mesh={"target_peers": 3},
                    )
                )
            victim.start()
            await victim.wait_ready()
            victim_id = bytes.fromhex((await victim.aget("/api/status"))["node_id"])

            async def victim_degree() -> int:
                return int((await victim.aget("/api/status"))["peers"])

            async def victim_messages() -> set[str]:
                listing = await victim.aget("/api/messages?limit=100")
                return {m["id"] for m in listing["messages"]}

            await wait_until(
                lambda: all(len(peer_ids(n)) >= 3 for n in nodes),
                within=60,
                what="target degree on every node",
            )
            await wait_until(lambda: _at_least(victim_degree(), 3), within=30, what="its degree")
            event = await post(nodes[4], "to everyone")
            await wait_until(lambda: all(has(n, event) for n in nodes), what="the post on nine")
            await wait_until(
                lambda: _contains(victim_messages(), {event.hex()}), what="the post on the tenth"
            )
            # Kill -9 one node: its peers notice, keep their degree and keep delivering.
            neighbours = [n for n in nodes if victim_id in peer_ids(n)]
            assert neighbours
            victim.kill()
            killed_at = time.monotonic()
            await wait_until(
                lambda: not any(victim_id in peer_ids(n) for n in nodes),
                within=DEAD_AFTER_S * 4,
                what="the killed node to be detected",
            )
            detected_in = time.monotonic() - killed_at
            assert detected_in < DEAD_AFTER_S * 4
            await wait_until(
                lambda: all(len(peer_ids(n)) >= 3 for n in nodes),
                within=30,
                what="the survivors back at their target degree",
            )
            missed = [await post(nodes[i], f"while it was down {i}") for i in (1, 5, 8)]
            await wait_until(
                lambda: all(has(n, e) for n in nodes for e in missed), what="delivery without it"
            )
            # It comes back with the same data dir, rejoins and catches up on what it missed.
            victim.start()
            await victim.wait_ready()
            await wait_until(
                lambda: _contains(victim_messages(), {e.hex() for e in missed}),
                within=30,
                what="the restarted node to catch up",
            )
            assert await victim_degree() >= 1
    finally:
        victim.close()


async def _at_least(value: Awaitable[int], minimum: int) -> bool:
    return await value >= minimum


async def _contains(value: Awaitable[set[str]], wanted: set[str]) -> bool:
    return wanted <= await value


async def test_a_node_of_another_mesh_is_refused(tmp_path: Path) -> None:
    first = await start_node(tmp_path, 0)
    nodes = [first]
    async with running(nodes):
        await wait_until(lambda: first.replica.network_id is not None, what="a genesis")
        stranger = await start_node(
            tmp_path,
            1,
            ledger={"genesis": "found"},
            discovery={"bootstrap": (mesh_address(first, 0),)},
        )
        nodes.append(stranger)
        await wait_until(lambda: stranger.replica.network_id is not None, what="its own genesis")
        assert stranger.replica.network_id != first.replica.network_id
        refusals: list[PeerDown] = []
        assert first.driver is not None
        first.driver.peer_listeners.append(
            lambda e: refusals.append(e) if isinstance(e, PeerDown) else None
        )
        assert stranger.peers is not None
        await wait_until(lambda: stranger.peers.dials >= 1, within=15, what="a dial")  # type: ignore[union-attr]
        await asyncio.sleep(0.5)  # give any (wrong) session time to come up
        assert not peer_ids(first)
        assert not peer_ids(stranger)


class ForgedBinding(RtcPeer):
    """A peer whose HELLO binds other DTLS certificates (what a relay in the middle would send)."""

    @property
    def local_fingerprint(self) -> str:
        return "sha-256 " + ":".join(["AB"] * 32)


async def test_a_hello_with_a_false_fingerprint_binding_is_refused(tmp_path: Path) -> None:
    first = await start_node(tmp_path, 0)
    nodes = [first]
    async with running(nodes):
        liar = await start_node(tmp_path, 1)
        nodes.append(liar)
        assert liar.peers is not None
        liar.peers.rtc_factory = ForgedBinding
        closes: list[PeerDown] = []
        assert first.driver is not None
        first.driver.peer_listeners.append(
            lambda e: closes.append(e) if isinstance(e, PeerDown) else None
        )
        assert liar.driver is not None
        assert first.mesh_port is not None
        liar.peers.book.add(loopback(0), first.mesh_port, Via.BOOTSTRAP, liar.driver.now)
        liar.peers.wake()
        await wait_until(
            lambda: any(c.reason is CloseReason.HANDSHAKE_FAILED for c in closes),
            within=20,
            what="the forged binding to be refused",
        )
        assert not peer_ids(first)
