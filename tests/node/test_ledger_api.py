"""The ledger and message API of one real node (real SQLite, real HTTP on loopback)."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.daemon import Node
from tests.conftest import make_config, wait_until


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        async with self.session.request(
            method, self.base + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            text = await response.text()
            return response.status, (json.loads(text) if text else None)


@pytest.fixture
async def node(data_dir: Path) -> AsyncIterator[Node]:
    node = Node(make_config(data_dir, ledger={"genesis": "found", "period_s": 3600}))
    await node.start()
    await wait_until(lambda: node.replica.network_id is not None, what="the founding genesis")
    yield node
    await node.stop()


@pytest.fixture
async def api(node: Node) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{node.status_port}")


async def new_account(api: Api, name: str) -> str:
    status, body = await api.call("POST", "/api/accounts", {"name": name})
    assert status == 201, body
    return str(body["account"])


async def balance(api: Api, account: str) -> str:
    status, body = await api.call("GET", f"/api/accounts/{account}")
    assert status == 200, body
    return str(body["balance"])


async def funded_pair(api: Api) -> tuple[str, str]:
    alice, bob = await new_account(api, "alice"), await new_account(api, "bob")
    for account in (alice, bob):
        await wait_until(lambda a=account: _is(api, a, "208800.00"), what="enrolment grants")
    return alice, bob


async def _is(api: Api, account: str, amount: str) -> bool:
    return await balance(api, account) == amount


async def test_enrolment_gets_its_grants(api: Api, node: Node) -> None:
    alice = await new_account(api, "alice")
    await wait_until(
        lambda: _is(api, alice, "208800.00"), what="housing, investment and the first weekly flow"
    )
    status, body = await api.call("GET", f"/api/accounts/{alice}")
    assert body["name"] == "alice"
    assert body["held"] is True
    assert sorted(h["purpose"] for h in body["history"]) == ["housing", "investment", "weekly"]
    status, listing = await api.call("GET", "/api/accounts")
    assert status == 200
    assert [a["id"] for a in listing["accounts"]] == [alice]
    status, ledger = await api.call("GET", "/api/ledger")
    assert ledger["conserved"] is True
    assert ledger["total"] == "19000000000000.00"
    assert ledger["pool_held"] is True
    assert node.replica.ledger.conserved()


async def test_transfer_and_its_errors(api: Api, node: Node) -> None:
    alice, bob = await funded_pair(api)
    status, sent = await api.call(
        "POST", "/api/transfers", {"from": alice, "to": bob, "amount": "12.34"}
    )
    assert status == 201, sent
    assert sent["amount"] == "12.34"
    await wait_until(lambda: _is(api, bob, "208812.34"), what="the claim")
    assert await balance(api, alice) == "208787.66"
    before = node.replica.ledger.state_hash()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"from": alice, "to": bob, "amount": "999999999.00"}, 422, "overdraft"),
        ({"from": alice, "to": bob, "amount": "1.234"}, 400, "invalid_amount"),
        ({"from": alice, "to": bob, "amount": "-5"}, 400, "invalid_amount"),
        ({"from": alice, "to": bob, "amount": "0"}, 400, "invalid_amount"),
        ({"from": alice, "to": bob, "amount": 1.5}, 400, "invalid_amount"),
        ({"from": alice, "to": "ab" * 32, "amount": "1"}, 404, "unknown_account"),
        ({"from": "cd" * 32, "to": bob, "amount": "1"}, 403, "not_held"),
        ({"from": "xyz", "to": bob, "amount": "1"}, 400, "invalid_account"),
        ({"from": alice, "to": alice, "amount": "1"}, 422, "malformed_event"),
        ({"from": alice, "to": bob, "amount": "1", "extra": 1}, 400, "unknown_field"),
        ({"to": bob, "amount": "1"}, 400, "missing_field"),
    ]
    for body, expected_status, code in cases:
        status, error = await api.call("POST", "/api/transfers", body)
        assert (status, error["error"]) == (expected_status, code), body
        assert error["detail"]
    assert node.replica.ledger.state_hash() == before


async def test_messages(api: Api) -> None:
    status, created = await api.call(
        "POST", "/api/messages", {"content": "hello", "channel": "billboard", "priority": 5}
    )
    assert status == 201, created
    status, listing = await api.call("GET", "/api/messages?channel=billboard")
    assert [m["content"] for m in listing["messages"]] == ["hello"]
    assert listing["messages"][0]["priority"] == 5
    assert listing["messages"][0]["reach"] >= 1
    status, other = await api.call("GET", "/api/messages?channel=social")
    assert other["messages"] == []
    for body, code in [
        ({"content": ""}, "invalid_field"),
        ({"content": "x", "channel": "Bad Channel"}, "invalid_channel"),
        ({"content": "x", "priority": 6}, "invalid_priority"),
        ({"content": "x", "priority": True}, "invalid_priority"),
        ({"content": 5}, "invalid_field"),
        ({}, "missing_field"),
    ]:
        status, error = await api.call("POST", "/api/messages", body)
        assert (status, error["error"]) == (400, code), body
    status, error = await api.call("POST", "/api/messages", {"content": "é" * 2049})
    assert (status, error["error"]) == (413, "too_large")


async def test_subscriptions_persist(api: Api, node: Node) -> None:
    status, body = await api.call("GET", "/api/subscriptions")
    assert body["channels"] == ["billboard", "social", "media", "direct"]
    status, body = await api.call("PUT", "/api/subscriptions", {"channels": ["news", "social"]})
    assert (status, body["channels"]) == (200, ["news", "social"])
    status, body = await api.call("PUT", "/api/subscriptions", {"channels": ["NO!"]})
    assert status == 400


async def test_without_genesis_writes_are_refused_clearly(data_dir: Path) -> None:
    node = Node(make_config(data_dir, ledger={"genesis": "join"}))
    await node.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, f"http://127.0.0.1:{node.status_port}")
            for path, body in [("/api/accounts", {}), ("/api/messages", {"content": "x"})]:
                status, error = await api.call("POST", path, body)
                assert (status, error["error"]) == (409, "no_genesis")
            status, ledger = await api.call("GET", "/api/ledger")
            assert (status, ledger["genesis"]) == (200, None)
    finally:
        await node.stop()


async def test_hostile_bodies_never_cause_a_500(api: Api) -> None:
    rng = random.Random(1234)
    bodies: list[bytes] = [
        b"",
        b"{",
        b"[]",
        b"null",
        b"1",
        b'"x"',
        b"\xff\xfe",
        b'{"amount": {"$gt": 1}}',
        b'{"from": null, "to": null, "amount": null}',
        json.dumps({"content": "x" * 70_000}).encode(),
        b"{" + b'"a":1,' * 5000 + b'"b":2}',
        b"[" * 10_000,
    ]
    for _ in range(60):
        bodies.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200))))
        bodies.append(
            json.dumps(
                {
                    rng.choice(
                        ["from", "to", "amount", "content", "channel", "priority", "name", "memo"]
                    ): rng.choice([None, 1, -1, 2**70, "x", [], {}, True, "0" * 80])
                }
            ).encode()
        )
    for path in ("/api/accounts", "/api/transfers", "/api/messages"):
        for raw in bodies:
            status, _ = await api.call("POST", path, raw=raw)
            assert 400 <= status < 500 or status in (201,), (path, raw[:50], status)
    for path in (
        "/api/accounts/zz",
        "/api/accounts/" + "0" * 64,
        "/api/messages?limit=-1",
        "/api/messages?channel=%00",
        "/api/accounts?limit=99999999",
    ):
        status, _ = await api.call("GET", path)
        assert 400 <= status < 500, path
