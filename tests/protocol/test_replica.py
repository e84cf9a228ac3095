"""The replica's judgement and its plan/commit/abort cycle."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocol.replica as replica_module
from protocol.errors import AuthorFrozen, ChainBroken, ClockSkew, LocalProtocolError, WrongNetwork
from protocol.events import ZERO_ID, Event, Genesis, Post, Send
from protocol.replica import Incoming, OldEvent, Replica, RequestKind
from tests.protocol.helpers import (
    GENESIS,
    NODE,
    T0,
    Chain,
    Driven,
    claim,
    enroll,
    key,
    pool_chain,
    post,
    send,
)

ALICE, BOB = key("alice"), key("bob")


def test_duplicate_is_judged_once() -> None:
    node = Driven()
    chain = Chain(NODE)
    event = post(chain)
    node.feed([event])
    plans = node.feed([event])
    assert [d[0] for d in plans[0].duplicates] == [event.id]
    assert not plans[0].accepted


def test_gap_is_held_then_released_in_order() -> None:
    node = Driven()
    chain = Chain(NODE)
    first, second, third = post(chain, "1"), post(chain, "2"), post(chain, "3")
    plans = node.feed([third])
    assert node.replica.is_held(NODE.public, 3)
    request = plans[0].requests[0]
    assert (request.kind, request.start, request.stop) == (RequestKind.RANGE, 1, 2)
    node.feed([second])
    assert node.replica.pending_count == 2
    plans = node.feed([first])
    assert [item.event.seq for item in plans[0].accepted] == [1, 2, 3]
    assert node.replica.pending_count == 0


def test_abort_restores_state_and_requeues() -> None:
    node = Driven()
    chain = enroll(ALICE)
    replica = node.replica
    before_heads = dict(replica.heads)
    before_hash = replica.ledger.state_hash()
    replica.submit(Incoming(chain.events[0], None))
    plan = replica.build_plan(T0 + 1000)
    assert plan is not None and len(plan.accepted) == 1
    assert replica.build_plan(T0 + 1000) is None  # one plan in flight at a time
    replica.abort(plan)
    assert replica.heads == before_heads
    assert replica.ledger.state_hash() == before_hash
    assert ALICE.public not in replica.ledger.accounts
    assert not replica.knows(chain.events[0].id)
    retry = replica.build_plan(T0 + 1000)
    assert retry is not None and retry.accepted[0].event.id == chain.events[0].id
    # The retry carries the same writes as the aborted plan.
    assert {row.account for row in retry.balances} == {row.account for row in plan.balances}
    with pytest.raises(LocalProtocolError):
        replica.commit(plan)
    replica.commit(retry)


def test_intents_chain_their_events() -> None:
    node = Driven()
    first = node.author(NODE, lambda _: Post("social", 3, "a"))
    second = node.author(NODE, lambda _: Post("social", 3, "b"))
    assert first.event is not None and second.event is not None
    assert (first.event.seq, second.event.seq) == (1, 2)
    assert second.event.prev == first.event.id
    assert second.event.ts >= first.event.ts
    assert node.ids() >= {first.event.id, second.event.id}


def test_intent_without_genesis_fails() -> None:
    node = Driven(with_genesis=False)
    intent = node.author(NODE, lambda _: Post("social", 3, "a"))
    assert isinstance(intent.error, LocalProtocolError)


def test_clock_skew() -> None:
    node = Driven()
    chain = Chain(NODE)
    future = chain.next(Post("social", 3, "x"), ts=T0 + 1000 + 301_000)
    node.feed([future])
    chain2 = Chain(ALICE)
    chain2.next(Post("social", 3, "x"), ts=T0 + 500)
    backwards = chain2.next(Post("social", 3, "y"), ts=T0 + 100)
    node.feed(chain2.events)
    codes = [
        (r.event.seq if r.event else None, type(r.error)) for p in node.plans for r in p.rejected
    ]
    assert (1, ClockSkew) in codes
    assert (2, ClockSkew) in codes
    assert backwards.id not in node.ids()


def test_other_branch_is_not_stored_and_its_prev_is_asked_for() -> None:
    node = Driven()
    chain = Chain(NODE)
    post(chain, "1")
    node.feed(chain.events)
    other = Event.create(
        NODE, GENESIS.id, seq=2, prev=b"\x01" * 32, ts=T0 + 5, body=Post("social", 3, "z")
    )
    plans = node.feed([other])
    rejection = plans[0].rejected[0]
    assert isinstance(rejection.error, ChainBroken)
    assert rejection.error.penalty == 0
    assert plans[0].requests[0].ids == (b"\x01" * 32,)


def test_genesis_of_another_mesh_is_refused() -> None:
    node = Driven()
    foreign = Event.create(
        key("other-pool"), ZERO_ID, seq=1, prev=ZERO_ID, ts=T0, body=GENESIS.body
    )
    node.feed([foreign])
    assert [type(r.error) for p in node.plans for r in p.rejected] == [WrongNetwork]


def test_without_genesis_only_a_genesis_is_judged() -> None:
    node = Driven(with_genesis=False)
    node.feed([post(Chain(NODE))])
    assert node.ids() == set()
    node.feed([GENESIS])
    assert node.replica.network_id == GENESIS.id


def test_fork_from_an_old_event_lookup() -> None:
    node = Driven()
    chain = Chain(NODE)
    post(chain, "1")
    post(chain, "2")
    node.feed(chain.events)
    forked = chain.fork(Post("social", 3, "2 again"))
    plans = node.feed([forked])
    assert plans[0].lookups  # seq 2 <= head: the stored one must be read first
    assert NODE.public in node.store.forks
    proof = node.store.forks[NODE.public]
    assert proof.canonical and proof.seq == 2
    assert node.replica.ledger.frozen[NODE.public] == 2
    # The frozen author's later events are refused; its earlier one stays.
    later = chain.next(Post("social", 3, "3"))
    node.feed([later])
    assert later.id not in node.ids()
    assert chain.events[0].id in node.ids()
    intent = node.author(NODE, lambda _: Post("social", 3, "4"))
    assert isinstance(intent.error, AuthorFrozen)


def test_non_canonical_fork_walks_back() -> None:
    node = Driven()
    chain = Chain(NODE)
    post(chain, "1")
    post(chain, "2")
    node.feed(chain.events)
    branch = Chain(NODE)
    branch.next(Post("social", 3, "1b"))
    other_two = branch.next(Post("social", 3, "2b"))
    node.replica.submit(OldEvent(other_two, chain.events[1], b"peer" * 8))
    plans = node.run()
    assert plans[0].forks and not plans[0].forks[0].canonical
    wanted = {i for r in plans[0].requests for i in r.ids}
    assert branch.events[0].id in wanted
    # The walk back finds the canonical fork at seq 1.
    node.feed([branch.events[0]])
    assert node.store.forks[NODE.public].seq == 1
    assert node.store.forks[NODE.public].canonical


def test_pending_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "MAX_PENDING_EVENTS", 5)
    node = Driven()
    chains = [Chain(key(f"a{i}")) for i in range(8)]
    for chain in chains:
        post(chain)
        post(chain)
    node.feed([chain.events[1] for chain in chains])  # every one waits for its seq 1
    assert node.replica.pending_count == 5


def test_receipt_of_the_same_slot_twice_keeps_the_first_held() -> None:
    node = Driven()
    chain = Chain(NODE)
    post(chain, "1")
    two = post(chain, "2")
    node.feed([two, two])
    assert node.replica.pending_count == 1


# --- properties ---------------------------------------------------------------------------------


def ledger_scenario(rng: random.Random) -> list[Event]:
    """Valid and invalid ledger and message events among a few accounts."""
    pool = pool_chain()
    people = [key(f"person-{i}") for i in range(4)]
    chains = {p.public: enroll(p) for p in people}
    events: list[Event] = [e for c in chains.values() for e in c.events]
    sends: list[Event] = []
    for person in people:
        grant = send(pool, person, 50_000, "housing")
        events.append(grant)
        sends.append(grant)
    for _ in range(25):
        choice = rng.random()
        person = rng.choice(people)
        chain = chains[person.public]
        if choice < 0.4:
            open_sends = [
                s for s in sends if isinstance(s.body, Send) and s.body.to == person.public
            ]
            if open_sends:
                events.append(claim(chain, rng.choice(open_sends)))  # may be a double claim
        elif choice < 0.8:
            other = rng.choice([p for p in people if p is not person])
            amount = rng.choice([1, 500, 20_000, 60_000, 10**9])  # some are overdrafts
            event = send(chain, other, amount)
            events.append(event)
            sends.append(event)
        else:
            events.append(post(chain, f"note {rng.random()}"))
    return events


def replay(events: list[Event], chunks: list[int]) -> Driven:
    node = Driven()
    position = 0
    for size in chunks:
        node.feed(events[position : position + size])
        assert node.ledger.conserved()
        position += size
    node.feed(events[position:])
    assert node.ledger.conserved()
    return node


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.randoms(use_true_random=False), data=st.data())
def test_any_delivery_order_gives_the_same_state(
    seed: int, order: random.Random, data: st.DataObject
) -> None:
    events = ledger_scenario(random.Random(seed))
    reference = replay(events, [])
    shuffled = list(events)
    order.shuffle(shuffled)
    chunks = data.draw(st.lists(st.integers(1, 10), max_size=10))
    other = replay(shuffled, chunks)
    assert other.ids() == reference.ids()
    assert other.ledger.state_hash() == reference.ledger.state_hash()
    assert other.replica.pending_count == reference.replica.pending_count


def test_conservation_holds_with_invalid_operations() -> None:
    for seed in range(20):
        node = replay(ledger_scenario(random.Random(seed)), [3, 5, 7])
        assert node.ledger.conserved()
        assert all(value >= 0 for value in node.ledger.balance.values())


def test_replica_loads_committed_state_after_a_crash() -> None:
    node = Driven()
    chain = enroll(ALICE)
    pool = pool_chain()
    grant = send(pool, ALICE, 10_000, "housing")
    node.feed([*chain.events, grant, claim(chain, grant)])
    restarted = Replica()
    node.store.load(restarted)
    assert restarted.network_id == GENESIS.id
    assert restarted.heads == node.replica.heads
    assert restarted.ledger.state_hash() == node.ledger.state_hash()
    assert isinstance(GENESIS.body, Genesis)


def test_a_claim_naming_something_other_than_a_send_is_refused() -> None:
    node = Driven()
    alice, bob = enroll(ALICE), enroll(BOB)
    node.feed([*alice.events, *bob.events])
    enrolment = bob.events[0]
    from protocol.events import Claim

    bogus = alice.next(Claim(enrolment.id, enrolment.author, enrolment.seq, 5))
    node.feed([bogus])
    assert node.replica.pending_count == 0
    assert "not_a_send" in node.rejected_codes()
    assert bogus.id not in node.ids()


def test_a_head_moved_back_by_a_fork_is_not_announced_until_reloaded() -> None:
    node = Driven()
    chain = Chain(NODE)
    post(chain, "1")
    post(chain, "2")
    node.feed(chain.events)
    branch = Chain(NODE)
    branch.next(Post("social", 3, "1b"))
    other_two = branch.next(Post("social", 3, "2b"))
    replica = node.replica
    replica.submit(OldEvent(other_two, chain.events[1], b"peer" * 8))
    plan = replica.build_plan(T0 + 1000)
    assert plan is not None
    # Before the rebuild reloads the head from the store, its id is unknown: not announced.
    assert all(len(head_id) == 32 for _, _, head_id in replica.head_triples())
    node.store.commit(plan)
    replica.commit(plan)
    node.store.rebuild(replica)
    assert any(author == NODE.public for author, _, _ in replica.head_triples())
