"""The link-state flood outbox: per neighbour, newest per origin, minus what the neighbour holds."""

from __future__ import annotations

from protocol.frames import MAX_LINK_STATES, LinkNeighbour, LinkState, LinkStates, encode_frame
from routing.flood import BATCH_BYTES, FloodOutbox, record_bytes
from tests.routing.helpers import node, signed

A, B, C = node("a"), node("b"), node("c")


def test_a_record_waits_for_every_neighbour_given_and_the_outbox_empties() -> None:
    outbox = FloodOutbox()
    assert not outbox
    record = signed("x", 1)
    outbox.queue(record, [A, B])
    assert outbox
    assert outbox.take() == {A: [(record,)], B: [(record,)]}
    assert not outbox
    assert outbox.take() == {}


def test_only_the_newest_record_of_an_origin_waits() -> None:
    outbox = FloodOutbox()
    old, new = signed("x", 1), signed("x", 2)
    outbox.queue(new, [A])
    outbox.queue(old, [A])
    assert outbox.take() == {A: [(new,)]}
    outbox.queue(old, [A])
    outbox.queue(new, [A])
    assert outbox.take() == {A: [(new,)]}


def test_a_neighbour_that_sent_a_record_is_not_sent_it_nor_an_older_one() -> None:
    outbox = FloodOutbox()
    x1, x2, y1 = signed("x", 1), signed("x", 2), signed("y", 1)
    outbox.queue(x2, [A, B])
    outbox.queue(y1, [A])
    outbox.held_by(A, x1)  # an older copy proves nothing about x2
    outbox.held_by(C, x2)  # nothing waits for C
    outbox.held_by(A, x2)
    outbox.held_by(A, y1)
    assert outbox.take() == {B: [(x2,)]}


def test_a_neighbour_that_left_is_forgotten() -> None:
    outbox = FloodOutbox()
    outbox.queue(signed("x", 1), [A, B])
    outbox.forget(A)
    assert set(outbox.take()) == {B}


def test_batches_respect_the_record_count_and_byte_budget() -> None:
    outbox = FloodOutbox()
    many = [signed(f"n{i}", 1) for i in range(MAX_LINK_STATES + 5)]
    for record in many:
        outbox.queue(record, [A])
    batches = outbox.take()[A]
    assert len(batches) == 2
    assert all(len(b) <= MAX_LINK_STATES for b in batches)
    assert all(sum(record_bytes(r) for r in b) <= BATCH_BYTES for b in batches)
    assert [r for b in batches for r in b] == many
    wide = tuple(LinkNeighbour(node(f"w{i}"), 1_000, 0) for i in range(60))
    heavy = [signed(f"h{i}", 1, *wide) for i in range(8)]
    for record in heavy:
        outbox.queue(record, [B])
    batches = outbox.take()[B]
    assert len(batches) > 1
    for batch in batches:
        encoded = len(encode_frame(LinkStates(batch)))
        assert sum(record_bytes(r) for r in batch) <= BATCH_BYTES or len(batch) == 1
        assert encoded <= BATCH_BYTES + 16


def test_record_bytes_is_an_upper_bound() -> None:
    wide = tuple(LinkNeighbour(node(f"w{i}"), 3_600_000_000, 1000) for i in range(256))
    for neighbours in ((), wide[:1], wide):
        record = signed("x", (1 << 63) - 1, *neighbours, ts=(1 << 53) - 1)
        assert len(encode_frame(record)) <= record_bytes(record)
        assert isinstance(record, LinkState)
