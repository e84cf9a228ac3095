"""Deterministic simulations: many real protocol cores, lossy links, partitions, crashes, forks.

Every assertion message carries the seed; `Simulation(size, seed)` replays the run exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.events import ZERO_ID, Event, Genesis, Post, Send
from protocol.identity import SigningKey
from protocol.sim import EPOCH_MS, LinkModel, Simulation, cached_verification

GENESIS_BODY = Genesis("sim", 1_900_000_000_000_000, 80_000, 10_400_000, 10_400_000, 60)


@pytest.fixture(autouse=True)
def _fast_verification() -> Iterator[None]:
    with cached_verification():
        yield


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """Figures go to the terminal even when pytest captures output."""
    with capsys.disabled():
        print(f"\n    [sim] {text}")


def founded(size: int, seed: int, *, degree: int, link: LinkModel | None = None) -> Simulation:
    sim = Simulation(size, seed=seed, link=link)
    sim.random_topology(degree)
    sim.found(0, SigningKey.for_label(f"pool-{seed}"), GENESIS_BODY)
    assert sim.run_until(lambda: all(n.replica.network_id for n in sim.nodes), max_time=30), (
        f"seed {seed}: genesis did not spread"
    )
    return sim


def fork_pair(sim: Simulation, label: str) -> tuple[SigningKey, Event, Event]:
    network = sim.nodes[0].replica.network_id
    assert network is not None
    key = SigningKey.for_label(label)
    first = Event.create(
        key, network, seq=1, prev=ZERO_ID, ts=EPOCH_MS, body=Post("social", 3, "A")
    )
    second = Event.create(
        key, network, seq=1, prev=ZERO_ID, ts=EPOCH_MS, body=Post("social", 3, "B")
    )
    return key, first, second


def publish_bursts(sim: Simulation, count: int, ids: set[bytes], *, burst: int = 10) -> None:
    for start in range(0, count, burst):
        for i in range(start, min(count, start + burst)):
            author = sim.rng.choice([node.index for node in sim.alive()])
            intent = sim.post(author, f"message {len(ids)} {i}")
            assert intent.event is not None, f"seed {sim.seed}: {intent.error}"
            ids.add(intent.event.id)
        sim.run_for(0.01)


@pytest.mark.slow
def test_hundred_nodes_thousand_events_loss_and_a_healed_partition(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = 7
    sim = founded(100, seed, degree=4, link=LinkModel(loss=0.10))
    ids: set[bytes] = set()
    publish_bursts(sim, 500, ids)
    halves = [list(range(50)), list(range(50, 100))]
    sim.partition(halves)
    forker, left, right = fork_pair(sim, f"forker-{seed}")
    sim.inject(3, left)
    sim.inject(77, right)
    publish_bursts(sim, 500, ids)
    sim.run_for(1.0)
    healed_at = sim.now
    sim.heal()

    def done() -> bool:
        return (
            sim.have_all(ids)
            and sim.converged()
            and all(forker.public in n.store.forks for n in sim.nodes)
        )

    assert sim.run_until(done, max_time=healed_at + 60), f"seed {seed}: no convergence"
    assert len(ids) == 1_000
    assert all(n.replica.ledger.frozen.get(forker.public) == 1 for n in sim.nodes)
    assert all(not n.penalties for n in sim.nodes), f"seed {seed}: honest nodes were penalised"
    mean_delay = (sim.link.delay_min + sim.link.delay_max) / 2
    converge_s = sim.now - healed_at
    duplicates = sim.duplicates_per_delivery()
    report(
        capsys,
        f"100 nodes, 1000 events, 10% loss: converged {converge_s:.3f} s after healing "
        f"(~{converge_s / mean_delay:.0f} one-way link delays), "
        f"{duplicates:.2f} payload duplicates per delivery, {sim.frames_delivered} frames, "
        f"trace {sim.trace_digest()[:16]}",
    )
    assert duplicates <= 2.0


def scenario(seed: int) -> Simulation:
    """A smaller run with every fault: loss, a partition, a fork, a crash and a restart."""
    sim = founded(30, seed, degree=3, link=LinkModel(loss=0.10))
    ids: set[bytes] = set()
    publish_bursts(sim, 60, ids)
    sim.partition([list(range(15)), list(range(15, 30))])
    forker, left, right = fork_pair(sim, f"forker-{seed}")
    sim.inject(1, left)
    sim.inject(20, right)
    sim.crash(5)
    publish_bursts(sim, 60, ids)
    sim.restart(5)
    sim.heal()
    assert sim.run_until(
        lambda: (
            sim.have_all(ids)
            and sim.converged()
            and all(forker.public in n.store.forks for n in sim.nodes)
        ),
        max_time=sim.now + 60,
    ), f"seed {seed}: no convergence"
    return sim


def test_same_seed_replays_byte_for_byte() -> None:
    first, second, other = scenario(21), scenario(21), scenario(22)
    assert first.trace_digest() == second.trace_digest()
    assert first.frames_delivered == second.frames_delivered
    assert first.now == second.now
    assert other.trace_digest() != first.trace_digest()


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_crash_keeps_what_was_accepted_and_catches_up(seed: int) -> None:
    sim = founded(12, seed, degree=3, link=LinkModel(loss=0.05))
    before: set[bytes] = set()
    publish_bursts(sim, 40, before)
    assert sim.run_until(lambda: sim.have_all(before), max_time=sim.now + 20), f"seed {seed}"
    victim = sim.nodes[4]
    stored = set(victim.store.log)
    sim.crash(4)
    after: set[bytes] = set()
    for i in range(30):
        intent = sim.post(sim.rng.choice([0, 1, 2, 3, 5, 6]), f"while down {i}")
        assert intent.event is not None
        after.add(intent.event.id)
        sim.run_for(0.01)
    assert stored <= set(sim.nodes[4].store.log), f"seed {seed}: a crash lost accepted events"
    sim.restart(4)
    assert sim.run_until(
        lambda: sim.have_all(before | after) and sim.converged(), max_time=sim.now + 30
    ), f"seed {seed}: the restarted node did not catch up"


def test_double_spend_across_a_partition(capsys: pytest.CaptureFixture[str]) -> None:
    """A fork that sends the same money into two halves of the mesh: after healing, every node
    freezes the author, voids both sends and agrees on one ledger state hash."""
    seed = 41
    sim = founded(20, seed, degree=3)
    pool = SigningKey.for_label(f"pool-{seed}")
    alice, bob, carol = (SigningKey.for_label(f"{n}-{seed}") for n in ("alice", "bob", "carol"))
    sim.enroll(2, alice)
    sim.enroll(5, bob)
    sim.enroll(15, carol)
    assert sim.run_until(
        lambda: all(len(n.replica.ledger.accounts) == 3 for n in sim.nodes), max_time=sim.now + 10
    )
    grant = sim.author(0, pool, lambda _: Send(alice.public, 100_000, "housing", ""))
    assert grant.event is not None
    assert sim.run_until(
        lambda: all(n.replica.ledger.balance.get(alice.public) == 100_000 for n in sim.nodes),
        max_time=sim.now + 10,
    ), f"seed {seed}: the grant was not claimed everywhere"
    sim.partition([list(range(10)), list(range(10, 20))])
    network = sim.nodes[0].replica.network_id
    assert network is not None
    head = sim.nodes[2].replica.heads[alice.public]
    to_bob = Event.create(
        alice,
        network,
        seq=head.seq + 1,
        prev=head.id,
        ts=head.ts + 1,
        body=Send(bob.public, 100_000, "transfer", ""),
    )
    to_carol = Event.create(
        alice,
        network,
        seq=head.seq + 1,
        prev=head.id,
        ts=head.ts + 1,
        body=Send(carol.public, 100_000, "transfer", ""),
    )
    sim.inject(5, to_bob)  # bob's node, in the first half
    sim.inject(15, to_carol)  # carol's node, in the second half
    assert sim.run_until(
        lambda: (
            sim.nodes[5].replica.ledger.balance.get(bob.public) == 100_000
            and sim.nodes[15].replica.ledger.balance.get(carol.public) == 100_000
        ),
        max_time=sim.now + 10,
    ), f"seed {seed}: each half did not accept its branch"
    sim.heal()
    assert sim.run_until(
        lambda: sim.converged() and all(alice.public in n.store.forks for n in sim.nodes),
        max_time=sim.now + 30,
    ), f"seed {seed}: the fork was not detected everywhere"
    for node in sim.nodes:
        ledger = node.replica.ledger
        assert ledger.conserved(), f"seed {seed}: node {node.index} broke conservation"
        assert ledger.balance.get(bob.public, 0) == 0
        assert ledger.balance.get(carol.public, 0) == 0
        assert ledger.balance[alice.public] == 100_000  # frozen with what she had
    state = sim.nodes[0].replica.ledger.state_hash().hex()[:16]
    report(capsys, f"double spend: ledger state hash {state} on all 20 nodes")
