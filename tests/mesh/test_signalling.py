"""POST /signal under hostile input: every bad offer gets a 4xx and no WebRTC work is done."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bootstrap.signalling import SIGNAL_FRESHNESS_MS
from node.daemon import Node
from node.webrtc import CONNECT_TIMEOUT_S, RtcPeer, ice_configuration
from protocol import codec
from protocol.events import ZERO_ID
from protocol.frames import Ping, Signal, encode_frame
from protocol.identity import SigningKey
from protocol.limits import PROTOCOL_VERSION
from tests.conftest import wait_until
from tests.mesh.harness import loopback, mesh_address, node_ids, peer_ids, running, start_node

STRANGER = SigningKey.for_label("signalling-stranger")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    node = await start_node(tmp_path, 0)
    async with running([node]):
        yield node


async def offer_sdp() -> str:
    peer = RtcPeer(ice_configuration([], "", ""))
    try:
        return await peer.offer()
    finally:
        await peer.close()


def offer(node: Node, sdp: str, **changes: object) -> Signal:
    fields: dict[str, object] = {
        "recipient": node.key.public if node.key else ZERO_ID,
        "ts": node.gossip.wall_ms(node.driver.now) if node.gossip and node.driver else 0,
        "session": os.urandom(16),
        "kind": "offer",
        "sdp": sdp,
        "network_id": node.replica.network_id or ZERO_ID,
    }
    fields.update(changes)
    return Signal.create(STRANGER, **fields)  # type: ignore[arg-type]


async def post(node: Node, body: bytes, source: str = "127.0.0.90") -> tuple[int, bytes]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"http://{node.config.mesh.host}:{node.mesh_port}/signal"
        async with session.post(url, data=body) as response:
            return response.status, await response.read()


async def test_a_valid_offer_is_answered_once(node: Node) -> None:
    sdp = await offer_sdp()
    signal = offer(node, sdp)
    status, body = await post(node, encode_frame(signal))
    assert status == 200
    answer = codec.decode(body)
    assert isinstance(answer, list)
    assert answer[:2] == [PROTOCOL_VERSION, 10]
    status, body = await post(node, encode_frame(signal))
    assert status == 409
    assert b"replayed" in body


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda node, sdp: b"", 400, b"malformed"),
        (lambda node, sdp: b"\xff" * 100, 400, b"malformed"),
        (lambda node, sdp: encode_frame(Ping(1)), 400, b"malformed"),
        (lambda node, sdp: b"\x00" * 20_000, 413, b"too_large"),
        (lambda node, sdp: encode_frame(offer(node, sdp, ts=1)), 400, b"stale"),
        (
            lambda node, sdp: encode_frame(
                offer(node, sdp, ts=offer(node, sdp).ts + 2 * SIGNAL_FRESHNESS_MS)
            ),
            400,
            b"stale",
        ),
        (
            lambda node, sdp: encode_frame(offer(node, sdp, recipient=b"\x01" * 32)),
            421,
            b"wrong_recipient",
        ),
        (
            lambda node, sdp: encode_frame(offer(node, sdp, network_id=b"\x02" * 32)),
            403,
            b"wrong_network",
        ),
        (lambda node, sdp: encode_frame(offer(node, sdp, kind="answer")), 400, b"wrong_kind"),
        (lambda node, sdp: _forged(offer(node, sdp)), 401, b"bad_signature"),
        (lambda node, sdp: encode_frame(offer(node, "v=0\r\nnot an sdp")), 400, b"bad_sdp"),
    ],
    ids=[
        "empty",
        "garbage",
        "other frame",
        "oversized",
        "stale",
        "future",
        "recipient",
        "network",
        "kind",
        "forged",
        "bad sdp",
    ],
)
async def test_bad_offers_get_a_4xx(node: Node, make, status: int, code: bytes) -> None:  # type: ignore[no-untyped-def]
    sdp = await offer_sdp()
    got, body = await post(node, make(node, sdp))
    assert got == status, body
    assert code in body
    assert not node.gossip.by_peer  # type: ignore[union-attr]


def _forged(signal: Signal) -> bytes:
    from dataclasses import replace

    return encode_frame(replace(signal, sdp=signal.sdp + " "))


async def test_one_address_cannot_flood_the_endpoint(node: Node) -> None:
    statuses = []
    for _ in range(15):
        status, _ = await post(node, b"\xff", source="127.0.0.91")
        statuses.append(status)
    assert 429 in statuses
    # Another address is not affected.
    status, _ = await post(node, b"\xff", source="127.0.0.92")
    assert status == 400


async def test_one_address_may_hold_only_so_many_connections(tmp_path: Path) -> None:
    node = await start_node(tmp_path, 1, limits={"max_connections_per_address": 2})
    async with running([node]):
        sdp = await offer_sdp()
        statuses = []
        for _ in range(3):
            statuses.append(
                (await post(node, encode_frame(offer(node, sdp)), source="127.0.0.93"))[0]
            )
        assert statuses[:2] == [200, 200]
        assert statuses[2] == 429


async def test_a_false_mdns_claim_is_not_believed(tmp_path: Path) -> None:
    """An mDNS record (or a peer) claims node Z lives at B's address: B answers as itself, so the
    dialler refuses the connection instead of taking B for Z."""
    from bootstrap.addresses import Via

    a = await start_node(tmp_path, 2)
    b = await start_node(tmp_path, 3)
    async with running([a, b]):
        assert a.peers is not None and a.driver is not None and b.mesh_port is not None
        claimed = SigningKey.for_label("claimed-node").public
        entry = a.peers.book.add(loopback(3), b.mesh_port, Via.MDNS, a.driver.now, node_id=claimed)
        a.peers.wake()
        from tests.conftest import wait_until

        await wait_until(lambda: entry.failures >= 1, within=20, what="the dial to be refused")
        assert not a.gossip.by_peer  # type: ignore[union-attr]


async def test_an_offer_refused_over_the_mesh_fails_the_dial_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Node 0 learns node 2 from node 1 and offers to it over the mesh; node 2 admits only node 1
    and says so in a ROUTED refusal, so node 0's dial fails now rather than after its timeout."""
    caplog.set_level(logging.INFO, logger="node.peers")
    ids = node_ids(tmp_path, 3)
    nodes: list[Node] = []
    async with running(nodes):
        nodes.append(await start_node(tmp_path, 1, mesh={"target_peers": 2}))
        nodes.append(
            await start_node(
                tmp_path,
                2,
                mesh={"allow_peers": (ids[1].hex(),)},
                discovery={"bootstrap": (mesh_address(nodes[0], 1),)},
            )
        )
        await wait_until(lambda: ids[2] in peer_ids(nodes[0]), within=20, what="1 - 2")
        started = time.monotonic()
        nodes.append(
            await start_node(
                tmp_path,
                0,
                mesh={"target_peers": 2},
                discovery={"bootstrap": (mesh_address(nodes[0], 1),)},
            )
        )
        first = nodes[2]

        def refused() -> bool:
            return any(
                "refused over the mesh: not_allowed" in record.getMessage()
                for record in caplog.records
            )

        await wait_until(refused, within=CONNECT_TIMEOUT_S / 2, what="the refusal")
        assert time.monotonic() - started < CONNECT_TIMEOUT_S
        assert first.peers is not None and first.peers.dial_failures >= 1
        assert ids[2] not in peer_ids(first)
