"""Ledger rules through the replica: each rule's typed error, conservation, forks and rebuilds."""

from __future__ import annotations

import pytest

from protocol.errors import (
    DoubleClaim,
    MalformedEvent,
    NotASend,
    NotEnrolled,
    NotRecipient,
    Overdraft,
)
from protocol.events import Claim, Enroll, Send
from protocol.ledger import Ledger, parse_period, period_memo
from tests.protocol.helpers import (
    GENESIS_BODY,
    POOL,
    Chain,
    Driven,
    claim,
    enroll,
    key,
    pool_chain,
    send,
)

ALICE, BOB, CAROL = key("alice"), key("bob"), key("carol")


def funded() -> tuple[Driven, Chain, Chain, Chain]:
    """A replica with alice and bob enrolled and alice holding 1,000.00 from the pool."""
    node = Driven()
    pool = pool_chain()
    alice, bob = enroll(ALICE), enroll(BOB)
    grant = send(pool, ALICE, 100_000, "housing")
    node.feed([*alice.events, *bob.events, grant, claim(alice, grant)])
    assert node.ledger.balance[ALICE.public] == 100_000
    return node, pool, alice, bob


def test_genesis_puts_the_total_in_the_pool() -> None:
    node = Driven()
    ledger = node.ledger
    assert ledger.pool == POOL.public
    assert ledger.balance[POOL.public] == GENESIS_BODY.total
    assert ledger.conserved()


def test_transfer_in_two_steps() -> None:
    node, _, alice, bob = funded()
    payment = send(alice, BOB, 25_050)
    node.feed([payment])
    ledger = node.ledger
    assert ledger.balance[ALICE.public] == 100_000 - 25_050
    assert ledger.balance.get(BOB.public, 0) == 0
    assert ledger.unclaimed_total() == 25_050
    assert ledger.conserved()
    node.feed([claim(bob, payment)])
    assert ledger.balance[BOB.public] == 25_050
    assert ledger.unclaimed_total() == 0
    assert ledger.conserved()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda alice, bob, claimed, open_: [send(alice, BOB, 100_001)], Overdraft),
        (lambda alice, bob, claimed, open_: [claim(alice, claimed)], DoubleClaim),
        (lambda alice, bob, claimed, open_: [claim(bob, open_)], NotRecipient),
        (lambda alice, bob, claimed, open_: [send(alice, ALICE, 1)], MalformedEvent),
        (lambda alice, bob, claimed, open_: [send(alice, BOB, 1, "weekly")], MalformedEvent),
        (
            lambda alice, bob, claimed, open_: [alice.next(Enroll("again", ALICE.public))],
            NotEnrolled,
        ),
        (
            lambda alice, bob, claimed, open_: [
                alice.next(Claim(open_.id, open_.author, open_.seq, 1))  # wrong amount
            ],
            NotASend,
        ),
    ],
)
def test_each_rule_rejects_with_its_typed_error(build, error) -> None:  # type: ignore[no-untyped-def]
    node, pool, alice, bob = funded()
    claimed = next(e for e in node.store.log.values() if e.kind == "send")
    open_send = send(pool, ALICE, 5_000, "investment")
    node.feed([open_send])
    before = node.ledger.state_hash()
    plans = node.feed(build(alice, bob, claimed, open_send))
    rejected = [r.error for plan in plans for r in plan.rejected]
    assert len(rejected) == 1
    assert type(rejected[0]) is error
    assert rejected[0].penalty > 0
    assert node.ledger.state_hash() == before
    assert node.ledger.conserved()


def test_money_only_for_enrolled_accounts() -> None:
    node, _, _, _ = funded()
    stranger = Chain(CAROL)
    node.feed([stranger.next(Send(ALICE.public, 1, "transfer", ""))])
    assert node.rejected_codes() == ["not_enrolled"]


def test_claim_of_unknown_send_waits_for_the_send() -> None:
    node, _pool, alice, bob = funded()
    payment = send(alice, BOB, 500)
    receipt = claim(bob, payment)
    node.feed([receipt])
    assert node.replica.pending_count == 1
    assert receipt.id not in node.ids()
    node.feed([payment])
    assert {payment.id, receipt.id} <= node.ids()
    assert node.replica.pending_count == 0
    assert node.ledger.balance[BOB.public] == 500


