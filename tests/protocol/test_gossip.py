"""Sessions and gossip between real cores on simulated links: handshake, hostile frames, penalties,
back-pressure, Plumtree, anti-entropy, keep-alive and forks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from protocol import codec
from protocol.errors import CloseReason, RateLimited
from protocol.events import ZERO_ID, Event, Genesis, Post
from protocol.frames import (
    Credit,
    Events,
    Have,
    Hello,
    Ping,
    decode_frame,
    encode_frame,
)
from protocol.identity import SigningKey
from protocol.limits import (
    HANDSHAKE_TIMEOUT_S,
    INITIAL_EVENT_CREDIT,
    MAX_OUTBOUND_EVENTS,
    PEER_DEAD_S,
    PROTOCOL_VERSION,
)
from protocol.session import Session, SessionLimits, transitions_diagram
from protocol.sim import SimNode, Simulation, cached_verification
from tests.protocol.helpers import T0

GENESIS_BODY = Genesis("gossip test", 10**15, 80_000, 10_400_000, 10_400_000, 60)


@pytest.fixture(autouse=True)
def _fast_verification() -> Iterator[None]:
    with cached_verification():
        yield


def pair(*, genesis: bool = True, seed: int = 1) -> Simulation:
    sim = Simulation(2, seed=seed)
    if genesis:
        sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    sim.connect(0, 1)
    assert sim.run_until(lambda: all(n.gossip.by_peer for n in sim.nodes), max_time=5)
    if genesis:
        assert sim.run_until(lambda: sim.nodes[1].replica.network_id is not None, max_time=5)
    return sim


def session_of(node: SimNode, peer: int) -> Session:
    return node.gossip.sessions[node.peer_to_handle[peer]]


def lone_session(initial_credit: int = INITIAL_EVENT_CREDIT) -> Session:
    """A session with no peer behind it, to drive its queues by hand."""
    return Session(
        1,
        outbound=True,
        address="x",
        local_fingerprint="a",
        remote_fingerprint="b",
        limits=SessionLimits(initial_credit=initial_credit),
        now=0.0,
    )


def closed_with(sim: Simulation, node: int, reason: CloseReason) -> bool:
    return any(getattr(e, "reason", None) is reason for e in sim.nodes[node].penalties) or any(
        s.close_reason is reason for s in sim.nodes[node].gossip.sessions.values()
    )


def test_transition_table_draws_itself() -> None:
    diagram = transitions_diagram()
    assert "handshaking --> active" in diagram
    assert "active --> closed" in diagram


def test_handshake_and_genesis_adoption() -> None:
    sim = pair()
    a, b = sim.nodes
    assert a.gossip.by_peer.keys() == {b.key.public}
    assert b.replica.network_id == a.replica.network_id
    assert b.store.genesis is not None


def test_late_genesis_is_adopted_through_gossip() -> None:
    sim = pair(genesis=False)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    assert sim.run_until(lambda: sim.nodes[1].replica.network_id is not None, max_time=5)


def test_two_meshes_do_not_connect() -> None:
    sim = Simulation(2, seed=2)
    sim.found(0, SigningKey.for_label("pool-a"), GENESIS_BODY)
    sim.found(1, SigningKey.for_label("pool-b"), GENESIS_BODY)
    sim.connect(0, 1)
    sim.run_for(1.0)
    assert not sim.nodes[0].gossip.by_peer
    assert not sim.nodes[1].gossip.by_peer
    assert sim.nodes[0].replica.network_id != sim.nodes[1].replica.network_id


def _handshaking_session(sim: Simulation) -> tuple[SimNode, int]:
    node = sim.nodes[1]
    handle = node.gossip.open_session(
        sim.now,
        outbound=False,
        address="test",
        local_fingerprint="sha-256 BB",
        remote_fingerprint="sha-256 AA",
    )
    node.gossip.frames_to_send()
    return node, handle


def test_hello_bound_to_other_certificates_is_refused() -> None:
    sim = pair()
    node, handle = _handshaking_session(sim)
    attacker = SigningKey.for_label("mitm")
    hello = Hello.create(
        attacker,
        network_id=ZERO_ID,
        genesis=b"",
        nonce=bytes(16),
        local_fingerprint="sha-256 CC",  # not the certificate this connection sees
        remote_fingerprint="sha-256 BB",
        name="x",
        mesh_port=0,
        credit=10,
    )
    node.gossip.receive(handle, encode_frame(hello), sim.now)
    session = node.gossip.sessions[handle]
    assert session.closed
    assert session.close_reason is CloseReason.HANDSHAKE_FAILED
    assert attacker.public not in node.gossip.by_peer


def test_hello_with_a_bad_signature_is_refused() -> None:
    sim = pair()
    node, handle = _handshaking_session(sim)
    good = Hello.create(
        SigningKey.for_label("peer"),
        network_id=ZERO_ID,
        genesis=b"",
        nonce=bytes(16),
        local_fingerprint="sha-256 AA",
        remote_fingerprint="sha-256 BB",
        name="x",
        mesh_port=0,
        credit=10,
    )
    forged = Hello(*[*good.fields()[:6], "other name", *good.fields()[7:]])  # type: ignore[arg-type]
    node.gossip.receive(handle, encode_frame(forged), sim.now)
    assert node.gossip.sessions[handle].close_reason is CloseReason.HANDSHAKE_FAILED


def test_frames_before_hello_are_penalised() -> None:
    sim = pair()
    node, handle = _handshaking_session(sim)
    node.gossip.receive(handle, encode_frame(Ping(1)), sim.now)
    assert node.gossip.sessions[handle].score < 0


def test_handshake_times_out() -> None:
    sim = pair()
    node, handle = _handshaking_session(sim)
    node.gossip.handle_timer(sim.now + HANDSHAKE_TIMEOUT_S + 0.1)
    assert node.gossip.sessions[handle].close_reason is CloseReason.TIMEOUT


def test_unknown_version_ends_the_session() -> None:
    sim = pair()
    sim.deliver_raw(0, 1, codec.encode([PROTOCOL_VERSION + 1, 7, 1]))
    session = sim.nodes[1].gossip.sessions
    assert all(s.close_reason is CloseReason.INCOMPATIBLE_VERSION for s in session.values())


def test_unknown_frame_type_gets_a_typed_error_and_a_penalty() -> None:
    sim = pair()
    before = session_of(sim.nodes[1], 0).score
    sim.deliver_raw(0, 1, codec.encode([PROTOCOL_VERSION, 99]))
    session = session_of(sim.nodes[1], 0)
    assert session.score < before
    assert session.active
    assert sim.run_until(
        lambda: sim.nodes[0].gossip.stats.frames_in.get("Error", 0) == 1, max_time=1
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff",
        b"\x82\x01",
        codec.encode([PROTOCOL_VERSION, 7]),  # PING without its nonce
        codec.encode([PROTOCOL_VERSION, 7, 1, 2]),  # an extra field
        codec.encode([PROTOCOL_VERSION, 2, [b"not an event"], False]),
        b"\x00" * 70_000,
    ],
)
def test_malformed_frames_cost_score_not_the_node(data: bytes) -> None:
    sim = pair()
    sim.deliver_raw(0, 1, data)
    penalties = sim.nodes[1].penalties
    assert penalties
    assert penalties[-1].points > 0
    assert sim.nodes[1].alive


def test_repeated_garbage_gets_the_peer_banned() -> None:
    sim = pair()
    peer_id = sim.nodes[0].key.public
    for _ in range(10):
        sim.deliver_raw(0, 1, b"\xff garbage")
    node = sim.nodes[1]
    assert node.gossip.is_banned(peer_id, sim.now)
    assert peer_id not in node.gossip.by_peer
    # A banned node cannot come straight back.
    sim.run_for(2.0)
    assert peer_id not in node.gossip.by_peer


def test_bad_signatures_are_penalised_hard() -> None:
    sim = pair()
    network = sim.nodes[1].replica.network_id
    assert network is not None
    author = SigningKey.for_label("liar")
    event = Event.create(author, network, seq=1, prev=ZERO_ID, ts=T0, body=Post("social", 3, "x"))
    tampered = event.raw[:-1] + bytes([event.raw[-1] ^ 1])
    sim.deliver_raw(0, 1, encode_frame(Events((tampered,))))
    assert sim.nodes[1].penalties[-1].code == "bad_signature"
    assert event.id not in sim.nodes[1].store.log


def test_flood_above_the_rate_limit_is_refused() -> None:
    sim = pair()
    node = sim.nodes[1]
    for nonce in range(2_000):
        sim.deliver_raw(0, 1, encode_frame(Ping(nonce)))
    assert any(p.code == "rate_limited" for p in node.penalties)


def test_pushing_beyond_the_granted_credit_is_refused() -> None:
    session = lone_session()
    session.take_events(INITIAL_EVENT_CREDIT)
    with pytest.raises(RateLimited, match="beyond the granted credit"):
        session.take_events(1)
    # Once the events are processed and credited back, the peer may send again.
    session.grant(INITIAL_EVENT_CREDIT + 1)
    session.take_events(INITIAL_EVENT_CREDIT)


def test_back_pressure_queues_by_priority() -> None:
    session = lone_session()
    session.credit_out = 0
    session.state = session.state.__class__.ACTIVE
    for priority in (1, 5, 3):
        session.queue_event(bytes([priority]) * 10, priority)
    assert session.drain() == []  # no credit: nothing goes
    assert session.queued_events == 3
    session.add_credit(2)
    (frame,) = session.drain()
    decoded = codec.decode(frame)
    assert isinstance(decoded, list)
    assert decoded[2] == [b"\x05" * 10, b"\x03" * 10]  # highest priority first
    assert session.queued_events == 1


def test_a_full_queue_demotes_its_newest_lowest_priority_events_to_announcements() -> None:
    """Beyond MAX_OUTBOUND_EVENTS the event that would have gone out last is announced instead;
    what stays goes out highest priority first, oldest first within a priority."""
    session = lone_session()
    session.credit_out = 0
    session.state = session.state.__class__.ACTIVE
    low = [b"low %d" % k for k in range(3_000)]
    high = [b"high %d" % k for k in range(3_000)]
    for raw in low:
        session.queue_event(raw, 1)
    for raw in high:
        session.queue_event(raw, 5)
    assert session.queued_events == MAX_OUTBOUND_EVENTS
    kept_low = MAX_OUTBOUND_EVENTS - len(high)
    session.flush_announcements()
    announced = [
        event_id
        for frame in map(decode_frame, session.drain())
        if isinstance(frame, Have)
        for event_id in frame.ids
    ]
    assert announced == [hashlib.sha256(raw).digest() for raw in reversed(low[kept_low:])]
    session.add_credit(MAX_OUTBOUND_EVENTS)
    sent = [
        raw
        for frame in map(decode_frame, session.drain())
        if isinstance(frame, Events)
        for raw in frame.events
    ]
    assert sent == high + low[:kept_low]
    assert session.queued_events == 0


def test_credit_is_returned_in_batches() -> None:
    session = lone_session(8)
    session.take_events(8)
    session.grant(1)
    assert session.drain() == []
    session.grant(1)
    (frame,) = session.drain()
    assert codec.decode(frame) == [PROTOCOL_VERSION, int(Credit.TYPE), 2]


def test_everything_published_reaches_everyone_and_duplicates_prune() -> None:
    sim = Simulation(6, seed=5)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    for a in range(6):
        for b in range(a + 1, 6):
            sim.connect(a, b)  # a full mesh: pushes duplicate until the tree forms
    assert sim.run_until(lambda: all(n.replica.network_id for n in sim.nodes), max_time=5)
    ids = set()
    for i in range(30):
        intent = sim.post(i % 6, f"m{i}")
        assert intent.event is not None
        ids.add(intent.event.id)
        sim.run_for(0.05)
    assert sim.run_until(lambda: sim.have_all(ids), max_time=sim.now + 10)
    prunes = sum(n.gossip.stats.frames_in.get("Prune", 0) for n in sim.nodes)
    assert prunes > 0
    lazy_links = sum(1 for n in sim.nodes for s in n.gossip.sessions.values() if not s.eager)
    assert lazy_links > 0
    assert sim.duplicates_per_delivery() < 2.0


def test_announced_event_is_fetched_when_the_push_does_not_come() -> None:
    sim = pair()
    sim.run_for(1.0)  # let the first anti-entropy round finish
    a, b = sim.nodes
    session_of(a, 1).eager = False  # a only announces to b
    intent = sim.post(0, "lazy")
    assert intent.event is not None
    assert sim.run_until(lambda: intent.event.id in b.store.log, max_time=sim.now + 2)  # type: ignore[union-attr]
    assert b.gossip.stats.wants_sent >= 1
    assert session_of(a, 1).eager  # the WANT grafted the link back into the tree


def test_anti_entropy_catches_up_a_late_joiner() -> None:
    sim = Simulation(2, seed=3)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    ids = {sim.post(0, f"before {i}").event.id for i in range(300)}  # type: ignore[union-attr]
    sim.connect(0, 1)
    assert sim.run_until(lambda: sim.have_all(ids), max_time=20)
    assert sim.converged()
    assert sim.nodes[1].gossip.stats.ranges_requested >= 2  # bounded batches


def chain(author: SigningKey, network: bytes, count: int) -> list[Event]:
    events: list[Event] = []
    prev = ZERO_ID
    for seq in range(1, count + 1):
        body = Post("social", 3, f"chain {seq} " + "x" * 200)
        events.append(Event.create(author, network, seq=seq, prev=prev, ts=T0, body=body))
        prev = events[-1].id
    return events


def test_a_long_chain_catches_up_within_one_anti_entropy_round() -> None:
    """A reply that leaves an author behind the head a peer announced asks for the next stretch
    at once: 2,000 events are ~12 replies, not ~12 anti-entropy rounds."""
    sim = Simulation(2, seed=3, anti_entropy_interval_s=60.0)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    network = sim.nodes[0].replica.network_id
    assert network is not None
    events = chain(SigningKey.for_label("prolific"), network, 2_000)
    for event in events:
        sim.inject(0, event)
    sim.connect(0, 1)  # the round at activation finds the chain; the next is 48 s or more away
    assert sim.run_until(lambda: sim.have_all({e.id for e in events}), max_time=sim.now + 30)
    assert sim.nodes[1].gossip.stats.ranges_requested >= 2_000 // 256


def test_events_beyond_a_full_push_queue_arrive_by_announcement() -> None:
    """Past MAX_OUTBOUND_EVENTS a push queue demotes events to HAVE; those announcements must be
    sent (and the events fetched) without waiting for anti-entropy."""
    sim = Simulation(2, seed=4, anti_entropy_interval_s=60.0)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    sim.connect(0, 1)
    assert sim.run_until(lambda: sim.nodes[1].replica.network_id is not None, max_time=5)
    network = sim.nodes[0].replica.network_id
    assert network is not None
    events = chain(SigningKey.for_label("burst"), network, MAX_OUTBOUND_EVENTS + 1_000)
    start = sim.now
    for event in events:
        sim.inject(0, event)  # all at once: the peer's credit runs out after the first 512
    assert session_of(sim.nodes[0], 1).queued_events == MAX_OUTBOUND_EVENTS
    assert sim.run_until(lambda: sim.have_all({e.id for e in events}), max_time=start + 30)


def test_a_gap_nobody_can_fill_costs_one_request_and_no_catch_up() -> None:
    """An event's seq is its sender's word: one far ahead of anything stored is held and its gap
    asked for once, but it must not leave the node catching up (or asking) forever."""
    sim = pair()
    network = sim.nodes[0].replica.network_id
    assert network is not None
    far = Event.create(
        SigningKey.for_label("boaster"),
        network,
        seq=10**9,
        prev=bytes([1]) * 32,
        ts=T0,
        body=Post("social", 3, "from the future of this chain"),
    )
    late = sim.nodes[1].gossip
    before = late.stats.ranges_requested
    sim.deliver_raw(0, 1, encode_frame(Events((far.raw,))))
    sim.run_for(5.0)
    assert sim.nodes[1].replica.is_held(far.author, far.seq)
    assert late.stats.ranges_requested - before == 1
    assert not late.sync_progress().syncing


def test_dead_peer_is_detected_and_comes_back() -> None:
    sim = pair()
    start = sim.now
    sim.pause(1)
    assert sim.run_until(lambda: not sim.nodes[0].gossip.by_peer, max_time=start + PEER_DEAD_S + 6)
    assert sim.now - start >= PEER_DEAD_S - 1
    sim.resume(1)
    assert sim.run_until(lambda: all(n.gossip.by_peer for n in sim.nodes), max_time=sim.now + 5)


def test_duplicate_connections_settle_on_one() -> None:
    sim = pair()
    sim._dial(0, 1)  # already up: no second link in the simulator
    a, b = sim.nodes
    extra_a = a.gossip.open_session(
        sim.now, outbound=True, address="x", local_fingerprint="f1", remote_fingerprint="f2"
    )
    assert extra_a
    assert len(a.gossip.by_peer) == 1
    assert len(b.gossip.by_peer) == 1


def test_fork_between_two_nodes_is_detected_on_both() -> None:
    sim = Simulation(2, seed=9)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    sim.connect(0, 1)
    assert sim.run_until(lambda: sim.nodes[1].replica.network_id is not None, max_time=5)
    sim.partition([[0], [1]])
    network = sim.nodes[0].replica.network_id
    assert network is not None
    forker = SigningKey.for_label("forker")
    one = Event.create(forker, network, seq=1, prev=ZERO_ID, ts=T0, body=Post("social", 3, "one"))
    two = Event.create(forker, network, seq=1, prev=ZERO_ID, ts=T0, body=Post("social", 3, "two"))
    sim.inject(0, one)
    sim.inject(1, two)
    sim.heal()
    assert sim.run_until(
        lambda: all(forker.public in n.store.forks for n in sim.nodes) and sim.converged(),
        max_time=sim.now + 10,
    )
    for node in sim.nodes:
        assert node.replica.ledger.frozen[forker.public] == 1


def test_peer_limit_refuses_newcomers() -> None:
    sim = Simulation(4, seed=4, max_peers=2)
    for b in (1, 2, 3):
        sim.connect(0, b)
    sim.run_for(1.0)
    assert len(sim.nodes[0].gossip.by_peer) == 2


def test_bye_detail_is_cut_to_bytes_not_characters() -> None:
    session = lone_session()
    session.close(CloseReason.PROTOCOL_VIOLATION, "é" * 300)
    (frame,) = session.drain()
    from protocol.frames import decode_frame

    decoded = decode_frame(frame)
    assert len(decoded.detail.encode()) <= 200  # type: ignore[union-attr]


def test_range_requests_in_flight_are_bounded() -> None:
    sim = pair()
    _a, b = sim.nodes
    session = session_of(b, 0)
    from protocol.frames import FeedHead, Heads, heads_digest
    from protocol.limits import MAX_RANGES_IN_FLIGHT

    heads = tuple(FeedHead(bytes([i]) * 32, 5, bytes([i]) * 32) for i in range(1, 51))
    frame = Heads(heads_digest([(h.author, h.seq, h.head_id) for h in heads]), heads, True, 0, True)
    b.gossip.receive(session.handle, encode_frame(frame), sim.now)
    sent = [f for f in b.gossip.frames_to_send() if codec.decode(f[1])[1] == 6]  # type: ignore[index]
    assert len(sent) == MAX_RANGES_IN_FLIGHT
    assert len(session.ranges_waiting) == 50 - MAX_RANGES_IN_FLIGHT


def test_catch_up_progress_counts_down() -> None:
    sim = Simulation(2, seed=8)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    for i in range(600):
        sim.post(0, f"before {i}")
    sim.connect(0, 1)
    late = sim.nodes[1].gossip
    seen = []

    def progress() -> bool:
        state = late.sync_progress()
        seen.append(state)
        return len(sim.nodes[1].store.log) >= 601 and not state.syncing

    assert sim.run_until(progress, max_time=30)
    assert any(s.syncing and 0 < s.percent < 100 for s in seen)
    assert seen[-1].percent == 100.0


def test_a_relay_cannot_claim_another_origin() -> None:
    sim = pair()
    network = sim.nodes[1].replica.network_id
    assert network is not None
    from protocol.frames import Routed

    honest = Routed.create(
        SigningKey.for_label("origin"),
        network_id=network,
        dst=sim.nodes[1].key.public,
        ttl=8,
        msg_id=bytes(16),
        kind="direct",
        payload=b"hi",
    )
    from dataclasses import replace

    forged = replace(honest, src=SigningKey.for_label("someone else").public)
    sim.deliver_raw(0, 1, encode_frame(forged))
    assert sim.nodes[1].penalties[-1].points == 30
    sim.deliver_raw(0, 1, encode_frame(replace(honest, network_id=b"\x07" * 32)))
    assert "another mesh" in sim.nodes[1].penalties[-1].detail


def test_a_node_without_a_network_takes_what_is_addressed_to_it_and_drops_the_rest() -> None:
    """Two nodes without a network; one of them relays frames of a mesh that reached it first.
    The other has no network to tell them apart by, so no penalty: it takes a ROUTED frame for
    itself (an offer it may answer) and drops the rest without keeping it (link states it would
    pass on to peers of the mesh it joins, ROUTED frames for others). Once it has a network,
    frames of another mesh are penalised again."""
    from protocol.frames import LinkState, Routed

    sim = pair(genesis=False)
    joining = sim.nodes[1]
    assert joining.replica.network_id is None
    network = b"\x05" * 32

    def routed(dst: bytes) -> Routed:
        return Routed.create(
            SigningKey.for_label("origin"),
            network_id=network,
            dst=dst,
            ttl=8,
            msg_id=bytes(16),
            kind="signal",
            payload=b"offer",
        )

    for_it, for_another = routed(joining.key.public), routed(SigningKey.for_label("x").public)
    record = LinkState.create(
        SigningKey.for_label("far"), seq=1, ts=T0, neighbours=(), network_id=network
    )
    for frame in (for_another, record, for_it):
        sim.deliver_raw(0, 1, encode_frame(frame))
    assert joining.penalties == []
    assert [event.frame for event in joining.shell_frames] == [for_it]
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    assert sim.run_until(lambda: joining.replica.network_id is not None, max_time=5)
    sim.deliver_raw(0, 1, encode_frame(for_it))
    assert "another mesh" in joining.penalties[-1].detail


def test_copies_of_a_known_link_state_record_are_dropped_before_verifying() -> None:
    """Flooding brings each record once per neighbour: the routing layer says which it holds,
    and those copies cost no signature check (a forged copy of a held record changes nothing);
    a record it does not hold is still verified and a bad signature still penalised."""
    from dataclasses import replace

    from protocol.frames import LinkNeighbour, LinkState

    sim = pair()
    network = sim.nodes[1].replica.network_id
    assert network is not None
    record = LinkState.create(
        SigningKey.for_label("router"),
        seq=7,
        ts=T0,
        neighbours=(LinkNeighbour(sim.nodes[0].key.public, 1_000, 0),),
        network_id=network,
    )
    forged = replace(record, sig=bytes(64))
    receiver = sim.nodes[1]
    receiver.gossip.link_state_known = lambda _peer, frame: frame.seq <= 7
    before = len(receiver.penalties)
    sim.deliver_raw(0, 1, encode_frame(forged))
    assert len(receiver.penalties) == before
    receiver.gossip.link_state_known = lambda _peer, frame: False
    sim.deliver_raw(0, 1, encode_frame(forged))
    assert receiver.penalties[-1].points == 30


def test_announcements_the_peer_made_itself_are_withdrawn() -> None:
    """A HAVE from the peer, arriving while ours to it wait for their batch, cancels ours of the
    same events: the peer holds them, so our announcement would only cost a frame."""
    from protocol.frames import decode_frame

    session = lone_session()
    first, second, third = (bytes([n]) * 32 for n in (1, 2, 3))
    for event_id in (first, second, third):
        session.announce(event_id)
    session.withdraw_announcements((first, third))
    session.flush_announcements()
    (frame,) = [decode_frame(raw) for raw in session.drain()]
    assert isinstance(frame, Have) and frame.ids == (second,)
    session.withdraw_announcements((second,))
    session.flush_announcements()
    assert session.drain() == []


def test_an_event_is_not_forwarded_to_a_peer_that_announced_it_first() -> None:
    """c announces X to b before X reaches b from a: b then sends X to nobody (a sent it, c has
    it), neither as a push nor as an announcement."""
    sim = Simulation(3, seed=5)
    sim.found(0, SigningKey.for_label("pool"), GENESIS_BODY)
    sim.connect(0, 1)
    sim.connect(1, 2)
    assert sim.run_until(lambda: all(n.replica.network_id for n in sim.nodes), max_time=5)
    sim.run_for(1.0)
    b = sim.nodes[1]
    network = b.replica.network_id
    assert network is not None
    author = SigningKey.for_label("writer")
    event = Event.create(author, network, seq=1, prev=ZERO_ID, ts=T0, body=Post("social", 3, "x"))
    sent_before = b.gossip.stats.events_pushed + b.gossip.stats.events_announced
    sim.deliver_raw(2, 1, encode_frame(Have((event.id,))))
    sim.deliver_raw(0, 1, encode_frame(Events((event.raw,))))
    assert sim.run_until(lambda: event.id in b.store.log, max_time=sim.now + 2)
    sim.run_for(0.5)
    assert b.gossip.stats.events_pushed + b.gossip.stats.events_announced == sent_before


def test_link_states_frame_hands_each_record_on_as_if_it_came_alone() -> None:
    """A LINK_STATES batch goes record by record: held copies are dropped unverified (and the
    routing layer learns that the sender holds them), new ones are verified and passed to the
    shell, and a forged one is penalised like a forged LINK_STATE."""
    from dataclasses import replace

    from protocol.frames import LinkNeighbour, LinkState, LinkStates

    sim = pair()
    network = sim.nodes[1].replica.network_id
    assert network is not None
    sender, receiver = sim.nodes
    records = [
        LinkState.create(
            SigningKey.for_label(f"router-{n}"),
            seq=5,
            ts=T0,
            neighbours=(LinkNeighbour(sender.key.public, 1_000, 0),),
            network_id=network,
        )
        for n in range(3)
    ]
    held = records[0]
    asked: list[tuple[bytes | None, bytes]] = []

    def known(peer: bytes | None, record: LinkState) -> bool:
        asked.append((peer, record.node))
        return record is held or record.node == held.node

    receiver.gossip.link_state_known = known
    before = len(receiver.penalties)
    sim.deliver_raw(0, 1, encode_frame(LinkStates(tuple(records))))
    assert asked == [(sender.key.public, r.node) for r in records]
    passed_on = [f.frame for f in receiver.shell_frames if isinstance(f.frame, LinkState)]
    assert passed_on == records[1:]
    assert len(receiver.penalties) == before
    forged = replace(records[2], seq=6, sig=bytes(64))
    sim.deliver_raw(0, 1, encode_frame(LinkStates((records[1], forged))))
    assert receiver.penalties[-1].points == 30


def test_base_rtt_is_the_lowest_of_the_last_pings() -> None:
    """Routing weighs a link by the path's own delay: a busy moment's queueing (one slow pong)
    moves the smoothed RTT but not the base RTT, and old samples leave the window."""
    from protocol.session import BASE_RTT_WINDOW

    session = lone_session()
    assert session.base_rtt_s is None

    def pong(nonce: int, rtt_s: float) -> None:
        session._ping_sent_at[nonce] = 100.0
        session.note_pong(nonce, 100.0 + rtt_s)

    pong(1, 0.004)
    pong(2, 0.250)
    assert session.base_rtt_s == pytest.approx(0.004)
    assert session.rtt_s is not None and session.rtt_s > 0.03
    for nonce in range(3, 3 + BASE_RTT_WINDOW):
        pong(nonce, 0.020)
    assert session.base_rtt_s == pytest.approx(0.020)
