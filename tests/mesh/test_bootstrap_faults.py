"""Bootstrap addresses that fail: nobody listening, or a server that answers garbage.

A node must start, stay healthy, back off from the bad addresses (never a tight redial loop) and
still join the mesh through the one address that works.
"""

from __future__ import annotations

import math
from pathlib import Path

from aiohttp import web

from bootstrap.addresses import BACKOFF_BASE_S
from tests.conftest import free_port, wait_until
from tests.mesh.harness import loopback, mesh_address, peer_ids, running, start_node


async def test_dead_and_garbage_bootstrap_addresses_back_off_and_the_good_one_joins(
    tmp_path: Path,
) -> None:
    garbage = web.Application()

    async def nonsense(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff" * 64, content_type="application/cbor")

    garbage.router.add_post("/signal", nonsense)
    runner = web.AppRunner(garbage)
    await runner.setup()
    garbage_port = free_port(loopback(9))
    site = web.TCPSite(runner, loopback(9), garbage_port)
    await site.start()
    dead = f"{loopback(8)}:{free_port(loopback(8))}"
    try:
        good = await start_node(tmp_path, 0)
        async with running([good]):
            began = good.driver.now  # type: ignore[union-attr]
            joiner = await start_node(
                tmp_path,
                1,
                discovery={
                    "bootstrap": [dead, f"{loopback(9)}:{garbage_port}", mesh_address(good, 0)]
                },
            )
            async with running([joiner]):
                assert joiner.peers is not None and joiner.driver is not None
                book = joiner.peers.book
                await wait_until(lambda: peer_ids(joiner), within=20, what="the good address")
                bad = [book.get(loopback(8), int(dead.rsplit(":", 1)[1]))]
                bad.append(book.get(loopback(9), garbage_port))
                await wait_until(
                    lambda: all(e is not None and e.failures >= 1 for e in bad),
                    within=20,
                    what="both bad addresses to fail",
                )
                now = joiner.driver.now
                # Backed off, not a tight redial loop: the next attempt is still ahead, and the
                # k-th retry waits at least half of BACKOFF_BASE_S * 2^(k-1) (equal jitter), so
                # k failures take at least BACKOFF_BASE_S * (2^k - 1) / 2 seconds.
                elapsed = joiner.driver.now - began
                most = 1 + math.log2(1 + 2 * elapsed / BACKOFF_BASE_S)
                for entry in bad:
                    assert entry is not None
                    assert entry.next_try > now
                    assert entry.failures <= most
                status = await joiner.status()
                assert status["peers"] >= 1
    finally:
        await runner.cleanup()
