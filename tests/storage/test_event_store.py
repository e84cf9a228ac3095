"""Plans written to real SQLite and read back: the store agrees with the in-memory replica."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.events import Post, Send
from protocol.replica import Incoming, Plan, Replica
from storage.events import EventStore
from storage.store import Store
from tests.protocol.helpers import (
    GENESIS,
    NODE,
    Chain,
    claim,
    enroll,
    key,
    pool_chain,
    post,
    send,
)

ALICE, BOB, CAROL = key("alice"), key("bob"), key("carol")


class Node:
    """A replica whose plans go to a real database (the daemon's write path without I/O loops)."""

    def __init__(self, store: Store) -> None:
        self.events = EventStore(store)
        self.replica = Replica()

    async def feed(self, events: list, origin: bytes | None = b"p" * 32) -> list[Plan]:  # type: ignore[type-arg]
        for event in events:
            self.replica.submit(Incoming(event, origin))
        plans = []
        while (plan := self.replica.build_plan(GENESIS.ts + 10_000)) is not None:
            await self.events.commit(plan)
            self.replica.commit(plan)
            if plan.lookups:
                for old in await self.events.lookup(plan.lookups):
                    self.replica.submit(old)
            if self.replica.needs_rebuild:
                await self.events.rebuild(self.replica)
            plans.append(plan)
        return plans


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(tmp_path / "node.db")
    await store.open()
    yield store
    await store.close()


async def reloaded(store: Store) -> Replica:
    replica = Replica()
    await EventStore(store).load(replica)
    return replica


async def test_ledger_round_trip_through_the_database(store: Store) -> None:
    node = Node(store)
    pool = pool_chain()
    alice, bob = enroll(ALICE, "Alice"), enroll(BOB, "Bob")
    grant = send(pool, ALICE, 100_000, "housing")
    payment_later = []
    await node.feed([GENESIS, *alice.events, *bob.events, grant, claim(alice, grant)])
    payment = send(alice, BOB, 2_500)
    payment_later.append(payment)
    await node.feed([payment, claim(bob, payment), post(Chain(NODE), "hi")])
    replica = await reloaded(store)
    assert replica.network_id == GENESIS.id
    assert replica.heads == node.replica.heads
    assert replica.ledger.state_hash() == node.replica.ledger.state_hash()
    assert replica.ledger.granted == {(ALICE.public, "housing")}
    assert replica.ledger.claimed == node.replica.ledger.claimed
    rows = await store.fetchall("SELECT name FROM accounts ORDER BY name")
    assert [r[0] for r in rows] == ["Alice", "Bob"]
    (balance,) = await store.fetchall(
        "SELECT balance FROM balances WHERE account = ?", (BOB.public,)
    )
    assert balance[0] == 2_500
    messages = await node.events.messages("social")
    assert [m.content for m in messages] == ["hi"]
    assert messages[0].from_peer == b"p" * 32


async def test_duplicate_is_never_stored_twice(store: Store) -> None:
    node = Node(store)
    event = post(Chain(NODE))
    await node.feed([GENESIS, event])
    await node.feed([event])
    # After a restart the in-memory dedup is gone: the old event is looked up, not re-stored.
    node.replica = await reloaded(store)
    plans = await node.feed([event])
    assert any(plan.lookups for plan in plans)
    assert await node.events.count_events() == 2


async def test_fork_moves_the_tail_to_the_archive_and_rebuilds(store: Store) -> None:
    node = Node(store)
    pool = pool_chain()
    alice, bob, carol = enroll(ALICE), enroll(BOB), enroll(CAROL)
    grant = send(pool, ALICE, 100_000, "housing")
    await node.feed(
        [GENESIS, *alice.events, *bob.events, *carol.events, grant, claim(alice, grant)]
    )
    to_bob = send(alice, BOB, 100_000)
    await node.feed([to_bob, claim(bob, to_bob)])
    to_carol = alice.fork(Send(CAROL.public, 100_000, "transfer", ""))
    await node.feed([to_carol])
    assert node.replica.ledger.frozen[ALICE.public] == to_bob.seq
    archived = await store.fetchall("SELECT id FROM archived_events")
    assert {bytes(r[0]) for r in archived} >= {to_bob.id, to_carol.id}
    assert await node.events.at(ALICE.public, to_bob.seq) is None
    assert set(await node.events.by_ids([to_bob.id, to_carol.id])) == {to_bob.raw, to_carol.raw}
    head = await store.fetchone(
        "SELECT seq, frozen_at FROM feed_heads WHERE author = ?", (ALICE.public,)
    )
    assert head is not None
    assert (head[0], head[1]) == (to_bob.seq - 1, to_bob.seq)
    (bob_balance,) = await store.fetchall(
        "SELECT balance FROM balances WHERE account = ?", (BOB.public,)
    )
    assert bob_balance[0] == 0
    # A restart restores the same frozen state.
    replica = await reloaded(store)
    assert replica.ledger.frozen == {ALICE.public: to_bob.seq}
    assert replica.ledger.state_hash() == node.replica.ledger.state_hash()
    assert ALICE.public in replica.forks


async def test_ranges_and_ids(store: Store) -> None:
    node = Node(store)
    chain = Chain(NODE)
    events = [post(chain, str(i)) for i in range(10)]
    await node.feed([GENESIS, *events])
    assert await node.events.range(NODE.public, 3, 5) == [e.raw for e in events[2:5]]
    assert await node.events.range(NODE.public, 20, 30) == []
    assert await node.events.by_ids([events[0].id, b"\x00" * 32]) == [events[0].raw]


async def test_a_failed_commit_writes_nothing(store: Store) -> None:
    node = Node(store)
    await node.feed([GENESIS])
    chain = Chain(NODE)
    first = post(chain, "1")
    node.replica.submit(Incoming(first, None))
    plan = node.replica.build_plan(GENESIS.ts + 1000)
    assert plan is not None
    # Make the transaction fail half-way: an event that is already there.
    await node.events.commit(Plan(accepted=[Incoming(first, None)]))
    with pytest.raises(Exception, match="UNIQUE"):
        await node.events.commit(plan)
    node.replica.abort(plan)
    assert await node.events.count_events() == 2  # genesis + the one committed directly
    assert isinstance(first.body, Post)


async def test_an_archived_claim_leaves_its_send_unclaimed(store: Store) -> None:
    """A claim in a forked author's archived tail no longer counts: the send it named is open
    again, in the sends table as in the replay (found by the chaos run)."""
    node = Node(store)
    pool = pool_chain()
    alice, bob = enroll(ALICE), enroll(BOB)
    grant = send(pool, BOB, 100_000, "housing")
    await node.feed([GENESIS, *alice.events, *bob.events, grant, claim(bob, grant)])
    to_alice = send(bob, ALICE, 50_000)
    alice_claim = claim(alice, to_alice)
    await node.feed([to_alice, alice_claim])
    row = await store.fetchone("SELECT claim_id FROM sends WHERE id = ?", (to_alice.id,))
    assert row is not None and bytes(row[0]) == alice_claim.id
    await node.feed([alice.fork(Send(BOB.public, 1, "transfer", ""))])
    assert node.replica.ledger.frozen[ALICE.public] == alice_claim.seq
    row = await store.fetchone("SELECT claim_id, state FROM sends WHERE id = ?", (to_alice.id,))
    assert row is not None
    assert (row[0], row[1]) == (None, "unclaimed")
    replica = await reloaded(store)
    assert replica.ledger.state_hash() == node.replica.ledger.state_hash()