def test_local_overdraft_is_refused_before_signing() -> None:
    node, _, _, _ = funded()
    intent = node.author(ALICE, lambda _: Send(BOB.public, 100_001, "transfer", ""))
    assert isinstance(intent.error, Overdraft)
    assert intent.event is None
    # Nothing was consumed: the next transfer takes the same seq.
    ok = node.author(ALICE, lambda _: Send(BOB.public, 100, "transfer", ""))
    assert ok.event is not None
    assert ok.event.seq == 3  # enroll, claim, send


def test_fork_freezes_the_author_and_voids_what_depended_on_it() -> None:
    """A double spend: alice sends her whole balance to bob, and (a fork) to carol."""
    node = Driven()
    pool = pool_chain()
    alice, bob, carol = enroll(ALICE), enroll(BOB), enroll(CAROL)
    grant = send(pool, ALICE, 100_000, "housing")
    node.feed([*alice.events, *bob.events, *carol.events, grant, claim(alice, grant)])
    to_bob = send(alice, BOB, 100_000)
    bob_claim = claim(bob, to_bob)
    onward = send(bob, CAROL, 60_000)  # bob spends what he got
    node.feed([to_bob, bob_claim, onward, claim(carol, onward)])
    assert node.ledger.balance[CAROL.public] == 60_000
    to_carol = alice.fork(Send(CAROL.public, 100_000, "transfer", ""))
    node.feed([to_carol])
    ledger = node.ledger
    assert ALICE.public in node.store.forks
    assert ledger.frozen[ALICE.public] == to_bob.seq
    # alice keeps what she had before the fork, frozen; everything downstream is void.
    assert ledger.balance[ALICE.public] == 100_000
    assert ledger.balance[BOB.public] == 0
    assert ledger.balance[CAROL.public] == 0
    assert ledger.conserved()
    assert to_bob.id in node.store.archive and to_bob.id not in node.store.log
    # The events of bob and carol stay in the log (they were valid when made).
    assert {bob_claim.id, onward.id} <= node.ids()
    # A frozen author's later events are never applied.
    node.feed([alice.next(Send(BOB.public, 1, "transfer", ""))])
    assert ledger.balance[BOB.public] == 0


def test_claim_of_a_frozen_senders_send_waits_for_the_archived_send() -> None:
    node = Driven()
    pool = pool_chain()
    alice, bob = enroll(ALICE), enroll(BOB)
    grant = send(pool, ALICE, 100_000, "housing")
    node.feed([*alice.events, *bob.events, grant, claim(alice, grant)])
    to_bob = send(alice, BOB, 10)
    node.feed([alice.fork(Send(CAROL.public, 10, "transfer", "")), *[]])  # fork arrives first
    node.feed([to_bob])  # now the other branch: a fork proof, alice frozen at that seq
    assert ALICE.public in node.store.forks
    bob_claim = claim(bob, to_bob)
    node.feed([bob_claim])
    assert bob_claim.id in node.ids()
    assert node.ledger.balance[BOB.public] == 0  # void
    assert node.ledger.face[BOB.public] == 10
    assert node.ledger.conserved()


def test_rebuild_equals_incremental_state() -> None:
    node, _pool, alice, bob = funded()
    payment = send(alice, BOB, 1234)
    node.feed([payment, claim(bob, payment), send(bob, ALICE, 34)])
    incremental = node.ledger.state_hash()
    node.store.rebuild(node.replica)
    assert node.ledger.state_hash() == incremental


def test_distribution_bookkeeping() -> None:
    ledger = Ledger()
    assert ledger.period_at(0) == 0
    node, pool, _alice, _bob = funded()
    assert [(a.id, p) for a, p in node.ledger.pending_grants()] == [
        (ALICE.public, "investment"),
        (BOB.public, "housing"),
        (BOB.public, "investment"),
    ]
    weekly = pool.next(Send(ALICE.public, 80_000, "weekly", period_memo(3)))
    node.feed([weekly])
    assert node.ledger.weekly_paid[ALICE.public] == 3
    assert [a.id for a in node.ledger.weekly_due(3)] == [BOB.public]
    assert parse_period("period:12") == 12
    assert parse_period("period:x") is None
    assert parse_period("other") is None
