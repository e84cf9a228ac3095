"""The ledger across real nodes: grants, transfers, overdrafts and forks agree everywhere; and
acknowledged transfers survive a kill -9."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.daemon import Node
from protocol.events import Event, Send
from tests.conftest import wait_until
from tests.mesh.harness import ProcessNode, mesh_address, running, start_node


class Api:
    def __init__(self, session: aiohttp.ClientSession, node: Node) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{node.status_port}"

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=body) as response:
            return response.status, await response.json()


async def mesh_of(tmp_path: Path, size: int) -> list[Node]:
    first = await start_node(tmp_path, 0, ledger={"genesis": "found", "period_s": 3600})
    nodes = [first]
    await wait_until(lambda: first.replica.network_id is not None, what="the genesis")
    for index in range(1, size):
        nodes.append(
            await start_node(
                tmp_path,
                index,
                discovery={"bootstrap": (mesh_address(first, 0),)},
                mesh={"target_peers": 2},
            )
        )
    await wait_until(
        lambda: all(n.replica.network_id == first.replica.network_id for n in nodes),
        within=30,
        what="every node in the mesh",
    )
    return nodes


def agree(nodes: list[Node]) -> bool:
    hashes = {n.replica.ledger.state_hash() for n in nodes}
    return len(hashes) == 1 and all(n.replica.ledger.conserved() for n in nodes)


def balance(node: Node, account: bytes) -> int:
    return node.replica.ledger.balance.get(account, 0)


@pytest.mark.parametrize("size", [2, 5])
async def test_grants_transfers_and_overdrafts_agree_on_every_node(
    tmp_path: Path, size: int
) -> None:
    nodes = await mesh_of(tmp_path, size)
    async with running(nodes), aiohttp.ClientSession() as http:
        last = nodes[-1]
        api_last, api_first = Api(http, last), Api(http, nodes[0])
        status, created = await api_last.call("POST", "/api/accounts", {"name": "alice"})
        assert status == 201, created
        alice = bytes.fromhex(created["account"])
        status, created = await api_first.call("POST", "/api/accounts", {"name": "bob"})
        bob = bytes.fromhex(created["account"])
        grants = 104_000_00 * 2 + 800_00
        await wait_until(
            lambda: all(balance(n, alice) == grants and balance(n, bob) == grants for n in nodes),
            within=30,
            what="the enrolment grants on every node",
        )
        status, sent = await api_last.call(
            "POST", "/api/transfers", {"from": alice.hex(), "to": bob.hex(), "amount": "123.45"}
        )
        assert status == 201, sent
        await wait_until(
            lambda: (
                all(
                    balance(n, bob) == grants + 12_345 and balance(n, alice) == grants - 12_345
                    for n in nodes
                )
                and agree(nodes)
            ),
            within=30,
            what="the same balances and state hash on every node",
        )
        status, error = await api_last.call(
            "POST", "/api/transfers", {"from": alice.hex(), "to": bob.hex(), "amount": "9999999.00"}
        )
        assert status == 422
        assert error["error"] == "overdraft"
        assert "exceeds the sender's balance" in error["detail"]
        # The node that does not hold alice's key cannot spend from her account.
        status, error = await api_first.call(
            "POST", "/api/transfers", {"from": alice.hex(), "to": bob.hex(), "amount": "1.00"}
        )
        assert (status, error["error"]) == (403, "not_held")
        summaries = [(await Api(http, n).call("GET", "/api/ledger"))[1] for n in nodes]
        assert len({s["state_hash"] for s in summaries}) == 1
        assert all(s["conserved"] for s in summaries)


async def test_a_forked_author_is_frozen_on_every_node(tmp_path: Path) -> None:
    nodes = await mesh_of(tmp_path, 5)
    async with running(nodes), aiohttp.ClientSession() as http:
        holder = nodes[2]
        status, created = await Api(http, holder).call("POST", "/api/accounts", {"name": "mallory"})
        mallory = bytes.fromhex(created["account"])
        grants = 104_000_00 * 2 + 800_00
        await wait_until(
            lambda: all(balance(n, mallory) == grants for n in nodes), within=30, what="grants"
        )
        # Mallory's key signs two different sends for the same slot and hands one to each end
        # of the mesh: a double spend.
        key = holder.keyring.get(mallory)
        assert key is not None and holder.replica.network_id is not None
        head = holder.replica.heads[mallory]
        network = holder.replica.network_id
        pool = holder.replica.ledger.pool
        assert pool is not None
        forks = [
            Event.create(
                key,
                network,
                seq=head.seq + 1,
                prev=head.id,
                ts=head.ts + 1 + i,
                body=Send(pool, 100_00 + i, "transfer", f"branch {i}"),
            )
            for i in range(2)
        ]
        for node, event in ((nodes[0], forks[0]), (nodes[4], forks[1])):
            assert node.gossip is not None and node.driver is not None
            node.gossip.submit_events([event], node.driver.now)
            node.driver.kick()
        await wait_until(
            lambda: all(mallory in n.replica.ledger.frozen for n in nodes) and agree(nodes),
            within=30,
            what="every node to freeze the forked author and agree",
        )
        for node in nodes:
            assert node.replica.ledger.frozen[mallory] == head.seq + 1
            assert balance(node, mallory) == grants  # neither branch is applied
        status, error = await Api(http, holder).call(
            "POST", "/api/transfers", {"from": mallory.hex(), "to": pool.hex(), "amount": "1.00"}
        )
        assert status == 422
        assert error["error"] == "author_frozen"


@pytest.mark.slow
async def test_acknowledged_transfers_survive_kill_9(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = ProcessNode(tmp_path, 10, ledger={"genesis": "found", "period_s": 3600})
    node.start()
    try:
        await node.wait_ready()
        await wait_until(lambda: _has_genesis(node), within=30, what="the founding genesis")
        alice = (await asyncio.to_thread(node.post, "/api/accounts", {"name": "alice"}))["account"]
        bob = (await asyncio.to_thread(node.post, "/api/accounts", {"name": "bob"}))["account"]
        grants = "208800.00"
        await wait_until(
            lambda: _balances_are(node, {alice: grants, bob: grants}), within=30, what="grants"
        )
        acknowledged: list[str] = []
        rng = random.Random(20261126)
        kill_after = rng.uniform(0.3, 1.5)
        url = f"http://127.0.0.1:{node.status_port}/api/transfers"

        async def transfer(session: aiohttp.ClientSession, i: int) -> None:
            sender, recipient = (alice, bob) if i % 2 else (bob, alice)
            body = {"from": sender, "to": recipient, "amount": f"{1 + i % 7}.{i % 100:02d}"}
            try:
                async with session.post(url, json=body) as response:
                    if response.status == 201:
                        acknowledged.append((await response.json())["id"])
            except (TimeoutError, aiohttp.ClientError):
                pass  # the node died under this request: it was never acknowledged

        async def load() -> None:
            timeout = aiohttp.ClientTimeout(total=30)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                queue = list(range(1000))

                async def worker() -> None:
                    while queue:
                        await transfer(session, queue.pop())

                await asyncio.gather(*(worker() for _ in range(16)))

        loader = asyncio.create_task(load())
        await asyncio.sleep(kill_after)
        node.kill()
        await loader
        assert acknowledged, "no transfer was acknowledged before the kill"
        node.start()
        await node.wait_ready()
        stored: set[str] = set()
        for account in (alice, bob):
            detail = await asyncio.to_thread(node.get, f"/api/accounts/{account}?limit=1000")
            stored |= {h["send"] for h in detail["history"] if h["direction"] == "out"}
        missing = set(acknowledged) - stored
        with capsys.disabled():
            print(
                f"\n    [crash] killed after {kill_after:.2f}s: {len(acknowledged)} transfers "
                f"acknowledged, {len(stored)} stored, {len(missing)} lost"
            )
        assert not missing, (
            f"{len(missing)} acknowledged transfers lost (kill after {kill_after:.2f}s)"
        )
        ledger = await asyncio.to_thread(node.get, "/api/ledger")
        assert ledger["conserved"] is True
        # Every transfer is between the two accounts: once all are claimed, their sum is unchanged.
        await wait_until(
            lambda: _sum_is(node, (alice, bob), 2 * 208_800_00),
            within=30,
            what="claims of everything sent",
        )
    finally:
        node.close()


async def _has_genesis(node: ProcessNode) -> bool:
    return bool((await node.aget("/api/status"))["network_id"])


async def _balances_are(node: ProcessNode, wanted: dict[str, str]) -> bool:
    for account, amount in wanted.items():
        if (await node.aget(f"/api/accounts/{account}"))["balance"] != amount:
            return False
    return True


async def _sum_is(node: ProcessNode, accounts: tuple[str, ...], cents: int) -> bool:
    total = 0
    for account in accounts:
        whole, _, frac = (await node.aget(f"/api/accounts/{account}"))["balance"].partition(".")
        total += int(whole) * 100 + int(frac)
    unclaimed = (await node.aget("/api/ledger"))["unclaimed"]
    return total == cents and unclaimed == "0.00"
