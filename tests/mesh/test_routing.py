"""Routing over a real mesh: a line of nodes forced by allow-lists, direct messages hop by hop,
rerouting when a link on the path is cut, and a clear error when no path is left."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest

from node.daemon import Node
from protocol.errors import CloseReason
from tests.conftest import wait_until
from tests.mesh.harness import mesh_address, node_ids, running, start_node

#: Links of the test mesh: the line 0-1-2-3-4, and a detour 1-5-3 around node 2.
LINKS = [(0, 1), (1, 2), (2, 3), (3, 4), (1, 5), (5, 3)]


def allowed(index: int, ids: list[bytes]) -> tuple[str, ...]:
    return tuple(ids[b if a == index else a].hex() for a, b in LINKS if index in (a, b))


def cut(nodes: list[Node], a: int, b: int) -> None:
    """Take the link a-b down for good: neither end allows the other any more."""
    for me, other in ((a, b), (b, a)):
        node, other_id = nodes[me], nodes[other].key.public  # type: ignore[union-attr]
        assert node.peers is not None and node.gossip is not None and node.driver is not None
        node.peers.allow.discard(other_id)
        handle = node.gossip.by_peer.get(other_id)
        if handle is not None:
            node.gossip.close_session(
                handle, CloseReason.NORMAL, "link cut by the test", node.driver.now
            )
            node.driver.kick()


def route_hops(node: Node, destination: bytes) -> tuple[bytes, ...] | None:
    router = node.router
    if router is None or router.table is None or destination not in router.table:
        return None
    return router.table.route(destination).path


@pytest.mark.slow
async def test_direct_messages_over_a_line_reroute_and_fail_clearly(tmp_path: Path) -> None:
    ids = node_ids(tmp_path, 6)
    nodes: list[Node] = []
    async with running(nodes):
        for index in range(6):
            neighbours = [b if a == index else a for a, b in LINKS if index in (a, b)]
            bootstrap = tuple(mesh_address(nodes[n], n) for n in neighbours if n < index)
            nodes.append(
                await start_node(
                    tmp_path,
                    index,
                    mesh={"allow_peers": allowed(index, ids), "target_peers": 3},
                    discovery={"bootstrap": bootstrap},
                )
            )
        first, last = nodes[0], nodes[4]
        await wait_until(
            lambda: all(route_hops(n, ids[4]) for n in nodes[:4]) and route_hops(first, ids[4]),
            within=30,
            what="routes to the last node",
        )
        assert set(nodes[0].gossip.by_peer) == {ids[1]}  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            api = f"http://127.0.0.1:{first.status_port}/api/direct"

            async def send(content: str) -> tuple[int, dict[str, object]]:
                started = time.monotonic()
                async with http.post(
                    api, json={"to": ids[4].hex(), "content": content}
                ) as response:
                    body = await response.json()
                assert time.monotonic() - started < 15, "the API must not hang"
                return response.status, body

            status, delivered = await send("across four hops")
            assert status == 201, delivered
            assert delivered["hops"] == 4
            path = [bytes.fromhex(h) for h in delivered["path"]]  # type: ignore[union-attr]
            assert path[0] == ids[0] and path[-1] == ids[4] and path[1] == ids[1]
            received = await last.router.received()  # type: ignore[union-attr]
            assert [m["content"] for m in received] == ["across four hops"]
            assert received[0]["hops"] == 4

            # Cut the middle link of that path: the message goes round the other way.
            middle = ids.index(path[2])
            cut(nodes, middle, 3)
            status, rerouted = await send("the long way round")
            assert status == 201, rerouted
            new_path = [bytes.fromhex(h) for h in rerouted["path"]]  # type: ignore[union-attr]
            assert path[2] not in new_path
            assert rerouted["hops"] == 4

            # Cut the other one too: no path is left, and the answer says so.
            other = 2 if middle == 5 else 5
            cut(nodes, other, 3)
            await wait_until(
                lambda: route_hops(first, ids[4]) is None, within=20, what="the route to vanish"
            )
            status, error = await send("nobody will get this")
            assert status == 404
            assert error["error"] == "unreachable"
            assert "no route" in str(error["detail"])

            # The route API says the same; the table of the reachable part is intact.
            async with http.get(
                f"http://127.0.0.1:{first.status_port}/api/routes/{ids[4].hex()}"
            ) as r:
                assert r.status == 404
            async with http.get(
                f"http://127.0.0.1:{first.status_port}/api/routes/{ids[2].hex()}"
            ) as r:
                assert r.status == 200
                routes = await r.json()
                assert routes["routes"][0]["hops"] == 2
